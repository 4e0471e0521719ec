"""Scoring completions with a causal LM: the sum of log p(completion | prompt), batched.

    revcurse compare   # every method's rank accuracy and log-probability test use it

Sequences are batched longest-first with right padding, so scores do not depend on the
batch size (tests check it). Many completions after one long prompt (worked examples, a
context) share the prompt's key-value cache; generation (revcurse.lm.causal) shares common
starts with the same rules.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch

from revcurse.lm.batching import IGNORE, collate, encode, spans
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


def label_logprobs(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each row's sum of log p(label) over its labelled positions. The vocabulary is
    projected only where a label is scored: at every prompt position it is most of a short
    sequence's cost (SmolLM2: 28M of 135M weights; their log-softmax, 49k floats each)."""
    hidden = model.model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
    ).last_hidden_state
    labels = batch["labels"][:, 1:]
    scored = labels != IGNORE
    logits = model.lm_head(hidden[:, :-1][scored]).float()
    if cap := getattr(model.config, "final_logit_softcapping", None):  # as its forward does
        logits = torch.tanh(logits / cap) * cap
    picked = torch.log_softmax(logits, -1).gather(-1, labels[scored].unsqueeze(-1)).squeeze(-1)
    rows = scored.nonzero()[:, 0]
    return torch.zeros(len(labels), device=picked.device).index_add_(0, rows, picked)


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


@torch.no_grad()
def shared_prompt_logprobs(
    model: PreTrainedModel,
    features: Sequence[tuple[list[int], list[int]]],
    batch_size: int,
    progress: bool,
) -> list[float]:
    """completion_logprobs with one forward pass per distinct prompt, after one per common
    start of several prompts (`common_starts`): the prompt's last logits score each
    completion's first token, and its key-value cache, repeated for a batch of completions
    (right-padded), scores the rest. Equal to whole-sequence scores up to float rounding
    (tests: 1e-4)."""
    by_prompt: dict[tuple[int, ...], list[tuple[int, list[int]]]] = {}
    for i, (ids, labels) in enumerate(features):
        prompt, completion = split_prompt(ids, labels)
        by_prompt.setdefault(prompt, []).append((i, completion))
    scores = [0.0] * len(features)
    device = model.device

    def extend(cache: Any, ids: Sequence[int]) -> Any:
        """The model's output for `ids` after what `cache` holds (a copy: it is reused);
        the last position's logits alone, the others would cost a vocabulary's worth each."""
        tokens = torch.tensor([list(ids)], device=device)
        cache = copy.deepcopy(cache)
        return model(input_ids=tokens, cache=cache, use_cache=True, logits_to_keep=1)

    bar = progress_bar(total=len(by_prompt), desc="score", unit="prompt", disable=not progress)
    for start, prompts in common_starts(list(by_prompt)):
        if len(prompts) == 1:
            start = ()  # nothing to share: the prompt in one pass
        shared = extend(None, start).cache if start else None
        for prompt in prompts:
            out = extend(shared, prompt[len(start) :])
            first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
            for part in spans(len(by_prompt[prompt]), batch_size):
                rows = by_prompt[prompt][part]
                width = max(len(c) for _, c in rows)
                tokens = torch.tensor([c + [0] * (width - len(c)) for _, c in rows], device=device)
                mask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for _, c in rows])
                cache = repeated(out.cache, len(rows))
                attention = torch.cat(
                    [torch.ones(len(rows), len(prompt), dtype=mask.dtype), mask], 1
                )
                logits = model(
                    input_ids=tokens, attention_mask=attention.to(device), cache=cache
                ).logits
                logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
                picked = logprobs.gather(-1, tokens[:, 1:].unsqueeze(-1)).squeeze(-1)
                rest = (picked * mask[:, 1:].to(device)).sum(-1)
                for (i, completion), tail in zip(rows, rest.tolist(), strict=True):
                    scores[i] = first[completion[0]].item() + tail
            bar.update()
    bar.close()
    return scores
