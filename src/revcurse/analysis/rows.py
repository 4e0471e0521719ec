"""The analysis's results.json rows, and the table that sums them up.

    revcurse analyze runs/demo-20261126-093000   # writes these rows, prints summary_table

Rows are revcurse.stats' tidy rows with method "analysis": one per (group, relation,
metric), where a metric names the measurement and its site (`lens_target_prob_layer2`,
`trace_mlp_layer1_last_token`, `probe_acc_prompt_end_layer2`, `assoc_margin`, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table

from revcurse.analysis.queries import RELATIONS
from revcurse.facts import GROUPS
from revcurse.stats import mean_row, row

METHOD = "analysis"


def point_row(group: str, rel: str, metric: str, value: float | None, n: int) -> dict[str, Any]:
    """A value without an interval: a median, a peak's site, a chance level."""
    return row(METHOD, group, rel, metric, value, n, None)


def average_row(group: str, rel: str, metric: str, values: Sequence[float]) -> dict[str, Any]:
    """Mean with its t interval; an interval of constant values is the value itself (a t
    interval would be NaN, and a clean prompt often gives exactly 0 effect)."""
    values = [float(v) for v in values]
    if len(values) > 1 and max(values) == min(values):
        return row(METHOD, group, rel, metric, values[0], len(values), (values[0], values[0]))
    return mean_row(METHOD, group, rel, metric, values)


def lookup(rows: Sequence[dict], group: str, rel: str, metric: str) -> float | None:
    """The value of one row, None when the analysis did not measure it."""
    for r in rows:
        if (r["group"], r["direction"], r["metric"]) == (group, rel, metric):
            return r["value"]
    return None


Peaks = dict[tuple[str, str, str], tuple[int, str, float]]  # (group, rel, kind) -> site, effect

COLUMNS = (
    "group",
    "direction",
    "lens p by layer",
    "clean p",
    "noised p",
    "mlp peak",
    "attn peak",
    "probe B end",
    "probe prompt end",
    "chance",
    "assoc own / rand",
)


def summary_table(rows: Sequence[dict], peaks: Peaks, layers: int, title: str) -> Table:
    """One line per group and direction: the numbers that say where the map lives (lens and
    probe series run from layer 0 = embeddings to the last layer)."""
    table = Table(title=title, title_justify="left")
    for name in COLUMNS:
        table.add_column(name, justify="left" if name in ("group", "direction") else "right")

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    def series(group: str, rel: str, prefix: str) -> str:
        values = [lookup(rows, group, rel, f"{prefix}{layer}") for layer in range(layers + 1)]
        return "-" if all(v is None for v in values) else " ".join(fmt(v) for v in values)

    def peak(group: str, rel: str, kind: str) -> str:
        if (group, rel, kind) not in peaks:
            return "-"
        layer, where, effect = peaks[(group, rel, kind)]
        return f"L{layer} {where} {effect:+.2f}"

    for group in GROUPS:
        for rel in RELATIONS:
            if lookup(rows, group, rel, "lens_max_prob") is None:
                continue
            own, other = (lookup(rows, group, rel, m) for m in ("assoc_score", "assoc_random"))
            table.add_row(
                group,
                rel,
                series(group, rel, "lens_target_prob_layer"),
                fmt(lookup(rows, group, rel, "trace_clean_prob")),
                fmt(lookup(rows, group, rel, "trace_corrupted_prob")),
                peak(group, rel, "mlp"),
                peak(group, rel, "attn"),
                series(group, rel, "probe_acc_layer"),
                series(group, rel, "probe_acc_prompt_end_layer"),
                fmt(lookup(rows, group, rel, "probe_chance")),
                "-" if own is None else f"{own:+.2f} / {other:+.2f}",
            )
    return table
