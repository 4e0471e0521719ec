"""What the wrong answers are: another fact's trained answer, or something else.

    revcurse analyze runs/compare-20261206-180000   # any compare or demo run: these rows

A model that stores a one-way map answers a reverse question with what it learned to
answer: an entity it was trained to produce, for another fact (mlm_u's wrong reverse
answers, docs/remedies.md). Read from a run's scored answers (samples.jsonl) alone, no
model: an answer is `right` (exact match), another fact's trained answer (it starts with
the answer of another fact's trained direction, in the same world: Berglund's rule), or
other text. Rows per method, group and direction, the seeds pooled; the three shares sum
to 1.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from revcurse.evaluate import seeded_facts, starts_with
from revcurse.stats import proportion_row

KINDS = ("wrong_trained_answer", "wrong_other")
SAMPLE_KEYS = ("method", "group", "direction", "target", "output", "correct")  # what it reads


def trained(sample: dict) -> bool:
    """Whether the sample asks a fact in a direction its training text states."""
    return sample["direction"] == "same" or sample["group"] == "both"


def answer_rows(samples: Sequence[dict]) -> list[dict]:
    """For each (method, group, direction): the share of answers that are wrong and another
    fact's trained answer, and of those wrong otherwise."""
    answers: dict[int, set[str]] = defaultdict(set)  # seed -> its world's trained answers
    for s in samples:
        if trained(s):
            answers[s.get("seed", 0)].add(s["target"])
    cells: dict[tuple[str, str, str], list[tuple[dict, str]]] = defaultdict(list)
    for s in samples:
        kind = "right"
        if not s["correct"]:
            others = answers[s.get("seed", 0)] - {s["target"]}
            recalled = any(starts_with(s["output"], a) for a in others)
            kind = "wrong_trained_answer" if recalled else "wrong_other"
        cells[s["method"], s["group"], s["direction"]].append((s, kind))
    return [
        proportion_row(
            *cell,
            metric=metric,
            hits=[k == metric for _, k in judged],
            facts=seeded_facts([s for s, _ in judged]),
        )
        for cell, judged in cells.items()
        for metric in KINDS
    ]
