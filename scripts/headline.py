"""The README's headline: the thesis end to end, tiny model and SmolLM2 side by side.

    .venv/bin/python scripts/headline.py      # the newest runs of each kind (make readme-headline)
    .venv/bin/python scripts/headline.py --runs "tiny=runs/a:baseline,in_context" ...

For each panel, methods from finished `revcurse compare` runs: the one-way facts' exact match
in the direction they were trained (same) and the other (reverse), each group with its 95%
interval, as a figure (docs/headline.png) and a table, both put into the README's
`headline` block. A run is named by a glob (the newest folder that matches); a method is
taken from the first run of its panel that has it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from revcurse.report import one_way_bars, with_interval
from revcurse.results import pyplot

ROOT = Path(__file__).resolve().parents[1]
FIGURE = "docs/headline.png"
# (panel, run folder glob, methods): the tiny world's compare (3 seeds; concept_memory from
# make readme-concept, mlm_u at its own budget from make readme-compare), SmolLM2 at 30 facts
# a group (in context; self-distillation) and at 10 (the Hebbian edit, seed 0's world),
# Gemma-3-270M at 30 (make readme-gemma)
RUNS = [
    "tiny model (3 seeds), 30 facts a group=runs/headline-tiny-*:"
    "baseline,in_context,bidirectional,self_distill,hebbian_memit",
    "tiny model (3 seeds), 30 facts a group=runs/readme-concept-*/compare*:concept_memory",
    "tiny model (3 seeds), 30 facts a group=runs/readme-compare-*-mlm-u:mlm_u",
    "SmolLM2-135M, 30 facts a group=runs/headline-smollm2-context*:baseline,in_context",
    "SmolLM2-135M, 30 facts a group=runs/readme-smollm2-distill-*:self_distill",
    "SmolLM2-135M, 10 facts a group=runs/readme-smollm2-edits-*:hebbian_memit",
    "Gemma-3-270M, 30 facts a group=runs/readme-gemma-*:baseline,in_context,self_distill",
]
CELLS = [("p2d", "same"), ("p2d", "reverse"), ("d2p", "same"), ("d2p", "reverse")]


def newest(pattern: str) -> Path:
    found = [p for p in ROOT.glob(pattern) if (p / "results.json").exists()]
    if not found:
        raise SystemExit(f"{pattern}: no finished run (make readme-headline runs them)")
    return max(found, key=lambda p: p.stat().st_mtime)


def collect(specs: list[str]) -> list[tuple[str, str, Path, dict[tuple[str, str], dict]]]:
    """(panel, method, run, {(group, direction): exact-match row}) in the specs' order."""
    out = []
    for spec in specs:
        panel, rest = spec.split("=", 1)
        pattern, methods = rest.rsplit(":", 1)
        run = newest(pattern)
        rows = json.loads((run / "results.json").read_text())["rows"]
        for method in methods.split(","):
            cells = {
                (r["group"], r["direction"]): r
                for r in rows
                if r["method"] == method and r["metric"] == "exact_match"
            }
            if not all(cell in cells for cell in CELLS):
                raise SystemExit(f"{run}: no one-way exact match rows for {method}")
            out.append((panel, method, run, cells))
    return out


def table(found: list) -> list[str]:
    head = "| model | method | " + " | ".join(f"{g} {d}" for g, d in CELLS) + " |"
    lines = [head, "|---|---|" + "---|" * len(CELLS)]
    for panel, method, _, cells in found:
        shown = " | ".join(with_interval(cells[c]) for c in CELLS)
        lines.append(f"| {panel} | {method} | {shown} |")
    return lines


def figure(found: list, path: Path) -> None:
    """One panel per model (the panel name up to its comma), compare's bars in each; a
    method's label says how many facts a group its run had."""
    plt = pyplot()
    panels = list(dict.fromkeys(p.split(",")[0] for p, *_ in found))
    methods = [sum(p.split(",")[0] == panel for p, *_ in found) for panel in panels]
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
            {**row, "method": f"{method}\n{p.split(', ')[1].replace(' facts a group', ' a group')}"}
            for p, method, _, cells in found
            if p.split(",")[0] == panel
            for row in cells.values()
        ]
        one_way_bars(ax, rows)
        ax.set_title(panel, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
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
