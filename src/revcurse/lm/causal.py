"""Asking a causal LM: completion log-probabilities and generation, batched.

Scoring is batched longest-first with right padding, so scores do not depend on the batch
size (tests check it); generation left-pads, as transformers' `generate` expects.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

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
    """Sum of log p(completion tokens | prompt) for each (prompt, completion)."""
    model.eval()
    features = encode(tokenizer, pairs, eos=False)
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


@torch.no_grad()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int = 256,
    progress: bool = False,
    temperature: float = 0.0,
) -> list[str]:
    """Continuations, greedy or (temperature > 0) sampled from the torch seed; left-padded
    batches (generate derives positions from the mask)."""
    model.eval()
    tokenizer.padding_side = "left"
    outputs: list[str] = []
    for chunk in batches(list(prompts), batch_size, "generate", progress):
        batch = tokenizer(list(chunk), return_tensors="pt", padding=True).to(model.device)
        tokens = model.generate(
            **batch,
            do_sample=temperature > 0,
            **({"temperature": temperature, "top_k": 0} if temperature > 0 else {}),
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        new = tokens[:, batch["input_ids"].shape[1] :]
        outputs += tokenizer.batch_decode(new, skip_special_tokens=True)
    return outputs


class LanguageModel(Protocol):
    """What the evaluator needs: greedy answers and completion log-probabilities. Causal LMs
    are wrapped by `CausalLM`; other model kinds (e.g. the masked MLM-U model) bring theirs."""

    tokenizer: PreTrainedTokenizerBase

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]: ...

    def logprobs(self, pairs: Sequence[tuple[str, str]]) -> list[float]: ...


@dataclass
class CausalLM:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    batch_size: int = 256
    progress: bool = False

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        return generate(
            self.model, self.tokenizer, prompts, max_new_tokens, self.batch_size, self.progress
        )

    def logprobs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        return completion_logprobs(
            self.model, self.tokenizer, pairs, self.batch_size, self.progress
        )
