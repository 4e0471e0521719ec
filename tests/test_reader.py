"""The tiny reader: trained once per config, cached whole, reused by every seed."""

from __future__ import annotations

from dataclasses import replace

import torch

from revcurse.lm.tiny import TinyModelConfig
from revcurse.lm.tokenizer import build_word_tokenizer
from revcurse.reader import ReaderConfig, cache_key, load_or_train_reader
from revcurse.train import TrainConfig
from revcurse.world import TEMPLATES, WorldConfig, generate_facts, vocabulary


def test_world_vocabulary_covers_every_seed():
    tokenizer = build_word_tokenizer(vocabulary())
    for seed in range(3):
        for fact in generate_facts(WorldConfig(facts_per_group=30), seed):
            for template in TEMPLATES:
                example = template.fill(fact, 0, 0)
                ids = tokenizer(f"{fact.a} is {fact.b}. {example.prompt}{example.completion}")
                assert tokenizer.unk_token_id not in ids.input_ids


def test_reader_is_cached_and_keyed_by_its_config(tmp_path):
    tokenizer = build_word_tokenizer(vocabulary())
    tiny = TinyModelConfig()
    config = ReaderConfig(documents=20, train=TrainConfig(steps=2), cache_dir=tmp_path)
    first = load_or_train_reader(config, tiny, tokenizer, progress=False)
    folders = list(tmp_path.iterdir())
    assert [f.name for f in folders] == [cache_key(config, tiny, tokenizer)]
    again = load_or_train_reader(config, tiny, tokenizer, progress=False)
    assert all(
        torch.equal(a, b) for a, b in zip(first.parameters(), again.parameters(), strict=True)
    )
    assert list(tmp_path.iterdir()) == folders  # loaded, not retrained

    longer = replace(config, train=TrainConfig(steps=3))
    assert cache_key(longer, tiny, tokenizer) != cache_key(config, tiny, tokenizer)
    assert cache_key(replace(config, cache_dir=tmp_path / "x"), tiny, tokenizer) == (
        cache_key(config, tiny, tokenizer)
    )
