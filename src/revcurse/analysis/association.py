"""Weight-level association: does A's token alone raise B's, and B's raise A's?

    revcurse analyze runs/demo-20261126-093000   # metrics assoc_*, figure assoc.png

After Zhu et al. 2024's effective weights. For a fact and a direction, the source token s
is the last token of the entity the prompt gives (A's last name for a2b, the description's
last word for b2a) and the target token t is that direction's target (the role word of B,
the first name of A). With the model fed s alone (no BOS, no phrasing),

    score(s -> t) = logit(t | s) - mean over c in C of logit(c | s)

where C is the set of targets of every fact in that direction. A stored one-way map scores
above random pairs in the trained direction and not in the other.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from revcurse.analysis.queries import Query
from revcurse.analysis.rows import average_row
from revcurse.facts import DIRECTIONS, GROUPS, sense
from revcurse.lm.hooks import final_logits

if TYPE_CHECKING:
    from transformers import PreTrainedModel


@torch.no_grad()
def single_token_logits(model: PreTrainedModel, tokens: Sequence[int]) -> torch.Tensor:
    """(n, vocab): the logits after one token alone, at position 0 with no BOS. Attention
    then only sees the token itself (softmax over one key is 1), so this is a function of
    the weights: embedding -> every layer's attention value/output map and MLP -> norm ->
    unembedding."""
    ids = torch.tensor(tokens, device=model.device)[:, None]
    return final_logits(model, ids).cpu()


def association_scores(
    model: PreTrainedModel,
    sources: Sequence[int],
    targets: Sequence[int],
    candidates: Sequence[int],
    pairs: Sequence[tuple[int, int]],
) -> list[float]:
    """For each (i, j) in pairs: logit of targets[j] given sources[i] alone, minus the mean
    logit of the candidate targets (so a uniformly raised output does not count)."""
    logits = single_token_logits(model, sources)
    centre = logits[:, list(candidates)].mean(1)
    return [(logits[i, targets[j]] - centre[i]).item() for i, j in pairs]


def assoc_rows(
    model: PreTrainedModel, queries: Sequence[Query], seed: int
) -> tuple[list[dict], dict[tuple[str, str], tuple[float, float]]]:
    """Rows per cell: `assoc_score`, each fact's own pair; `assoc_random`, its source with
    the target of a random other fact of the same group whose target token differs;
    `assoc_margin`, their paired difference. Also (own, random) means for the figure."""
    rng = random.Random(seed)
    rows, bars = [], {}
    for direction in DIRECTIONS:
        first: dict[int, Query] = {}  # one query per fact: the tokens do not depend on phrasing
        for q in queries:
            if q.direction == direction:
                first.setdefault(q.fact, q)
        chosen = list(first.values())
        sources = [q.input_ids[q.subject_end - 1] for q in chosen]
        targets = [q.target for q in chosen]
        candidates = sorted(set(targets))
        pairs, randoms = [], []
        for i, q in enumerate(chosen):
            others = [
                j for j, o in enumerate(chosen) if o.group == q.group and targets[j] != targets[i]
            ]
            pairs.append((i, i))
            randoms.append((i, rng.choice(others) if others else i))
        own = association_scores(model, sources, targets, candidates, pairs)
        other = association_scores(model, sources, targets, candidates, randoms)
        for group in GROUPS:
            at = [i for i, q in enumerate(chosen) if q.group == group]
            if not at:
                continue
            rel = sense(group, direction)
            rows.append(average_row(group, rel, "assoc_score", [own[i] for i in at]))
            rows.append(average_row(group, rel, "assoc_random", [other[i] for i in at]))
            rows.append(average_row(group, rel, "assoc_margin", [own[i] - other[i] for i in at]))
            bars[(group, rel)] = (
                float(np.mean([own[i] for i in at])),
                float(np.mean([other[i] for i in at])),
            )
    return rows, bars
