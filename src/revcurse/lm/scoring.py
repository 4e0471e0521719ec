"""Scoring completions with a causal LM: the sum of log p(completion | prompt), batched.

    revcurse compare   # every method's rank accuracy and log-probability test use it

Sequences are batched longest-first with right padding, so scores do not depend on the
batch size (tests check it). Many completions after one long prompt (worked examples, a
context) share the prompt's key-value cache; generation (revcurse.lm.causal) shares common
starts with the same rules.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch

from revcurse.lm.batching import IGNORE, collate, encode, right_padded, spans
from revcurse.progress import bar as progress_bar

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def batches(items: Sequence, size: int, desc: str, progress: bool) -> Iterator[Sequence]:
    """`items` in slices of `size`, with a progress bar that goes away when done."""
    parts = spans(len(items), size)
    for part in progress_bar(parts, desc=desc, unit="batch", disable=not progress, leave=False):
        yield items[part]


@torch.no_grad()
def completion_logprobs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 256,
    progress: bool = False,
) -> list[float]:
    """Sum of log p(completion tokens | prompt) for each (prompt, completion). When many
    completions follow one long prompt (worked examples, a context), the prompt is run once
    and its key-value cache reused for all of them (`shared_prompt_logprobs`); otherwise
    every sequence is scored whole, batched longest first."""
    model.eval()
    features = encode(tokenizer, pairs, eos=False)
    if prompt_sharing_pays(features):
        return shared_prompt_logprobs(model, features, batch_size, progress)
    return whole_sequence_logprobs(model, tokenizer, features, batch_size, progress)


@torch.no_grad()
def whole_sequence_logprobs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    features: Sequence[tuple[list[int], list[int]]],
    batch_size: int,
    progress: bool,
) -> list[float]:
    """completion_logprobs of encoded pairs, each sequence whole: batches longest first,
    right-padded, so a score does not depend on the batch size."""
    order = sorted(range(len(features)), key=lambda i: -len(features[i][0]))  # longest first
    scores = [0.0] * len(features)
    device = model.device
    for chunk in batches(order, batch_size, "score", progress):
        batch = {
            k: v.to(device)
            for k, v in collate([features[i] for i in chunk], tokenizer.pad_token_id).items()
        }
        for i, score in zip(chunk, label_logprobs(model, batch).tolist(), strict=True):
            scores[i] = score
    return scores


def label_logits(
    model: PreTrainedModel, batch: dict[str, torch.Tensor], **context: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits, labels, rows), flattened, at the positions that predict a label (`context`:
    more of the model's inputs, e.g. a key-value cache and positions after it): the
    vocabulary is projected only there. At every prompt position it would be most of a
    short sequence's cost (SmolLM2: 28M of 135M weights and a 49k-wide softmax; Gemma-3's
    262k-word output layer costs more than the rest of the model)."""
    labels = batch["labels"]
    predicts = torch.zeros_like(labels, dtype=torch.bool)
    predicts[:, :-1] = labels[:, 1:] != IGNORE
    logits = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        logits_to_keep=predicts,  # a boolean mask: the kept positions' logits, flattened
        **context,
    ).logits
    rows = predicts.nonzero()[:, 0]
    return logits.reshape(-1, logits.shape[-1]), labels[:, 1:][predicts[:, :-1]], rows


def label_logprobs(
    model: PreTrainedModel, batch: dict[str, torch.Tensor], **context: Any
) -> torch.Tensor:
    """Each row's sum of log p(label) over its labelled positions (`context`: label_logits')."""
    logits, labels, rows = label_logits(model, batch, **context)
    picked = torch.log_softmax(logits.float(), -1).gather(-1, labels[:, None])[:, 0]
    return torch.zeros(len(batch["labels"]), device=picked.device).index_add_(0, rows, picked)


def split_prompt(ids: Sequence[int], labels: Sequence[int]) -> tuple[tuple[int, ...], list[int]]:
    """(prompt ids, completion ids) of one encoded pair."""
    n = sum(label == IGNORE for label in labels)
    return tuple(ids[:n]), list(ids[n:])


def prompt_sharing_pays(features: Sequence[tuple[list[int], list[int]]]) -> bool:
    """Whether running each distinct prompt once pays (`sharing_pays`; three worked examples
    before each question: 10x fewer tokens)."""
    split = [split_prompt(ids, labels) for ids, labels in features]
    if not split or not all(prompt and completion for prompt, completion in split):
        return False  # an empty prompt has no cache to share, an empty completion no score
    whole = sum(len(ids) for ids, _ in features)
    shared = sum(map(len, {prompt for prompt, _ in split})) + sum(len(c) for _, c in split)
    return sharing_pays(shared, whole)


def sharing_pays(shared: int, whole: int) -> bool:
    """Whether running common starts once (`shared` tokens read in all) reads at most a
    third of the `whole` tokens of every sequence run in full: below that, the extra forward
    passes and cache copies cost more than they save (the tiny world's short prompts)."""
    return 3 * shared <= whole


def common_starts(prompts: Sequence[tuple[int, ...]]) -> list[tuple[tuple[int, ...], list]]:
    """The prompts in groups that begin alike (the same worked examples), each with the
    tokens all its prompts begin with, short of the last one of the shortest: run once for
    the group. Sorted, so such prompts are neighbours; a group grows while that start stays
    at least MIN_SHARED tokens long."""
    groups: list[tuple[tuple[int, ...], list]] = []
    for prompt in sorted(prompts):
        if groups:
            start, members = groups[-1]
            same = [a == b for a, b in zip(start, prompt, strict=False)]
            n = min(same.index(False) if False in same else len(same), len(prompt) - 1)
            if n >= MIN_SHARED:
                groups[-1] = (start[:n], [*members, prompt])
                continue
        groups.append((prompt[:-1], [prompt]))
    return groups


MIN_SHARED = 16  # tokens: a shorter common start is not worth a forward pass of its own


def repeated(cache: Any, rows: int) -> Any:
    """A copy of a one-sequence key-value cache for a batch of `rows` continuations (the
    original is reused for the next batch)."""
    cache = copy.deepcopy(cache)
    cache.batch_repeat_interleave(rows)
    return cache


def after_start(
    model: PreTrainedModel, start: Any, start_length: int, rests: Sequence[Sequence[int]], pad: int
) -> tuple[Any, torch.Tensor, torch.Tensor]:
    """Each rest run after a shared start's one-row cache (None: no start), left-padded
    between start and rest so that every row's last token is last: (the model's output, its
    logits at the last position only; the attention mask so far; each row's next position)."""
    device, rows = model.device, len(rests)
    width = max(map(len, rests))
    ids = torch.tensor([[pad] * (width - len(r)) + list(r) for r in rests], device=device)
    real = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rests], device=device)
    mask = torch.cat([torch.ones(rows, start_length, dtype=real.dtype, device=device), real], 1)
    positions = (start_length + real.cumsum(-1) - 1).clamp(min=0)
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        cache=repeated(start, rows) if start is not None else None,
        use_cache=True,
        logits_to_keep=1,
    )
    return out, mask, positions[:, -1] + 1


@torch.no_grad()
def shared_prompt_logprobs(
    model: PreTrainedModel,
    features: Sequence[tuple[list[int], list[int]]],
    batch_size: int,
    progress: bool,
) -> list[float]:
    """completion_logprobs with one forward pass per common start of several prompts
    (`common_starts`), then the prompts' rests side by side, as many as their completions
    fill a batch: each prompt's last logits score its completions' first tokens, and its
    key-value cache, selected for each of its completions, scores the rest. A shorter
    prompt leaves masked slots in the batch's cache; its completions' positions continue
    its own length. Equal to whole-sequence scores up to float rounding (tests: 1e-4)."""
    by_prompt: dict[tuple[int, ...], list[tuple[int, list[int]]]] = {}
    for i, (ids, labels) in enumerate(features):
        prompt, completion = split_prompt(ids, labels)
        by_prompt.setdefault(prompt, []).append((i, completion))
    scores = [0.0] * len(features)
    bar = progress_bar(total=len(by_prompt), desc="score", unit="prompt", disable=not progress)
    for start, prompts in common_starts(list(by_prompt)):
        if len(prompts) == 1:
            start = ()  # nothing to share: the prompt in one pass
        shared = None
        if start:
            tokens = torch.tensor([list(start)], device=model.device)
            shared = model(input_ids=tokens, use_cache=True, logits_to_keep=1).cache
        for chunk in filling(prompts, lambda p: len(by_prompt[p]), batch_size):
            rests = [p[len(start) :] for p in chunk]
            completions = [by_prompt[p] for p in chunk]
            _score_rests(model, shared, len(start), rests, completions, batch_size, scores)
            bar.update(len(chunk))
    bar.close()
    return scores


def filling(items: Sequence[Any], size: Callable[[Any], int], limit: int) -> Iterator[list]:
    """Consecutive items, as many at a time as their sizes fit in `limit` (one at least)."""
    chunk: list = []
    total = 0
    for item in items:
        if chunk and total + size(item) > limit:
            yield chunk
            chunk, total = [], 0
        chunk.append(item)
        total += size(item)
    if chunk:
        yield chunk


def _score_rests(
    model: PreTrainedModel,
    shared: Any,
    offset: int,
    rests: Sequence[Sequence[int]],
    completions: Sequence[Sequence[tuple[int, list[int]]]],
    batch_size: int,
    scores: list[float],
) -> None:
    """Scores of the completions of several prompts, each `offset` tokens of `shared` (a
    one-row cache, or None) then its rest (`after_start`), into `scores`."""
    device = model.device
    out, rest_mask, following = after_start(model, shared, offset, rests, pad=0)
    first = torch.log_softmax(out.logits[:, -1].float(), -1)
    owned = [(j, i, c) for j, rows in enumerate(completions) for i, c in rows]
    for part in spans(len(owned), batch_size):
        rows = owned[part]
        owner = torch.tensor([j for j, _, _ in rows], device=device)
        tokens, mask = (t.to(device) for t in right_padded([c for _, _, c in rows]))
        cache = copy.deepcopy(out.cache)
        cache.batch_select_indices(owner)
        batch = {  # the first token is scored by `first`; the rest here
            "input_ids": tokens,
            "attention_mask": torch.cat([rest_mask[owner], mask], 1),
            "labels": torch.where(mask.bool(), tokens, IGNORE),
        }
        positions = following[owner, None] + torch.arange(tokens.shape[1], device=device)
        tails = label_logprobs(model, batch, position_ids=positions, cache=cache)
        for (j, i, completion), tail in zip(rows, tails.tolist(), strict=True):
            scores[i] = first[j, completion[0]].item() + tail
