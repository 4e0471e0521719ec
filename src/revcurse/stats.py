"""Result rows and their statistics: one row per method, group, direction and metric.

    revcurse compare --seeds 3   # per-seed rows, then `aggregate` across the seeds

Each row is {"method", "group", "direction", "metric", "value", "n", "facts", "trials",
"ci_low", "ci_high"}: a proportion with its Wilson interval (over facts, when several
questions ask about one fact), a mean with its t interval, a p-value, and the across-seed
aggregate of any of them. `n` counts questions, `facts` the facts they ask about and
`trials` a proportion's effective number of independent draws (None: not counted).
scipy is imported by the functions that use it, so that the command line can import the
stages without loading it.
"""

from __future__ import annotations

import math
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

CONFIDENCE = 0.95


def row(
    method: str,
    group: str,
    direction: str,
    metric: str,
    value: float | None,
    n: int,
    ci: tuple[float, float] | None,
    facts: int | None = None,
    trials: float | None = None,
) -> dict[str, Any]:
    def clean(x: float | None) -> float | None:  # JSON has no NaN
        return None if x is None or not math.isfinite(x) else float(x)

    low, high = ci if ci else (None, None)
    return {
        "method": method,
        "group": group,
        "direction": direction,
        "metric": metric,
        "value": clean(value),
        "n": n,
        "facts": facts,
        "trials": clean(trials),
        "ci_low": clean(low),
        "ci_high": clean(high),
    }


def wilson(share: float, n: float) -> tuple[float, float]:
    """Wilson score interval of a share observed on n (possibly fractional, effective) trials."""
    from scipy import stats

    z = float(stats.norm.ppf(0.5 + CONFIDENCE / 2))
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    # it holds the share; rounding alone could leave a share of 0 or 1 just outside
    return max(0.0, min(share, centre - half)), min(1.0, max(share, centre + half))


def effective_trials(hits: Sequence[bool], facts: Sequence[object]) -> float:
    """n divided by the design effect of asking several questions about one fact (Kish): the
    variance of the share with facts as clusters over its variance as if every question
    were independent, between 1 and the mean questions per fact. Where every answer is the
    same, no variance says how alike a fact's questions are: then the facts are the
    trials (the cautious end)."""
    n = len(hits)
    clusters: dict[object, list[bool]] = defaultdict(list)
    for h, f in zip(hits, facts, strict=True):
        clusters[f].append(bool(h))
    m = len(clusters)
    if m == n:
        return float(n)
    share = sum(hits) / n
    if share in (0.0, 1.0) or m < 2:
        return float(m)
    clustered = m / (m - 1) * sum((sum(c) - share * len(c)) ** 2 for c in clusters.values())
    design = clustered / (n * share * (1 - share))
    return n / min(max(design, 1.0), n / m)


def proportion_row(
    method: str,
    group: str,
    direction: str,
    metric: str,
    hits: Sequence[bool],
    facts: Sequence[object] | None = None,
) -> dict:
    """Share of hits with a Wilson score interval (sound near 0 and 1, where the curse lives).
    With `facts` (the fact each question asks about), the interval is over facts: Wilson's
    on the effective number of trials (effective_trials), since two phrasings of one fact
    are not two independent draws."""
    k, n = sum(bool(h) for h in hits), len(hits)
    trials = effective_trials(hits, facts) if facts is not None else float(n)
    counted = len(set(facts)) if facts is not None else None
    return row(method, group, direction, metric, k / n, n, wilson(k / n, trials), counted, trials)


def mean_row(method: str, group: str, direction: str, metric: str, values: Sequence[float]) -> dict:
    """Mean with a t interval."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return row(method, group, direction, metric, mean, n, None)
    ci = stats.ttest_1samp(values, 0.0).confidence_interval(CONFIDENCE)
    return row(method, group, direction, metric, mean, n, (ci.low, ci.high))


def p_value_row(
    method: str, group: str, direction: str, metric: str, a: Sequence[float], b: Sequence[float]
) -> dict:
    """Two-sided paired t-test of a against b (Berglund et al.'s log-likelihood test)."""
    from scipy import stats

    p = stats.ttest_rel(a, b).pvalue if len(a) > 1 else None
    return row(method, group, direction, metric, p, len(a), None)


def ks_row(
    method: str, group: str, direction: str, metric: str, a: Sequence[float], b: Sequence[float]
) -> dict:
    """Two-sample Kolmogorov-Smirnov test: do a and b come from the same distribution?"""
    from scipy import stats

    p = stats.ks_2samp(a, b).pvalue if a and b else None
    return row(method, group, direction, metric, p, len(a), None)


PROPORTIONS = (
    "exact_match",
    "anywhere",
    "rank_acc",
    "reliability",
    "generalization",
    "kept",
    "control_exact_match",
    "locality",
    "locality_known",
    "locality_replayed",
    "locality_world",
    "sham_exact_match",
    "sham_generalization",
    "teacher_accuracy",
    "teacher_agreed",
    "own_question_accuracy",
    "own_question_kept",
    "statements_named",
    "infill_exact_match",
    "wrong_trained_answer",
    "wrong_other",
)


def is_proportion(metric: str) -> bool:
    return metric in PROPORTIONS or metric.startswith("retrieval_recall")


def aggregate(rows: list[dict]) -> list[dict]:
    """One row per method, group, direction and metric: a share counted over facts (every
    seed's world its own facts) pooled over seeds, with the Wilson interval of their summed
    effective trials; any other value the mean over seeds with a t interval across seeds
    (with one seed, that run's own interval); p-values combined by Fisher."""
    from scipy import stats

    by_key: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        by_key[(row["method"], row["group"], row["direction"], row["metric"])].append(row)
    out = []
    for (method, group, direction, metric), runs in by_key.items():
        values = [r["value"] for r in runs if r["value"] is not None]
        row = {
            "method": method,
            "group": group,
            "direction": direction,
            "metric": metric,
            "value": None,
            "n": sum(r["n"] for r in runs),
            "facts": None
            if any(r.get("facts") is None for r in runs)
            else sum(r["facts"] for r in runs),
            "trials": None,
            "ci_low": None,
            "ci_high": None,
        }
        if metric == "p_value" and len(values) > 1:
            tiny = [max(v, sys.float_info.min) for v in values]  # a p-value that underflowed to 0
            row["value"] = float(stats.combine_pvalues(tiny, method="fisher").pvalue)
        elif (
            is_proportion(metric)
            and len(values) == len(runs)
            and all(r.get("trials") is not None for r in runs)
        ):
            share = sum(r["value"] * r["n"] for r in runs) / row["n"]
            trials = sum(r["trials"] for r in runs)
            low, high = wilson(share, trials)
            row.update(value=share, trials=trials, ci_low=low, ci_high=high)
        elif len(values) == 1:
            row.update(value=values[0], ci_low=runs[0]["ci_low"], ci_high=runs[0]["ci_high"])
        elif values:
            mean = statistics.fmean(values)
            half = stats.t.ppf(0.5 + CONFIDENCE / 2, len(values) - 1) * stats.sem(values)
            spread = 0.0 if half != half else float(half)  # identical values: sem is 0 or nan
            low, high = mean - spread, mean + spread
            if is_proportion(metric):  # a share's interval stays inside [0, 1]
                low, high = max(0.0, low), min(1.0, high)
            row.update(value=mean, ci_low=low, ci_high=high)
        out.append(row)
    return out
