"""One `--model` for every command: the tiny model or a pretrained one, and checkpoints.

Checkpoints are transformers folders: config.json, model.safetensors and the tokenizer, so
plain `AutoModelForCausalLM.from_pretrained(folder)` loads what revcurse saves.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from revcurse.lm.pretrained import load_pretrained, no_progress_bars
from revcurse.lm.tiny import TinyModelConfig, build_tiny_model
from revcurse.lm.tokenizer import build_word_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def save_checkpoint(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: Path) -> None:
    with no_progress_bars():
        model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)


def load_checkpoint(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with no_progress_bars():
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model.eval(), tokenizer


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def make_model(
    name: str, tiny: TinyModelConfig, texts: Iterable[str], seed: int
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """`tiny`: a word tokenizer over `texts` and fresh weights from `seed`; anything else is a
    pretrained model (revcurse.lm.pretrained), whose own tokenizer is used."""
    if name != "tiny":
        return load_pretrained(name)
    tokenizer = build_word_tokenizer(texts)
    torch.manual_seed(seed)
    return build_tiny_model(tiny, tokenizer), tokenizer


def device() -> torch.device:
    """The device accelerate would train on (a GPU where there is one), for recipes that
    only ask a model."""
    from accelerate import PartialState

    return PartialState().device
