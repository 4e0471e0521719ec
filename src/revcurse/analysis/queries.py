"""The prompts every analysis reads: one `Query` per fact and phrasing.

    revcurse analyze runs/demo-20261126-093000   # builds these from RUN_DIR/world

A query is a prompt tokenized exactly as training tokenizes it (revcurse.lm.batching.encode), the
token span of the entity it names (the *subject*) and the *target*: the first completion
token that tells this fact's answer from the others'. Completions that start alike
(" the inventor of ...") are fed up to where they differ, so the target is not a word every
description shares.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from revcurse.facts import DIRECTIONS, GROUPS, Fact, Template, sense
from revcurse.lm.batching import IGNORE, encode, subject_span

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

RELATIONS = ("same", "reverse")  # the trained direction of a fact, and the other one


@dataclass(frozen=True)
class Query:
    """`input_ids`: BOS + prompt + the completion tokens every fact shares in this phrasing;
    [subject_start, subject_end): the tokens of the entity the prompt gives; `target`: the
    token the model should predict next."""

    input_ids: tuple[int, ...]
    subject_start: int
    subject_end: int
    target: int
    group: str = ""
    direction: str = ""  # a2b or b2a
    fact: int = -1
    template: int = -1

    @property
    def sense(self) -> str:
        return sense(self.group, self.direction)


def shared_prefix(sequences: Sequence[Sequence[int]]) -> int:
    """How many leading tokens all sequences have in common."""
    n = 0
    while all(len(s) > n for s in sequences) and len({s[n] for s in sequences}) == 1:
        n += 1
    return n


def build_queries(
    facts: Sequence[Fact],
    templates: Sequence[Template],
    tokenizer: PreTrainedTokenizerBase,
    splits: Sequence[str] = ("test",),
) -> list[Query]:
    """A query for every fact and every template of the given splits."""
    queries = []
    for template_id, template in enumerate(templates):
        if template.split not in splits:
            continue
        kind = [(i, f) for i, f in enumerate(facts) if f.relation == template.relation]
        if not kind:
            continue
        examples = [template.fill(fact, fact_id, template_id) for fact_id, fact in kind]
        encoded = encode(tokenizer, [(e.prompt, e.completion) for e in examples], eos=False)
        # The prompt's tokens are the masked ones; the completion's follow them.
        completions = [ids[labels.count(IGNORE) :] for ids, labels in encoded]
        # One fact alone shares everything with itself: its answer starts at once.
        shared = shared_prefix(completions) if len(kind) > 1 else 0
        for (_, fact), example, (ids, labels) in zip(kind, examples, encoded, strict=True):
            n = labels.count(IGNORE)
            fed = n + min(shared, len(ids) - n - 1)  # at least one completion token is left
            subject = fact.a if template.direction == "a2b" else fact.b
            start, end = subject_span(tokenizer, example.prompt, subject)
            queries.append(
                Query(
                    tuple(ids[:fed]),
                    start,
                    end,
                    ids[fed],
                    group=example.group,
                    direction=example.direction,
                    fact=example.fact,
                    template=example.template,
                )
            )
    return queries


def sample_queries(queries: Sequence[Query], per_group: int, seed: int) -> list[Query]:
    """`per_group` facts of each group, each with one phrasing per direction drawn at random:
    `per_group` prompts per group and direction, one per fact, so they are independent."""
    rng = random.Random(seed)
    chosen = []
    for group in GROUPS:
        facts = sorted({q.fact for q in queries if q.group == group})
        for fact in sorted(rng.sample(facts, min(per_group, len(facts)))):
            for direction in DIRECTIONS:
                options = [q for q in queries if q.fact == fact and q.direction == direction]
                if options:
                    chosen.append(rng.choice(options))
    return chosen


def cells(queries: Sequence[Query]) -> dict[tuple[str, str], list[Query]]:
    """The queries of each (group, relation) that has any, in table order."""
    out: dict[tuple[str, str], list[Query]] = {}
    for group in GROUPS:
        for rel in RELATIONS:
            chosen = [q for q in queries if q.group == group and q.sense == rel]
            if chosen:
                out[(group, rel)] = chosen
    return out
