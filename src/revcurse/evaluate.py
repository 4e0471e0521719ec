"""Evaluation: Berglund's exact-match rule and the log-likelihood ranking test.

(a) Exact match: greedy generation; correct when the output starts with the completion,
    case-insensitive, its final punctuation aside (Berglund et al. 2023); `anywhere`, the
    completion anywhere in the output, is reported beside it.
(b) Log-likelihood: log p(completion | prompt) of the correct entity against every other
    entity of its group in the same phrasing; rank-1 accuracy against chance 1/k, the
    mean margin over the alternatives and a paired t-test p-value.
The model is asked through revcurse.lm.causal (or any LanguageModel, e.g. MLM-U's).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from revcurse.config import check
from revcurse.facts import GROUPS, Example, relation_cells, words
from revcurse.lm.causal import LanguageModel
from revcurse.stats import mean_row, p_value_row, proportion_row, row

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass
class EvalConfig:
    batch_size: int = 256
    """sequences per forward pass; scores do not depend on it"""
    max_candidates: int = 0
    """0 = rank against every entity of the group; N = N-1 sampled others"""
    max_new_tokens: int = 0
    """0 = the longest completion plus 2 tokens"""
    # The tiny reader learned to read without them; pretrained models get 3 by default
    # (scripts/sweep_shots.py), so that they answer from their context (context.worked_examples)
    shots: int = 0
    """worked examples (other fictitious facts) before a question in context"""

    def __post_init__(self) -> None:
        check(self.batch_size >= 1, "batch_size", f"must be at least 1, got {self.batch_size}")
        check(self.shots >= 0, "shots", f"must be 0 or more, got {self.shots}")
        for name in ("max_candidates", "max_new_tokens"):
            value = getattr(self, name)
            check(value >= 0, name, f"must be 0 (automatic) or more, got {value}")


def check_no_shots(config: EvalConfig) -> None:
    """For recipes that ask closed book only: worked examples are for questions with their
    fact in context."""
    check(
        config.shots == 0,
        "eval.shots",
        "worked examples go before questions with their fact in context: revcurse compare",
    )


def entity_words(completion: str) -> list[str]:
    """The words an answer must give: the completion's, casefolded, without the punctuation
    that ends it (a name followed by a line break or a comma is the name)."""
    target = words(completion.casefold())
    while target and not target[-1][0].isalnum():
        target.pop()
    return target


def starts_with(output: str, completion: str) -> bool:
    """Berglund's rule: the output starts with the completion, case-insensitive, its final
    punctuation aside. Compared word by word (punctuation as words), so tokenizers that
    decode "Crane ." still match."""
    target = entity_words(completion)
    return bool(target) and words(output.casefold())[: len(target)] == target


def anywhere(output: str, completion: str) -> bool:
    """The lenient rule reported beside it: the completion's words appear anywhere in the
    output, in order and together (an answer that first repeats the question, say)."""
    target, said = entity_words(completion), words(output.casefold())
    return bool(target) and any(
        said[i : i + len(target)] == target for i in range(len(said) - len(target) + 1)
    )


def alternatives(examples: Sequence[Example], max_candidates: int, seed: int) -> list[list[str]]:
    """For each example: its own completion first, then the completions of the same phrasing
    for the other facts of its group and relation (all of them, or max_candidates - 1
    sampled): a capital is ranked against capitals, never against people."""
    pools: dict[tuple, list[str]] = defaultdict(list)

    def key(e: Example) -> tuple:
        return (e.group, e.direction, e.split, e.template, e.relation)

    for e in examples:
        if e.completion not in pools[key(e)]:
            pools[key(e)].append(e.completion)
    rng = random.Random(seed)
    out = []
    for e in examples:
        others = [c for c in pools[key(e)] if c != e.completion]
        if max_candidates:
            others = rng.sample(others, min(len(others), max_candidates - 1))
        out.append([e.completion, *others])
    return out


def evaluate(
    lm: LanguageModel,
    examples: Sequence[Example],
    config: EvalConfig,
    method: str,
    seed: int = 0,
) -> tuple[list[dict], list[dict]]:
    """(results rows, samples) for the given test examples."""
    outputs = answers(lm, examples, config)
    candidates = alternatives(examples, config.max_candidates, seed)
    ranked = rank_candidates(lm, [e.prompt for e in examples], candidates)

    samples = []
    for e, output, ranking in zip(examples, outputs, ranked, strict=True):
        samples.append(
            {
                "method": method,
                "fact": e.fact,
                "group": e.group,
                "relation": e.relation,
                "direction": e.sense,
                "template": e.template,
                "prompt": e.prompt,
                "target": e.completion,
                "output": output,
                "correct": starts_with(output, e.completion),
                "anywhere": anywhere(output, e.completion),
                **ranking,
            }
        )
    return summarize(samples, method), samples


def answers(lm: LanguageModel, examples: Sequence[Example], config: EvalConfig) -> list[str]:
    """Greedy answers to the examples' prompts, as long as `answer_tokens` allows."""
    if not examples:  # e.g. the replayable facts of a world without a `both` group
        return []
    max_new = answer_tokens(lm.tokenizer, [e.completion for e in examples], config)
    return lm.generate([e.prompt for e in examples], max_new)


def answer_tokens(
    tokenizer: PreTrainedTokenizerBase, completions: Sequence[str], config: EvalConfig
) -> int:
    """Tokens to generate: config.max_new_tokens, or the longest completion plus 2."""
    return config.max_new_tokens or 2 + max(
        len(tokenizer(c, add_special_tokens=False).input_ids) for c in completions
    )


def rank_candidates(
    lm: LanguageModel, prompts: Sequence[str], candidates: Sequence[Sequence[str]]
) -> list[dict]:
    """For each prompt and its candidate completions (the target first): the target's
    log-prob, its rank among them, their number and the others' mean log-prob."""
    pairs = sorted({(p, c) for p, cands in zip(prompts, candidates, strict=True) for c in cands})
    scored = dict(zip(pairs, lm.logprobs(pairs), strict=True))
    out = []
    for prompt, cands in zip(prompts, candidates, strict=True):
        logps = [scored[(prompt, c)] for c in cands]
        others = logps[1:]
        out.append(
            {
                "logprob": logps[0],
                "rank": 1 + sum(o >= logps[0] for o in others),  # ties count against the target
                "n_candidates": len(cands),
                "mean_other_logprob": sum(others) / len(others) if others else None,
            }
        )
    return out


def facts_of(samples: Sequence[dict]) -> list[int] | None:
    """The fact each sample asks about, where each says (a pairs run's samples do not)."""
    return [s["fact"] for s in samples] if all("fact" in s for s in samples) else None


def seeded_facts(samples: Sequence[dict]) -> list[tuple[int, int]] | None:
    """(seed, fact) of each sample: samples of several seeds ask about a fact of each seed's
    world (facts_of's None where one does not say)."""
    facts = facts_of(samples)
    return (
        None
        if facts is None
        else [(s.get("seed", 0), f) for s, f in zip(samples, facts, strict=True)]
    )


def summarize(
    samples: Sequence[dict],
    method: str,
    groups: Sequence[str] = GROUPS,
    directions: Sequence[str] = ("same", "reverse"),
) -> list[dict]:
    """Tidy result rows per group and direction from scored samples; in a world of several
    relations, then rows per relation too, its group written `group/relation`."""
    kinds = list(dict.fromkeys(s.get("relation", "") for s in samples))
    rows = []
    for label, group, kind in relation_cells(groups, kinds):
        for rel in directions:
            cell = [
                s
                for s in samples
                if s["group"] == group
                and s["direction"] == rel
                and kind in (None, s.get("relation", ""))
            ]
            ranked = [s for s in cell if s["n_candidates"] > 1]
            if not cell:
                continue
            key = {"method": method, "group": label, "direction": rel}
            facts = facts_of(cell)
            for metric, hits in (
                ("exact_match", [s["correct"] for s in cell]),
                ("anywhere", [s["anywhere"] for s in cell]),
            ):
                rows.append(proportion_row(**key, metric=metric, hits=hits, facts=facts))
            if not ranked:
                continue
            rows.append(
                proportion_row(
                    **key,
                    metric="rank_acc",
                    hits=[s["rank"] == 1 for s in ranked],
                    facts=facts_of(ranked),
                )
            )
            chance = [1 / s["n_candidates"] for s in ranked]
            rows.append(
                row(
                    method,
                    label,
                    rel,
                    "rank_chance",
                    sum(chance) / len(chance),
                    len(ranked),
                    None,
                    None if (asked := facts_of(ranked)) is None else len(set(asked)),
                )
            )
            correct = [s["logprob"] for s in ranked]
            other = [s["mean_other_logprob"] for s in ranked]
            rows.append(
                mean_row(
                    **key,
                    metric="logprob_margin",
                    values=[c - o for c, o in zip(correct, other, strict=True)],
                )
            )
            rows.append(p_value_row(**key, metric="p_value", a=correct, b=other))
    return rows
