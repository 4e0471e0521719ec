"""What `revcurse compare` shows: the bar chart, markdown tables and report.md.

    revcurse compare --output-dir runs/compare   # writes chart.png and report.md with these
    python scripts/update_readme.py --compare runs/compare   # the README's block, likewise

matplotlib is imported by the chart alone (results.pyplot), so importing this stays cheap.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from revcurse.facts import ONE_WAY
from revcurse.results import METRICS, pyplot


def chart(rows: list[dict], path: Path) -> None:
    """Exact match per method on the one-way facts, same vs reverse, with 95% CIs."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(methods) + 2), 3.6))
    one_way_bars(ax, rows)
    ax.set_title("One-way facts: trained direction (same) vs reverse")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def one_way_bars(ax: Any, rows: list[dict]) -> None:
    """On `ax`, a group of bars per method (in the rows' order): the one-way facts' exact
    match, each group and direction, with its 95% interval."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cells = [(g, d) for g in ONE_WAY for d in ("same", "reverse")]
    lookup = {
        (r["method"], r["group"], r["direction"]): r for r in rows if r["metric"] == "exact_match"
    }
    width = 0.8 / len(cells)
    for i, (group, direction) in enumerate(cells):
        xs, ys, lo, hi = [], [], [], []
        for j, method in enumerate(methods):
            row = lookup.get((method, group, direction))
            if row is None or row["value"] is None:
                continue
            xs.append(j + (i - (len(cells) - 1) / 2) * width)
            ys.append(row["value"])
            lo.append(row["value"] - (row["ci_low"] if row["ci_low"] is not None else row["value"]))
            hi.append(
                (row["ci_high"] if row["ci_high"] is not None else row["value"]) - row["value"]
            )
        hatch = "//" if direction == "reverse" else None
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=f"{group} {direction}", hatch=hatch)
    ax.set_xticks(range(len(methods)), methods, rotation=20)
    ax.set_ylabel("exact match")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, ncol=2)


def with_interval(row: dict) -> str:
    """`0.97 [0.89, 0.99]`: a row's value and its 95% interval, if it has one."""
    ci = f" [{row['ci_low']:.2f}, {row['ci_high']:.2f}]" if row["ci_low"] is not None else ""
    return f"{row['value']:.2f}{ci}"


def markdown_table(rows: list[dict], metrics: tuple[str, ...]) -> str:
    def cell(row: dict | None) -> str:
        if row is None or row["value"] is None:
            return "-"
        if row["metric"] == "p_value":
            return f"{row['value']:.2g}"
        return with_interval(row)

    index = {(r["method"], r["group"], r["direction"], r["metric"]): r for r in rows}
    keys = list(dict.fromkeys((r["method"], r["group"], r["direction"]) for r in rows))
    lines = [
        "| method | group | direction | " + " | ".join(metrics) + " |",
        "|---" * (3 + len(metrics)) + "|",
    ]
    for key in keys:
        lines.append(
            "| " + " | ".join([*key, *(cell(index.get((*key, m))) for m in metrics)]) + " |"
        )
    return "\n".join(lines)


def one_way(rows: list[dict], method: str, direction: str) -> float | None:
    """Mean exact match of a method's one-way groups (p2d, d2p) in one direction."""
    values = [
        r["value"]
        for r in rows
        if r["method"] == method
        and r["group"] in ONE_WAY
        and r["direction"] == direction
        and r["metric"] == "exact_match"
        and r["value"] is not None
    ]
    return statistics.fmean(values) if values else None


def summarize_costs(costs: list[dict], rows: list[dict]) -> list[dict]:
    """Per method: mean steps, training time and FLOPs over seeds, its FLOPs relative to the
    baseline's (or the first method's), its wall time, and what they bought: the one-way
    facts' exact match as trained (same) and in reverse."""
    out = []
    for method in dict.fromkeys(c["method"] for c in costs):
        runs = [c for c in costs if c["method"] == method]
        out.append(
            {
                "method": method,
                "train_steps": statistics.fmean(c.get("train_steps", 0) for c in runs),
                "train_seconds": statistics.fmean(c["train_seconds"] for c in runs),
                "cached_seconds": _mean_if_all(c.get("cached_seconds") for c in runs),
                "train_flops": statistics.fmean(c["train_flops"] for c in runs),
                "wall_seconds": statistics.fmean(c["wall_seconds"] for c in runs),
                "same": one_way(rows, method, "same"),
                "reverse": one_way(rows, method, "reverse"),
            }
        )
    reference = next((c for c in out if c["method"] == "baseline"), out[0] if out else {})
    for c in out:
        c["reference"] = reference["method"]
        c["flops_ratio"] = (
            c["train_flops"] / reference["train_flops"] if reference["train_flops"] else None
        )
    return out


def _mean_if_all(values: Iterable[float | None]) -> float | None:
    """The mean, where every value is there (every seed's model was loaded from the cache)."""
    values = list(values)
    return None if None in values else statistics.fmean(values)  # type: ignore[arg-type]


def cost_table(costs: Sequence[dict]) -> list[str]:
    """Markdown lines: each method's cost (mean steps, training time and FLOPs, FLOPs
    relative to the reference method, wall time) and the one-way exact match it bought."""

    def number(value: float | None, form: str) -> str:
        return "-" if value is None else format(value, form)

    def seconds(cost: dict) -> str:
        if cost.get("cached_seconds") is None:
            return f"{cost['train_seconds']:.1f}"
        return f"{cost['train_seconds']:.1f} (cached; trained in {cost['cached_seconds']:.1f})"

    reference = costs[0]["reference"] if costs else "baseline"
    return [
        f"| method | steps | train seconds | train FLOPs | FLOPs / {reference} | "
        "one-way same | one-way reverse | wall seconds |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {c['method']} | {c['train_steps']:.0f} | {seconds(c)} | "
            f"{c['train_flops']:.2e} | {number(c['flops_ratio'], '.2f')} | "
            f"{number(c['same'], '.2f')} | {number(c['reverse'], '.2f')} | "
            f"{c['wall_seconds']:.1f} |"
            for c in costs
        ),
    ]


def efficiency_chart(costs: Sequence[dict], path: Path) -> None:
    """What a remedy buys for its compute: each method's one-way exact match, as trained
    (open) and in reverse (filled), one row per method in order of its training FLOPs
    relative to the reference method (the row's label; most methods tie at 1x, so a FLOPs
    axis would stack them on one point)."""
    plt = pyplot()
    shown = sorted(costs, key=lambda c: c["flops_ratio"] or 0.0)
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.32 * len(shown)))
    for y, c in enumerate(shown):
        if c["same"] is not None and c["reverse"] is not None:
            ax.plot([c["same"], c["reverse"]], [y, y], color="0.6", lw=1)
        if c["same"] is not None:
            ax.scatter([c["same"]], [y], facecolors="white", edgecolors="C0", s=36, zorder=3)
        if c["reverse"] is not None:
            ax.scatter([c["reverse"]], [y], color="C3", s=36, zorder=3)
    labels = [
        f"{c['method']} ({c['flops_ratio']:.2f}x)" if c["flops_ratio"] else c["method"]
        for c in shown
    ]
    ax.set_yticks(range(len(shown)), labels, fontsize=8)
    ax.set_xlim(-0.05, 1.05)
    ax.set_xlabel("one-way exact match: trained direction (open), reverse (filled)")
    reference = costs[0]["reference"] if costs else "baseline"
    ax.set_title(f"By training FLOPs / {reference} (in brackets)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(setup: str, rows: list[dict], costs: list[dict]) -> str:
    """report.md: `setup` (what was compared, in a sentence or two), the chart, the main and
    the remedy-specific rows, and the cost of each method."""
    main = [r for r in rows if r["metric"] in METRICS]
    extra = [r for r in rows if r["metric"] not in METRICS]
    lines = [
        "# revcurse compare",
        "",
        f"{setup} Shares are pooled over seeds with 95% Wilson intervals over facts (each "
        "seed's world its own facts); other values are means over seeds with 95% t intervals "
        "across seeds (one seed: the run's own interval); p-values are combined with "
        "Fisher's method.",
        "",
        "![exact match per method](chart.png)",
        "",
        markdown_table(main, METRICS),
        "",
    ]
    if extra:
        names = tuple(dict.fromkeys(r["metric"] for r in extra))
        lines += ["## Remedy-specific measurements", "", markdown_table(extra, names), ""]
    lines += [
        "## Cost",
        "",
        "Training FLOPs are estimated as 6 x parameters x tokens; prompting methods reuse the "
        "baseline model, so they report its training. Wall time includes evaluation; each "
        "method is timed in the process that ran it (with several workers, on its share of "
        "the cores). One-way same / reverse: the mean exact match of the p2d and d2p facts "
        "(the treated ones, for the weight remedies) as trained and in reverse.",
        "",
        *cost_table(costs),
        "",
        "![one-way exact match against training FLOPs](efficiency.png)",
        "",
    ]
    return "\n".join(lines)
