"""Shared fixtures: a small controlled world and a tiny model trained on it once per session."""

from __future__ import annotations

import pytest
import torch

from revcurse.facts import expand
from revcurse.lm.tiny import TinyModelConfig, build_tiny_model
from revcurse.lm.tokenizer import build_word_tokenizer
from revcurse.train import TrainConfig, train
from revcurse.world import TEMPLATES, WorldConfig, generate_facts


@pytest.fixture(scope="session")
def small_world():
    facts = generate_facts(WorldConfig(facts_per_group=8), seed=0)
    train_examples, test_examples = expand(facts, TEMPLATES)
    tokenizer = build_word_tokenizer(
        e.prompt + " " + e.completion for e in train_examples + test_examples
    )
    return facts, train_examples, test_examples, tokenizer


@pytest.fixture(scope="session")
def trained(small_world):
    """A tiny model that has learned the small world (a few seconds on CPU)."""
    _, train_examples, _, tokenizer = small_world
    torch.manual_seed(0)
    model = build_tiny_model(TinyModelConfig(), tokenizer)
    train(model, tokenizer, train_examples, TrainConfig(steps=150), seed=0, progress=False)
    return model, tokenizer
