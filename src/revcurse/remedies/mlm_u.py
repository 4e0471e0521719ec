"""Remedy 3c, any-order objective MLM-U (Kitouni et al. 2024), on the tiny model.

    revcurse compare --methods baseline,mlm_u --remedies.mlm-u.steps 12000

The tiny model, from the same start weights as every other trained method, with its
attention made bidirectional (every position sees every other: a full attention mask),
learns to fill masked tokens, with the mask rate of each sequence drawn from U(0, 1): every
token is predicted from every subset of the others, so no direction is privileged, which is
their explanation of the reversal curse (the "factorization curse") and its cure. Kitouni et
al. report 100% backward key-value retrieval where left-to-right training fails. The LM head
keeps its meaning: the output at position p predicts the token at p + 1 (masked or not).

Answering: the prompt is followed by n [MASK] slots (n = longest answer + 2), filled left
to right, one greedy token per pass, stopping at </s>. So that n need not equal the
answer's length, training sequences are padded with </s> tokens that are masked and
predicted like any other token (as diffusion LMs do). A completion's log-probability is the
chain rule over its tokens, each predicted with the tokens before it revealed and the rest
still masked. Its own rows (`infill_exact_match`) ask the reverse as a masked model is asked: the
subject of a trained-direction sentence, masked in place and filled.

Its budget is its own (`steps`): at the baseline's steps it learns no fact; docs/remedies.md
measures what it learns with more.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch

from revcurse.config import check
from revcurse.facts import ONE_WAY
from revcurse.lm.batching import IGNORE, Collate, Features, subject_span
from revcurse.remedies.setting import Setting, Treatment
from revcurse.stats import proportion_row

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class MlmUConfig:
    # Every token of every fact is a target at some mask rate, so it learns far slower than
    # left-to-right training: same direction 0.02 at 400 steps, 0.85-0.95 at 4000, 0.95-1.00
    # at 12000 (seed 0, docs/remedies.md)
    steps: int = 0
    """its training steps; 0: the run's --train.steps (the matched budget)"""

    def __post_init__(self) -> None:
        check(self.steps >= 0, "steps", f"must be 0 or more, got {self.steps}")


class Bidirectional(torch.nn.Module):
    """A causal LM whose every position attends to every (unpadded) position."""

    def __init__(self, lm: PreTrainedModel) -> None:
        super().__init__()
        self.lm = lm

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> Any:
        # A 4D mask is used as given (no causal part added): rows x 1 x queries x keys
        width = input_ids.shape[1]
        full = attention_mask.bool()[:, None, None, :].expand(-1, 1, width, -1)
        return self.lm(input_ids=input_ids, attention_mask=full, labels=labels)


def mlm_u_collate(tokenizer: PreTrainedTokenizerBase, seed: int) -> Collate:
    """Batches for MLM-U: </s>-padded rows, each masked at a rate drawn from U(0, 1)."""
    generator = torch.Generator().manual_seed(seed)
    eos, mask = tokenizer.eos_token_id, tokenizer.mask_token_id

    def collate(features: Features) -> dict[str, torch.Tensor]:
        width = max(len(ids) for ids, _ in features)
        ids = torch.full((len(features), width), eos, dtype=torch.long)
        for row, (tokens, _) in enumerate(features):
            ids[row, : len(tokens)] = torch.tensor(tokens)
        rate = torch.rand(len(features), 1, generator=generator)
        masked = torch.rand(ids.shape, generator=generator) < rate
        masked[:, 0] = False  # <s> stays: it anchors position 0
        empty = ~masked.any(dim=1)  # at least one prediction per row
        masked[empty, 1 + torch.randint(width - 1, (int(empty.sum()),), generator=generator)] = True
        labels = torch.where(masked, ids, torch.full_like(ids, IGNORE))
        inputs = torch.where(masked, torch.full_like(ids, mask), ids)
        return {"input_ids": inputs, "attention_mask": torch.ones_like(ids), "labels": labels}

    return collate


@dataclass
class MaskedLM:
    """The evaluator's interface (revcurse.lm.causal.LanguageModel) for a masked model."""

    model: Bidirectional
    tokenizer: PreTrainedTokenizerBase
    slots: int = 0  # [MASK] slots after the prompt; set from the longest answer
    batch_size: int = 256

    @torch.no_grad()
    def _logprobs_at(self, rows: Sequence[Sequence[int]], positions: list[int]) -> torch.Tensor:
        """log-softmax over the vocabulary at one position of each (equal-length-padded) row."""
        out = []
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            width = max(len(r) for r in chunk)
            ids = torch.full((len(chunk), width), self.tokenizer.eos_token_id, dtype=torch.long)
            attention = torch.zeros_like(ids)
            for i, r in enumerate(chunk):
                ids[i, : len(r)] = torch.tensor(r)
                attention[i, : len(r)] = 1
            logits = self.model(input_ids=ids, attention_mask=attention).logits
            # the token at a position is predicted by the output before it
            where = torch.tensor(positions[start : start + self.batch_size]) - 1
            out.append(torch.log_softmax(logits[torch.arange(len(chunk)), where].float(), -1))
        return torch.cat(out)

    def infill(self, rows: Sequence[Sequence[int]], spans: Sequence[range]) -> list[list[int]]:
        """Each row with its span of [MASK]s filled left to right, one greedy token a pass."""
        self.model.eval()
        filled = [list(r) for r in rows]
        for step in range(max(len(span) for span in spans)):
            todo = [i for i, span in enumerate(spans) if step < len(span)]
            positions = [spans[i][step] for i in todo]
            best = self._logprobs_at([filled[i] for i in todo], positions).argmax(-1).tolist()
            for i, position, token in zip(todo, positions, best, strict=True):
                filled[i][position] = token
        return filled

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        n = self.slots or max_new_tokens
        mask, eos = self.tokenizer.mask_token_id, self.tokenizer.eos_token_id
        rows = [ids + [mask] * n for ids in self.tokenizer(list(prompts)).input_ids]
        spans = [range(len(r) - n, len(r)) for r in rows]
        answers = []
        for row, span in zip(self.infill(rows, spans), spans, strict=True):
            answer = row[span.start :]
            answer = answer[: answer.index(eos)] if eos in answer else answer
            answers.append(self.tokenizer.decode(answer, skip_special_tokens=True))
        return answers

    def logprobs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        self.model.eval()
        mask = self.tokenizer.mask_token_id
        prompts = self.tokenizer([p for p, _ in pairs]).input_ids
        answers = self.tokenizer([c for _, c in pairs], add_special_tokens=False).input_ids
        n = max([self.slots, *(len(a) for a in answers)])
        contexts: dict[tuple[tuple[int, ...], int], int] = {}  # (row, position) -> its index
        which, targets, owner = [], [], []
        for i, (prompt, answer) in enumerate(zip(prompts, answers, strict=True)):
            for j, token in enumerate(answer):  # token j given tokens < j, the rest masked
                context = (tuple(prompt + answer[:j] + [mask] * (n - j)), len(prompt) + j)
                # a prompt's candidates share their first context (and often more): run it once
                which.append(contexts.setdefault(context, len(contexts)))
                targets.append(token)
                owner.append(i)
        logprobs = self._logprobs_at([r for r, _ in contexts], [p for _, p in contexts])
        picked = logprobs[torch.tensor(which), torch.tensor(targets)]
        scores = torch.zeros(len(pairs)).index_add_(0, torch.tensor(owner), picked)
        return scores.tolist()


def apply(setting: Setting, method: str) -> Treatment:
    config = setting.remedies.mlm_u
    model = Bidirectional(copy.deepcopy(setting.start))
    slots = 2 + max(
        len(setting.tokenizer(e.completion, add_special_tokens=False).input_ids)
        for e in setting.test_examples
    )
    batch = setting.eval.batch_size

    def masked(trained: Bidirectional) -> MaskedLM:
        return MaskedLM(trained, setting.tokenizer, slots, batch)

    # On the facts alone, as Kitouni et al. train it: the reading documents teach a causal
    # reader to answer from its context, which nobody gives this model
    model, cost = setting.train_model(
        model=model,
        collate_fn=mlm_u_collate(setting.tokenizer, setting.seed),
        budget=replace(setting.train, steps=config.steps) if config.steps else None,
        lm_of=masked,
        reading=False,
    )
    lm = masked(model)
    return Treatment(lm, cost, rows=infill_rows(lm, setting, method))


def infill_rows(lm: MaskedLM, setting: Setting, method: str) -> list[dict]:
    """The one-way facts' reverse asked as a masked model is asked, beside the questions: a
    held-out sentence of the trained direction, its subject masked in place (its number of
    tokens given, a hint no question gives), filled; right when every token is the
    subject's."""
    tokenizer, mask = lm.tokenizer, lm.tokenizer.mask_token_id
    rows, spans, groups = [], [], []
    for e in setting.test_examples:
        if e.group not in ONE_WAY or e.sense != "same":
            continue
        fact = setting.facts[e.fact]
        sentence = e.prompt + e.completion
        start, end = subject_span(tokenizer, sentence, fact.a if e.direction == "a2b" else fact.b)
        ids = tokenizer(sentence).input_ids
        rows.append([*ids[:start], *[mask] * (end - start), *ids[end:]])
        spans.append(range(start, end))
        groups.append((e.group, ids[start:end], e.fact))
    if not rows:
        return []
    filled = lm.infill(rows, spans)
    hits: dict[str, list[bool]] = {}
    facts: dict[str, list[int]] = {}
    for row, span, (group, subject, fact_id) in zip(filled, spans, groups, strict=True):
        hits.setdefault(group, []).append(row[span.start : span.stop] == subject)
        facts.setdefault(group, []).append(fact_id)
    return [
        proportion_row(method, group, "reverse", "infill_exact_match", shown, facts[group])
        for group, shown in hits.items()
    ]
