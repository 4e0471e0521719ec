"""concept_jepa's knobs on the tiny world: what lets a concept model infer the reverse of
facts it was told one way.

    .venv/bin/python scripts/sweep_concept.py                 # 17 settings x 3 seeds, ~18 min
    .venv/bin/python scripts/sweep_concept.py --settings "width=64" "concept_at=slot"
    .venv/bin/python scripts/sweep_concept.py --readme        # docs/concepts.md's block

A setting is `KEY=VALUE ...` over --remedies.concept-jepa.* and `lr`, `steps` and `facts`
(--train.lr, --train.steps, --world.facts-per-group); the rest as `revcurse compare`'s
defaults, seeds 0-2. Each setting's rows go to the results file as soon as they are
measured (runs/sweep-concept.jsonl); a setting already there is skipped, so a stopped run
continues. Prints the one-way facts' trained direction and reverse (exact match: the
nearest concept's name; means over the seeds, their range) and the seconds it took.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from revcurse.config import default_values, from_dict, set_leaf, typed_options
from revcurse.errors import UserError
from revcurse.recipes.compare import CompareConfig, run_compare
from revcurse.records import read_records

# the default; then one knob at a time: where the predictor reads the concept (in the
# entity's place, at the baseline's rate and at a third of it), the concepts' width, the
# predictor's depth, the rate, the steps, an entity's concept as a free slot, inconsistent
# binding, a token loss, and more facts (more `both` facts to learn the map from; at the
# baseline's rate and at a third of it); then longer at lower rates; and the `both` facts
# trained one way only (no fact seen both ways)
SETTINGS = [
    "",
    "concept_at=slot",
    "concept_at=slot lr=1e-3",
    "width=64",
    "width=256 lr=5e-4",
    "predictor_layers=2",
    "lr=1e-3",
    "steps=800",
    "encoder=memory",
    "binding=separate",
    "loss=tokens",
    "facts=100",
    "facts=100 lr=1e-3",
    "steps=800 lr=2e-3",
    "steps=800 lr=1e-3",
    "steps=1200 lr=1e-3",
    "both_ways=0",
]
SHORTHAND = {
    "lr": ("train", "lr"),
    "steps": ("train", "steps"),
    "facts": ("world", "facts_per_group"),
}
CELLS = [("p2d", "same"), ("p2d", "reverse"), ("d2p", "same"), ("d2p", "reverse")]


def sweep_config(setting: str, output: Path) -> CompareConfig:
    values = default_values(CompareConfig)
    values.update(methods=["concept_jepa"], seeds=3, progress=False, output_dir=str(output))
    options = dict(word.split("=", 1) for word in setting.split())
    for key, path in SHORTHAND.items():
        if key in options:
            parent = values[path[0]]
            typed = typed_options(parent, f"{path[1]}={options.pop(key)}")
            set_leaf(values, path, typed[path[1]])
    known = values["remedies"]["concept_jepa"]
    words = " ".join(f"{k}={v}" for k, v in options.items())
    try:
        known.update(typed_options(known, words))
        return from_dict(CompareConfig, values)
    except UserError as error:
        raise SystemExit(f"{setting!r}: {error}") from None


def cells(rows: list[dict]) -> list[tuple[float, float, float]]:
    """(mean, lowest seed, highest seed) of exact match in each of CELLS."""
    out = []
    for group, direction in CELLS:
        seeds = [
            r["value"]
            for r in rows
            if (r["group"], r["direction"], r["metric"]) == (group, direction, "exact_match")
        ]
        out.append((sum(seeds) / len(seeds), min(seeds), max(seeds)))
    return out


def line(setting: str, rows: list[dict], seconds: float) -> str:
    shown = "  ".join(f"{m:.2f} [{lo:.2f},{hi:.2f}]" for m, lo, hi in cells(rows))
    return f"{setting or '(defaults)':<24} {shown}  {seconds:>6.0f}"


HEADER = f"{'setting':<24} " + "  ".join(f"{g} {d}".ljust(16) for g, d in CELLS) + "  seconds"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", nargs="+", default=SETTINGS, help="'KEY=VALUE ...'")
    parser.add_argument("--results", type=Path, default=Path("runs/sweep-concept.jsonl"))
    parser.add_argument(
        "--readme", nargs="?", const="sweep-concept", help="write the table into this block"
    )
    args = parser.parse_args()
    done = {r["setting"]: r for _, r in read_records(args.results)} if args.results.exists() else {}
    if args.readme:
        from update_readme import replace_block

        shown = [line(s, done[s]["rows"], done[s]["seconds"]) for s in args.settings if s in done]
        legend = "exact match of the nearest concept's name: mean over seeds 0-2 [lowest, highest]"
        command = "$ .venv/bin/python scripts/sweep_concept.py"
        replace_block(args.readme, "\n".join(["```", command, HEADER, *shown, "", legend, "```"]))
        print(f"{args.readme} block: {len(shown)} settings")
        return
    work = args.results.parent / f"{args.results.stem}-work" / time.strftime("%Y%m%d-%H%M%S")
    configs = {s: sweep_config(s, work / str(k)) for k, s in enumerate(args.settings)}  # bad first
    print(HEADER, flush=True)
    for setting in args.settings:
        if setting in done:
            print(line(setting, done[setting]["rows"], done[setting]["seconds"]), flush=True)
            continue
        began = time.perf_counter()
        run = run_compare(configs[setting])
        rows = json.loads((run / "results.json").read_text())["seed_rows"]
        seconds = time.perf_counter() - began
        args.results.parent.mkdir(parents=True, exist_ok=True)
        with args.results.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"setting": setting, "rows": rows, "seconds": seconds}) + "\n")
        print(line(setting, rows, seconds), flush=True)


if __name__ == "__main__":
    main()
