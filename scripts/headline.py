"""The README's headline: the thesis end to end, tiny model and SmolLM2 side by side.

    .venv/bin/python scripts/headline.py      # the newest runs of each kind (make readme-headline)
    .venv/bin/python scripts/headline.py --runs "tiny=runs/a:baseline,in_context" ...

For each panel, methods from finished `revcurse compare` runs: the one-way facts' exact match
in the direction they were trained (same) and the other (reverse), each group pooled over the
run's seeds with its 95% Wilson interval over facts (revcurse.stats.proportion_row), as a
figure (docs/headline.png) and a table, both put into the README's `headline` block. A
remedy that treated some of the facts (the baking remedies: half of each one-way group) is
shown beside the baseline of the same run on those same facts. A run is named by a glob
(the newest folder that matches).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from revcurse.evaluate import seeded_facts
from revcurse.records import read_records
from revcurse.report import one_way_bars, with_interval
from revcurse.results import pyplot
from revcurse.stats import proportion_row

ROOT = Path(__file__).resolve().parents[1]
FIGURE = "docs/headline.png"
# (panel, run folder glob, methods): the tiny world's compare (3 seeds) and SmolLM2's on 3
# fresh worlds no sweep used (seeds 100-102), 30 facts a group (make readme-headline)
RUNS = [
    "tiny model, 30 facts a group=runs/headline-tiny-*:"
    "baseline,in_context,bidirectional,self_distill,hebbian_memit",
    "SmolLM2-135M, fresh worlds, 30 facts a group=runs/headline-smollm2-fresh-*:"
    "baseline,self_distill,hebbian_memit",
]
CELLS = [("p2d", "same"), ("p2d", "reverse"), ("d2p", "same"), ("d2p", "reverse")]


def newest(pattern: str) -> Path:
    found = [p for p in ROOT.glob(pattern) if (p / "results.json").exists()]
    if not found:
        raise SystemExit(f"{pattern}: no finished run (make readme-headline runs them)")
    return max(found, key=lambda p: p.stat().st_mtime)


def cells_of(method: str, samples: list[dict]) -> dict[tuple[str, str], dict]:
    """{(group, direction): exact-match row} of these samples, pooled over seeds, its
    interval over facts (a fact of each seed's world)."""
    cells = {}
    for group, direction in CELLS:
        cell = [s for s in samples if (s["group"], s["direction"]) == (group, direction)]
        if cell:
            hits = [s["correct"] for s in cell]
            facts = seeded_facts(cell)
            cells[group, direction] = proportion_row(
                method, group, direction, "exact_match", hits, facts
            )
    return cells


def collect(specs: list[str]) -> list[tuple[str, str, Path, dict[tuple[str, str], dict]]]:
    """(panel, method, run, {(group, direction): exact-match row}) in the specs' order; before
    a remedy that treated only some of the facts, `baseline, same facts`."""
    out = []
    for spec in specs:
        panel, rest = spec.split("=", 1)
        pattern, methods = rest.rsplit(":", 1)
        run = newest(pattern)
        by_method: dict[str, list[dict]] = {}
        for _, s in read_records(run / "samples.jsonl"):
            by_method.setdefault(s["method"], []).append(s)
        base = by_method.get("baseline", [])
        for method in methods.split(","):
            own = by_method.get(method, [])
            cells = cells_of(method, own)
            if not all(cell in cells for cell in CELLS):
                raise SystemExit(f"{run}: no one-way samples for {method}")
            treated = set(seeded_facts(own) or ())
            same = [
                s for s, key in zip(base, seeded_facts(base) or (), strict=True) if key in treated
            ]
            if method != "baseline" and base and len(same) < len(base):
                out.append((panel, "baseline, same facts", run, cells_of("baseline", same)))
            out.append((panel, method, run, cells))
    return out


def table(found: list) -> list[str]:
    head = "| model | method | facts | " + " | ".join(f"{g} {d}" for g, d in CELLS) + " |"
    lines = [head, "|---|---|---:|" + "---|" * len(CELLS)]
    for panel, method, _, cells in found:
        shown = " | ".join(with_interval(cells[c]) for c in CELLS)
        facts = sum(cells[group, "same"]["facts"] for group in ("p2d", "d2p"))
        lines.append(f"| {panel} | {method} | {facts} | {shown} |")
    return lines


def figure(found: list, path: Path) -> None:
    """One panel per panel name, compare's bars in each; one legend above the panels, where
    it covers no bar."""
    plt = pyplot()
    panels = list(dict.fromkeys(p for p, *_ in found))
    methods = [sum(p == panel for p, *_ in found) for panel in panels]
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(0.9 * sum(methods) + 1, 3.8),
        sharey=True,
        squeeze=False,
        width_ratios=methods,  # a method's bars as wide in every panel
    )
    for ax, panel in zip(axes[0], panels, strict=True):
        rows = [
            {**row, "method": method.replace(", ", ",\n")}
            for p, method, _, cells in found
            if p == panel
            for row in cells.values()
        ]
        one_way_bars(ax, rows)
        handles, labels = ax.get_legend_handles_labels()
        ax.get_legend().remove()
        ax.set_title(panel, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", default=RUNS, help="'PANEL=GLOB:METHOD,...'")
    args = parser.parse_args()
    found = collect(args.runs)
    figure(found, ROOT / FIGURE)
    sys.path.insert(0, str(Path(__file__).parent))
    from update_readme import replace_block

    runs = sorted({str(run.relative_to(ROOT)) for *_, run, _ in found})
    block = [
        f"![The reversal curse and its cures, tiny model and SmolLM2]({FIGURE})",
        "",
        *table(found),
        "",
        "From " + ", ".join(f"`{r}`" for r in runs) + " (`make readme-headline`).",
    ]
    replace_block("headline", "\n".join(block))
    print(f"README.md: headline block and {FIGURE} from {len(runs)} runs")


if __name__ == "__main__":
    main()
