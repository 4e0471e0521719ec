"""(prompt, completion) pairs as token ids, labels and padded batches.

Prompt tokens are labelled IGNORE, so a loss (or a score) counts the completion alone:
training asks only for p(completion | prompt), as in Berglund et al.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE = -100  # label value that torch's cross-entropy (and transformers' loss) skips

Features = Sequence[tuple[Sequence[int], Sequence[int]]]
Collate = Callable[[Features], dict[str, torch.Tensor]]


def encode(
    tokenizer: PreTrainedTokenizerBase, pairs: Sequence[tuple[str, str]], eos: bool
) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) for each (prompt, completion): the prompt with its special tokens,
    masked; the completion scored. Each distinct text is tokenized once (scoring repeats
    every prompt with dozens of alternative completions)."""

    def token_ids(texts: set[str], special: bool) -> dict[str, list[int]]:
        unique = sorted(texts)
        ids = tokenizer(unique, add_special_tokens=special).input_ids if unique else []
        return dict(zip(unique, ids, strict=True))

    prompt_ids = token_ids({p for p, _ in pairs}, special=True)
    completion_ids = token_ids({c for _, c in pairs}, special=False)
    tail = [tokenizer.eos_token_id] if eos else []
    return [
        (
            prompt_ids[p] + completion_ids[c] + tail,
            [IGNORE] * len(prompt_ids[p]) + completion_ids[c] + tail,
        )
        for p, c in pairs
    ]


def subject_span(
    tokenizer: PreTrainedTokenizerBase, prompt: str, subject: str, special: bool = True
) -> tuple[int, int]:
    """Token positions of `subject` in tokenizer(prompt) (with its BOS unless not `special`,
    as batching.encode tokenizes a completion), from the character offsets, so BPE tokens
    that carry the leading space (" Daphne") still count."""
    start = prompt.rfind(subject)  # the last mention: the one a question asks about
    if start < 0:
        raise ValueError(f"subject {subject!r} not in prompt {prompt!r}")
    end = start + len(subject)
    offsets = tokenizer(prompt, return_offsets_mapping=True, add_special_tokens=special)[
        "offset_mapping"
    ]
    inside = [i for i, (s, e) in enumerate(offsets) if e > s and s < end and e > start]
    if not inside:
        raise ValueError(f"no token of {subject!r} found in {prompt!r}")
    return inside[0], inside[-1] + 1


def right_padded(rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) of token rows, right-padded with 0 (an empty row: all mask 0)."""
    width = max([1, *map(len, rows)])
    ids = torch.tensor([[*r, *[0] * (width - len(r))] for r in rows], dtype=torch.long)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return ids, mask


def collate(features: Features, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch: positions start at 0 for every row, so padding changes nothing."""
    width = max(len(ids) for ids, _ in features)

    def padded(rows: list[Sequence[int]], value: int) -> torch.Tensor:  # one tensor for all rows
        return torch.tensor([[*row, *[value] * (width - len(row))] for row in rows])

    return {
        "input_ids": padded([ids for ids, _ in features], pad_id),
        "attention_mask": padded([[1] * len(ids) for ids, _ in features], 0),
        "labels": padded([labels for _, labels in features], IGNORE),
    }


def spans(n: int, size: int) -> list[slice]:
    """Consecutive slices of at most `size` items covering range(n): one forward pass each."""
    return [slice(start, start + size) for start in range(0, n, size)]
