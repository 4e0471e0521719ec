"""What the weight edits (hebbian, rome) read and write: the FFN's output matrix.

A Llama-style MLP computes down_proj(act(gate(x)) * up(x)): the input of down_proj is the
*key* (one activation per hidden unit, d_ff of them) and its output the *value* added to the
residual stream; down_proj's weight is the key -> value memory that Geva et al. (2021) and
ROME (Meng et al. 2022) read facts from. Both edits add an outer product to that matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from revcurse.config import check
from revcurse.facts import Example
from revcurse.lm.batching import IGNORE, collate, encode, spans
from revcurse.lm.hooks import captured_inputs, decoder_layers

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def down_proj(model: PreTrainedModel, layer: int) -> torch.nn.Linear:
    return decoder_layers(model)[layer].mlp.down_proj


def check_layers(text: str, field: str) -> None:
    """For a config: `text` names layers the way parse_layers reads them."""
    ok = text in ("all", "middle") or all(x.strip().lstrip("-").isdigit() for x in text.split(","))
    check(ok, field, f"must be all, middle or comma-separated layer indices, got {text!r}")


def parse_layers(text: str, n_layers: int) -> list[int]:
    """'middle', 'all' or comma-separated indices (negative ones count from the end)."""
    if text == "all":
        return list(range(n_layers))
    if text == "middle":  # of 2 layers the first: an edit must have attention after it
        return [(n_layers - 1) // 2]
    try:
        layers = [int(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"layers: expected all, middle or integers, got {text!r}") from None
    if not all(-n_layers <= x < n_layers for x in layers):
        raise ValueError(f"layers: {text!r} outside the model's {n_layers} layers")
    return sorted({x % n_layers for x in layers})


@dataclass
class TeacherForced:
    """Prompt + completion sequences as one right-padded batch, and where the answer is."""

    batch: dict[str, torch.Tensor]
    answer: torch.Tensor  # (n, width) bool: positions whose next token is a completion token
    next_token: torch.Tensor  # (n, width) the token each position should predict

    @classmethod
    def of(cls, tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example]) -> TeacherForced:
        features = encode(tokenizer, [(e.prompt, e.completion) for e in examples], eos=False)
        batch = collate(features, tokenizer.pad_token_id)
        labels = batch["labels"]
        next_token = torch.full_like(labels, IGNORE)
        next_token[:, :-1] = labels[:, 1:]
        return cls(batch, next_token != IGNORE, next_token)

    def last_prompt_position(self) -> torch.Tensor:
        """(n,) the position that predicts the first completion token."""
        return self.answer.int().argmax(dim=1)


@torch.no_grad()
def keys(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    layers: Sequence[int],
    batch_size: int = 64,  # documents per forward pass
) -> dict[int, torch.Tensor]:
    """Per layer, (tokens, d_ff): down_proj's input at every real token of the texts."""
    out: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    for part in spans(len(texts), batch_size):
        ids = tokenizer(list(texts[part])).input_ids
        batch = collate([(x, x) for x in ids], tokenizer.pad_token_id)  # right-padded
        with captured_inputs({layer: down_proj(model, layer) for layer in layers}) as captured:
            model.model(
                input_ids=batch["input_ids"].to(model.device),
                attention_mask=batch["attention_mask"].to(model.device),
                use_cache=False,
            )
        real = batch["attention_mask"].bool()
        for layer in layers:
            out[layer].append(captured[layer][real].float().cpu())
    return {layer: torch.cat(parts) for layer, parts in out.items()}


def add_to_weight(model: PreTrainedModel, layer: int, delta: torch.Tensor) -> None:
    weight = down_proj(model, layer).weight
    with torch.no_grad():
        weight += delta.to(weight.dtype).to(weight.device)
