"""Asking a causal LM: generation, batched, and the evaluator's interface (`CausalLM`).

Generation left-pads, as transformers' `generate` expects; scoring is revcurse.lm.scoring.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from revcurse.lm.answer_end import AnswerEnd
from revcurse.lm.batching import spans
from revcurse.lm.models import save_checkpoint
from revcurse.lm.scoring import (
    after_start,
    batches,
    common_starts,
    completion_logprobs,
    sharing_pays,
)
from revcurse.progress import bar as progress_bar

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class LanguageModel(Protocol):
    """What the evaluator needs: greedy answers and completion log-probabilities. Causal LMs
    are wrapped by `CausalLM`; other model kinds (e.g. the masked MLM-U model) bring theirs."""

    tokenizer: PreTrainedTokenizerBase

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]: ...

    def logprobs(self, pairs: Sequence[tuple[str, str]]) -> list[float]: ...


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
    out, mask, position = after_start(model, start_cache, start_length, rests, pad)
    done = torch.zeros(rows, dtype=torch.bool, device=device)
    steps = []
    for _ in range(max_new_tokens):
        logits = out.logits[:, -1].float()
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
        mask = torch.cat([mask, torch.ones(rows, 1, dtype=mask.dtype, device=device)], 1)
        out = model(
            input_ids=token[:, None],
            attention_mask=mask,
            position_ids=position[:, None],
            cache=out.cache,
            use_cache=True,
            logits_to_keep=1,
        )
        position = position + 1
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
