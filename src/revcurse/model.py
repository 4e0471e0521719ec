"""The tiny model: a Llama-architecture transformer built from a config, trained from scratch.

A prototype found that d_model 64, 2 layers, 4 heads learns 300 facts in a few hundred
full-batch steps on 2 CPU cores; 1 layer / d_model 32 is too small. The architecture is
Llama's (RoPE, SwiGLU MLP, RMSNorm) so the same hooks and analyses serve SmolLM2 and kin.
Checkpoints are transformers folders: config.json, model.safetensors and the tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from revcurse.pretrained import load_pretrained
from revcurse.tokenizer import build_word_tokenizer


@dataclass
class TinyModelConfig:
    d_model: int = 64  # width; 32 is too small to hold 300 facts
    n_layers: int = 2  # 1 layer cannot chain entity -> attribute lookups reliably
    n_heads: int = 4  # head dim 16
    d_ff: int = 128  # 2x width: holds 300 facts and trains ~1.5x faster than 4x
    max_len: int = 64  # longest prompt + completion of the controlled world is ~25 tokens


def sizes(config: TinyModelConfig, tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    """The config's sizes under transformers' names (shared by Llama, BERT and kin)."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": config.d_model,
        "intermediate_size": config.d_ff,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "max_position_embeddings": config.max_len,
        "pad_token_id": tokenizer.pad_token_id,
    }


def build_tiny_model(
    config: TinyModelConfig, tokenizer: PreTrainedTokenizerBase
) -> LlamaForCausalLM:
    """Fresh weights from the global torch seed (seed before calling for reproducibility)."""
    llama = LlamaConfig(
        **sizes(config, tokenizer),
        num_key_value_heads=config.n_heads,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,  # separate in/out maps: the asymmetry analysis reads both
    )
    return LlamaForCausalLM(llama)


@contextmanager
def no_progress_bars() -> Iterator[None]:
    """transformers' bars off: for a tiny model's few tensors they are noise in the output."""
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()


def save_checkpoint(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: Path) -> None:
    with no_progress_bars():
        model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)


def load_checkpoint(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
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
    pretrained model (revcurse.pretrained), whose own tokenizer is used."""
    if name != "tiny":
        return load_pretrained(name)
    tokenizer = build_word_tokenizer(texts)
    torch.manual_seed(seed)
    return build_tiny_model(tiny, tokenizer), tokenizer
