"""What `revcurse compare` shows: the bar chart, markdown tables and report.md.

    revcurse compare --output-dir runs/compare   # writes chart.png and report.md with these
    python scripts/update_readme.py --compare runs/compare   # the README's block, likewise

matplotlib is imported by the chart alone (results.pyplot), so importing this stays cheap.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

from revcurse.results import METRICS, pyplot


def chart(rows: list[dict], path: Path) -> None:
    """Exact match per method on the one-way facts, same vs reverse, with 95% CIs."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cells = [(g, d) for g in ("p2d", "d2p") for d in ("same", "reverse")]
    lookup = {
        (r["method"], r["group"], r["direction"]): r for r in rows if r["metric"] == "exact_match"
    }
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(methods) + 2), 3.6))
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
    ax.set_title("One-way facts: trained direction (same) vs reverse")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_table(rows: list[dict], metrics: tuple[str, ...]) -> str:
    def cell(row: dict | None) -> str:
        if row is None or row["value"] is None:
            return "-"
        if row["metric"] == "p_value":
            return f"{row['value']:.2g}"
        ci = f" [{row['ci_low']:.2f}, {row['ci_high']:.2f}]" if row["ci_low"] is not None else ""
        return f"{row['value']:.2f}{ci}"

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


def summarize_costs(costs: list[dict]) -> list[dict]:
    out = []
    for method in dict.fromkeys(c["method"] for c in costs):
        runs = [c for c in costs if c["method"] == method]
        out.append(
            {
                "method": method,
                "train_seconds": statistics.fmean(c["train_seconds"] for c in runs),
                "train_flops": statistics.fmean(c["train_flops"] for c in runs),
                "wall_seconds": statistics.fmean(c["wall_seconds"] for c in runs),
            }
        )
    return out


def cost_table(costs: Sequence[dict]) -> list[str]:
    """Markdown lines: each method's mean training time and FLOPs, and its wall time."""
    return [
        "| method | train seconds | train FLOPs | wall seconds |",
        "|---|---|---|---|",
        *(
            f"| {c['method']} | {c['train_seconds']:.1f} | {c['train_flops']:.2e} | "
            f"{c['wall_seconds']:.1f} |"
            for c in costs
        ),
    ]


def report(setup: str, rows: list[dict], costs: list[dict]) -> str:
    """report.md: `setup` (what was compared, in a sentence or two), the chart, the main and
    the remedy-specific rows, and the cost of each method."""
    main = [r for r in rows if r["metric"] in METRICS]
    extra = [r for r in rows if r["metric"] not in METRICS]
    lines = [
        "# revcurse compare",
        "",
        f"{setup} Values are means over seeds with 95% t intervals across seeds (one seed: "
        "the run's own interval); p-values are combined with Fisher's method.",
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
        "the cores).",
        "",
        *cost_table(costs),
        "",
    ]
    return "\n".join(lines)
