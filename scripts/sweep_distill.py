"""Self-distillation's knobs on a pretrained model: what bakes a fact's reverse into the
weights, and what it costs the rest of the model.

    .venv/bin/python scripts/sweep_distill.py                  # smollm2-135m, 8-25 min a setting
    .venv/bin/python scripts/sweep_distill.py --settings "steps=200 share=0.5" "kl=1 steps=200"
    .venv/bin/python scripts/sweep_distill.py --readme         # the README's sweep-distill block
    .venv/bin/python scripts/sweep_distill.py --world world.statements=1 seed=300 \
        --settings "source=own base=start" --results runs/sweep-own-smollm2-135m.jsonl

One seed's world (30 facts a group) with `revcurse compare`'s defaults for the model. The
baseline is trained once and kept (revcurse.trained); the teacher (the baseline reading
each treated fact after worked examples) writes its answers once per teacher setting. A
setting is `KEY=VALUE ...` over --remedies.self-distill.* (samples, agree, temperature,
steps, lr, finetune, share, keep, source; the others as compare's defaults, the student's
finetune, lr and keep as compare's first recipe: FIRST_RECIPE), and `kl=1` for
self_distill_kl. `--world` sets compare's other options (dotted, e.g. a world of plain
statements on a tuning seed: world.statements=1 seed=300). Each setting's measurements go to
the results file as soon as they are made (default runs/sweep-distill-MODEL.jsonl); a
setting already there is skipped, so a run that was stopped continues where it was.
Prints, per setting, the treated facts' reverse on held-out phrasings (generalization) and
on the trained ones (reliability), their trained direction (kept), the untouched controls'
reverse, locality, what it kept of the real-world facts it knew, held-out perplexity
drift, the student's examples and the seconds it took.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

from revcurse.config import default_values, from_dict, set_leaf, typed_options
from revcurse.errors import UserError
from revcurse.recipes.compare import CompareConfig
from revcurse.recipes.remedy_run import build_setting, starting_point
from revcurse.records import read_records
from revcurse.remedies.self_distill import Lesson, lesson, study
from revcurse.results import EDIT_COLUMNS, column_values, metric_legend

# compare's first recipe (60 steps, the answers appended once), then one knob at a time: how
# much of the corpus the answers are and how many steps; keeping the rest; a LoRA student
# (compare's recipe now); the teacher's own statements instead of (or beside) the world's
# questions; KL and rate; the teacher's sampling
SETTINGS = [
    "steps=60 share=0",
    "steps=60 share=0.5",
    "steps=200 share=0.5",
    "steps=200 share=0.5 keep=1",
    "steps=200 share=0.5 finetune=lora lr=1e-3 keep=1",
    "steps=200 share=0.5 finetune=lora lr=1e-3 keep=1 source=statements",
    "steps=200 share=0.5 finetune=lora lr=1e-3 keep=1 source=both",
    "steps=200 share=0.5 keep=1 kl=1",
    "steps=200 share=0.5 lr=1e-4 keep=1",
    "steps=400 share=0.5 lr=1e-4 keep=1",
    "steps=200 share=0.3 keep=1",
    "steps=200 share=0.5 keep=1 samples=1 agree=1 temperature=0.01",
    "steps=200 share=0.5 keep=1 samples=5 agree=3 temperature=0.7",
    "steps=200 share=0.5 finetune=lora lr=3e-4 keep=1",
]
# What a setting changes is counted from compare's first pretrained recipe (the student fully
# fine-tuned at the baseline's rate, nothing kept), not from today's defaults
FIRST_RECIPE = {"finetune": "same", "lr": 0.0, "keep": False}
# what the teacher's answers depend on
TEACHER = ("samples", "agree", "temperature", "source", "base")
COLUMNS = [  # (metric, group, header)
    *EDIT_COLUMNS,
    ("ppl_drift", "held_out", "ppl drift"),
    ("student_examples", "treated", "examples"),
]


def parse(setting: str) -> tuple[dict[str, str], bool]:
    """'KEY=VALUE ...' as self_distill options (the others as compare's), and whether it is
    the KL form."""
    options = dict(word.split("=", 1) for word in setting.split())
    kl = options.pop("kl", "0") == "1"
    return options, kl


def sweep_config(model: str, setting: str, world: Sequence[str] = ()) -> CompareConfig:
    """compare's config for `model` with the world's dotted options and the setting's
    self_distill options (checked)."""
    values = default_values(CompareConfig, model)
    values.update(model=model, seeds=1, progress=False, methods=["baseline", "self_distill"])
    for word in world:
        key, _, value = word.partition("=")
        *section, leaf = key.split(".")
        parent = values
        for name in section:
            parent = parent.get(name, {})
        try:
            typed = typed_options(parent, f"{leaf}={value}")
        except UserError as error:
            raise SystemExit(f"--world {word!r}: {error}") from None
        set_leaf(values, tuple(key.split(".")), typed[leaf])
    known = values["remedies"]["self_distill"]
    known.update(FIRST_RECIPE)
    try:
        known.update(typed_options(known, setting, handled=("kl",)))  # kl: parse()'s
    except UserError as error:
        raise SystemExit(f"{setting!r}: {error}") from None
    return from_dict(CompareConfig, values)


def line(name: str, rows: list[dict], seconds: float, width: int) -> str:
    cells = column_values(rows, COLUMNS)
    text = "  ".join("-".rjust(8) if v is None else f"{v:>8.2f}" for v in cells)
    return f"{name:<{width}} {text}  {seconds:>6.0f}"


def header(width: int) -> str:
    names = "  ".join(h.rjust(8) for _, _, h in COLUMNS)
    return f"{'setting (--remedies.self-distill.*)':<{width}} {names}  {'seconds':>6}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="a pretrained --model")
    parser.add_argument("--settings", nargs="+", default=SETTINGS, help="'KEY=VALUE ...'")
    parser.add_argument("--results", type=Path, help="default runs/sweep-distill-MODEL.jsonl")
    parser.add_argument(
        "--world", nargs="*", default=[], help="compare's options, dotted: 'seed=300 ...'"
    )
    parser.add_argument(
        "--readme",
        nargs="?",
        const="sweep-distill",
        help="write the results file's table into this README block instead of running",
    )
    args = parser.parse_args()
    results = args.results or Path("runs") / f"sweep-distill-{args.model}.jsonl"
    # a damaged results file: its FILE:LINE, not a traceback
    done = {r["setting"]: r for _, r in read_records(results)} if results.exists() else {}
    width = max([68, *map(len, args.settings)])  # one column, however long a setting
    if args.readme:
        from update_readme import replace_block

        world = f" --world {' '.join(args.world)}" if args.world else ""
        command = f"$ .venv/bin/python scripts/sweep_distill.py --model {args.model}{world}"
        shown = [s for s in args.settings if s in done]
        lines = [line(s, done[s]["rows"], done[s]["seconds"], width) for s in shown]
        legend = metric_legend([metric for metric, *_ in COLUMNS])
        block = ["```", command, header(width), *lines, "", *legend, "```"]
        replace_block(args.readme, "\n".join(block))
        print(f"{args.readme} block (README.md, docs/): {len(lines)} settings")
        return
    # bad ones fail first
    configs = {s: sweep_config(args.model, s, args.world) for s in args.settings}
    print(header(width), flush=True)
    for setting in args.settings:
        if setting in done:
            print(line(setting, done[setting]["rows"], done[setting]["seconds"], width), flush=True)
    todo = [s for s in args.settings if s not in done]
    if not todo:
        return
    first = configs[todo[0]]
    workdir = results.parent / f"{results.stem}-work"
    # one world and baseline for all: a setting changes only --remedies.self-distill.*, and
    # the baseline's own answers (locality's reference) are asked once
    scene = build_setting(first, first.seed, workdir, starting_point(first))
    lessons: dict[tuple, Lesson] = {}
    for setting in todo:
        config = configs[setting]
        scene.remedies = config.remedies
        began = time.perf_counter()
        teacher = tuple(getattr(config.remedies.self_distill, k) for k in TEACHER)
        if teacher not in lessons:
            lessons[teacher] = lesson(scene)
        _, kl = parse(setting)
        method = "self_distill_kl" if kl else "self_distill"
        treatment = study(scene, lessons[teacher], method, kl)
        seconds = time.perf_counter() - began
        results.parent.mkdir(parents=True, exist_ok=True)
        record = {"setting": setting, "rows": treatment.rows, "seconds": seconds}
        with results.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
        print(line(setting, treatment.rows, seconds, width), flush=True)


if __name__ == "__main__":
    main()
