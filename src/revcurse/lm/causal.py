"""Asking a causal LM: completion log-probabilities and generation, batched.

Scoring is batched longest-first with right padding, so scores do not depend on the batch
size (tests check it); generation left-pads, as transformers' `generate` expects.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from revcurse.lm.answer_end import AnswerEnd
from revcurse.lm.batching import IGNORE, collate, encode, spans
from revcurse.lm.models import save_checkpoint
from revcurse.progress import bar as progress_bar

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class LanguageModel(Protocol):
    """What the evaluator needs: greedy answers and completion log-probabilities. Causal LMs
    are wrapped by `CausalLM`; other model kinds (e.g. the masked MLM-U model) bring theirs."""

    tokenizer: PreTrainedTokenizerBase

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]: ...

    def logprobs(self, pairs: Sequence[tuple[str, str]]) -> list[float]: ...


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
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        labels = batch["labels"][:, 1:]
        mask = labels != IGNORE
        picked = logprobs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        for i, score in zip(chunk, (picked * mask).sum(-1).tolist(), strict=True):
            scores[i] = score
    return scores


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


@torch.no_grad()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int = 256,
    progress: bool = False,
    temperature: float = 0.0,
    first_line: bool = False,
) -> list[str]:
    """Continuations, greedy or (temperature > 0) sampled from the torch seed; with
    `first_line`, each ends at its first line break after some text (`AnswerEnd`) as well as
    at </s>. When many prompts begin alike (worked examples before each question), that
    start is run once and its key-value cache continued for each of them
    (`shared_start_generate`); otherwise `padded_generate`."""
    model.eval()
    encoded = [tuple(ids) for ids in tokenizer(list(prompts)).input_ids]
    end = AnswerEnd.of(tokenizer) if first_line else None
    groups = shared_starts(encoded)
    run_once = sum(len(start) for start, _ in groups)
    rest = sum(len(ids) - len(start) for start, members in groups for ids in members)
    if sharing_pays(run_once + rest, sum(map(len, encoded))):
        return shared_start_generate(
            model,
            tokenizer,
            encoded,
            groups,
            max_new_tokens,
            batch_size,
            progress,
            temperature,
            end,
        )
    return padded_generate(
        model, tokenizer, prompts, max_new_tokens, batch_size, progress, temperature, end
    )


@torch.no_grad()
def padded_generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int,
    progress: bool,
    temperature: float,
    end: AnswerEnd | None = None,
) -> list[str]:
    """transformers' `generate` on left-padded batches (it derives positions from the mask;
    the tokenizer's own padding side, shared with training, is left as it is)."""
    outputs: list[str] = []
    for chunk in batches(list(prompts), batch_size, "generate", progress):
        batch = tokenizer(list(chunk), return_tensors="pt", padding=True, padding_side="left").to(
            model.device
        )
        width = batch["input_ids"].shape[1]
        tokens = model.generate(
            **batch,
            do_sample=temperature > 0,
            **({"temperature": temperature, "top_k": 0} if temperature > 0 else {}),
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            stopping_criteria=[end.criterion(width)] if end else None,
        )
        new = tokens[:, width:]
        outputs += tokenizer.batch_decode(new, skip_special_tokens=True)
    return outputs


def shared_starts(encoded: Sequence[tuple[int, ...]]) -> list[tuple[tuple[int, ...], list]]:
    """The prompts (every occurrence) in groups that begin alike (`common_starts`), each with
    the start run once for the group; () for a prompt that has no other to share it with."""
    occurrences = Counter(encoded)
    groups = []
    for start, members in common_starts(list(occurrences)):
        every = [prompt for prompt in members for _ in range(occurrences[prompt])]
        groups.append((start if len(every) > 1 else (), every))
    return groups


@torch.no_grad()
def shared_start_generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    encoded: Sequence[tuple[int, ...]],
    groups: Sequence[tuple[tuple[int, ...], list]],
    max_new_tokens: int,
    batch_size: int,
    progress: bool,
    temperature: float,
    end: AnswerEnd | None = None,
) -> list[str]:
    """`generate` with each group's common start run once: its cache, repeated for a batch,
    continued by the rest of each prompt (padded between start and rest, positions counted
    past the padding), then token by token, greedy or sampled (softmax at `temperature`,
    as transformers' `generate` with top_k=0). Equal to `generate`'s answers up to float
    rounding (tests)."""
    device, pad, eos = model.device, tokenizer.pad_token_id, tokenizer.eos_token_id
    where: dict[tuple[int, ...], list[int]] = {}
    for i, ids in enumerate(encoded):
        where.setdefault(ids, []).append(i)
    outputs = [""] * len(encoded)
    bar = progress_bar(total=len(encoded), desc="generate", unit="prompt", disable=not progress)
    for start, members in groups:
        cache = None
        if start:
            cache = model(input_ids=torch.tensor([start], device=device), use_cache=True).cache
        indices = [where[prompt].pop(0) for prompt in members]
        for part in spans(len(indices), batch_size):
            chunk = indices[part]
            rests = [list(encoded[i][len(start) :]) for i in chunk]
            new = _continue(
                model, cache, len(start), rests, max_new_tokens, pad, eos, temperature, end
            )
            texts = tokenizer.batch_decode(new, skip_special_tokens=True)
            for i, text in zip(chunk, texts, strict=True):
                outputs[i] = text
            bar.update(len(chunk))
    bar.close()
    return outputs


def _continue(
    model: PreTrainedModel,
    start_cache: Any,
    start_length: int,
    rests: Sequence[list[int]],
    max_new_tokens: int,
    pad: int,
    eos: int | None,
    temperature: float,
    end: AnswerEnd | None,
) -> torch.Tensor:
    """New tokens (batch x steps; `pad` once a row has ended) after the start and each rest."""
    device, rows = model.device, len(rests)
    width = max(map(len, rests))
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rests], device=device)
    real = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rests], device=device)
    mask = torch.cat([torch.ones(rows, start_length, dtype=real.dtype, device=device), real], 1)
    positions = (start_length + real.cumsum(-1) - 1).clamp(min=0)
    cache = repeated(start_cache, rows) if start_cache is not None else None
    done = torch.zeros(rows, dtype=torch.bool, device=device)
    steps = []
    for _ in range(max_new_tokens):
        out = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache, logits = out.cache, out.logits[:, -1].float()
        if temperature > 0:
            token = torch.multinomial(torch.softmax(logits / temperature, -1), 1).squeeze(-1)
        else:
            token = logits.argmax(-1)
        token = torch.where(done, torch.full_like(token, pad), token)
        steps.append(token)
        done |= token == eos
        if end is not None:
            done |= end.ended(torch.stack(steps, 1)).to(device)
        if bool(done.all()):
            break
        ids, positions = token[:, None], positions[:, -1:] + 1
        mask = torch.cat([mask, torch.ones(rows, 1, dtype=mask.dtype, device=device)], 1)
    return torch.stack(steps, 1)


@dataclass
class CausalLM:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    batch_size: int = 256
    progress: bool = False

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        """Greedy answers, each its first line (what the evaluator judges)."""
        return generate(
            self.model,
            self.tokenizer,
            prompts,
            max_new_tokens,
            self.batch_size,
            self.progress,
            first_line=True,
        )

    def logprobs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        return completion_logprobs(
            self.model, self.tokenizer, pairs, self.batch_size, self.progress
        )

    def save(self, folder: Path) -> None:
        """A transformers model folder (`compare --keep-models`; revcurse analyze reads it)."""
        save_checkpoint(self.model, self.tokenizer, folder)
