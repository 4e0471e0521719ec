"""Every remedy on the same world, with the same training budget, over several seeds.

    revcurse compare --seeds 3 --output-dir runs/compare

For each seed: a fresh controlled world (facts plus reading documents), one shared
tokenizer, and each method from revcurse.remedies: the trained ones start from the same
weights (the tiny reader, or a pretrained model) and train for the same steps on the same
base corpus plus their own additions; the prompting ones and the edits reuse the baseline
model. All are scored by the same evaluator on the same held-out questions. Seeds, and
the methods that train their own model, run side by side in worker processes (one per
core by default: a tiny model uses two threads poorly; revcurse.recipes.compare_units).
The run directory gets the per-seed and aggregated rows (results.json), every answer
(samples.jsonl), the table, a bar chart (chart.png) and report.md with each method's
training steps, time and estimated FLOPs beside the accuracy they bought, also plotted
(efficiency.png; revcurse.report). `--budget converged` trains each method until its
trained direction stops improving instead of for the same steps (revcurse.converge.Plateau).

    revcurse compare --resume runs/.compare-20250101-120000.partial-x1y2z3   # after a stop

The run is assembled in a partial folder (printed at the start); each method's run on a
seed is saved there as it finishes (units/). A run stopped by Ctrl-C after one of them,
killed, or out of memory keeps that folder; `--resume` runs only what is missing, with the
saved config, and ends with the results of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

from rich.console import Console

from revcurse.config import ConfigError, check, to_dict
from revcurse.errors import UserError
from revcurse.facts import GROUPS
from revcurse.recipes.compare_units import MethodRun, run_units, work_units, worker_count
from revcurse.recipes.remedy_run import RemedyRun, build_setting, starting_point, world_of
from revcurse.recipes.run import (
    finished,
    opened_run,
    peak_memory,
    recipe_app,
    resume,
    resumed_config,
    with_output_dir,
)
from revcurse.records import write_records
from revcurse.remedies import REMEDIES, parse_methods
from revcurse.report import chart, efficiency_chart, report, summarize_costs
from revcurse.results import METRICS, measurements_table, render, results_table, write_results
from revcurse.sources import recorded
from revcurse.stats import aggregate


@dataclass
class CompareConfig(RemedyRun):
    PRETRAINED: ClassVar[dict[str, object]] = {**RemedyRun.PRETRAINED, "workers": 1}
    output_dir: Path | None = None
    """run directory; default runs/compare-<timestamp>"""
    seeds: int = 3
    """independent worlds and initialisations; CIs are across seeds"""
    seed: int = 0
    """the first seed; the others follow it"""
    methods: list[str] = field(default_factory=lambda: ["thesis"])
    """methods (comma-separated); thesis: baseline, in_context, knowledge_base,
    bidirectional, self_distill, hebbian_delta; all: every one"""
    workers: int = 0
    """processes running seeds and methods side by side; 0: one per core (tiny)"""
    keep_models: list[str] = field(default_factory=list)
    """methods whose trained models are saved in the run (models/seed<S>-<method>/), for
    revcurse analyze RUN"""
    resume: Path | None = None
    """a stopped compare's partial run folder: run what is missing"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.seeds >= 1, "seeds", f"must be at least 1, got {self.seeds}")
        check(
            not (self.statements and not self.templates),
            "statements",
            "compare measures on test templates: give --templates too (test ones will do), "
            "or teach them with revcurse teach",
        )
        check(self.workers >= 0, "workers", f"must be 0 (auto) or more, got {self.workers}")
        try:
            methods = parse_methods(self.methods, pretrained=self.model != "tiny")
        except ValueError as error:  # its message names --methods already
            raise ConfigError("methods", str(error).removeprefix("--methods: ")) from None
        strays = [m for m in self.keep_models if m not in methods]
        check(not strays, "keep_models", f"{', '.join(strays)}: not among --methods")
        kept = [m for m in self.keep_models if not REMEDIES[m].keepable]
        check(not kept, "keep_models", f"{', '.join(kept)}: keeps no model analyze can read")


def run_compare(config: CompareConfig, console: Console | None = None) -> Path:
    console = console or Console(stderr=True)
    start = time.perf_counter()
    partial = config.resume
    runs = saved_runs(partial) if partial else {}
    if partial:
        config = resumed_config(config, partial)
    methods = parse_methods(config.methods, pretrained=config.model != "tiny")
    seeds = range(config.seed, config.seed + config.seeds)
    units = [
        (seed, [m for m in ms if (seed, m) not in runs]) for seed, ms in work_units(methods, seeds)
    ]
    units = [(seed, ms) for seed, ms in units if ms]
    workers = worker_count(config.workers, config.model, len(units))
    if not partial:
        config = replace(config, world=recorded(config.world, world_of(config, config.seed)))
        config = with_output_dir(config, "compare")  # recorded in config.yaml: --resume goes there
    initial = starting_point(config, console)
    # Ctrl-C keeps the partial folder once a method's run is saved in it: something to resume
    with opened_run(config, resume=partial, resumable=lambda: bool(runs)) as folder:
        for seed in seeds:
            setting = build_setting(config, seed, folder, initial)
            write_records(folder / "world" / f"facts-seed{seed}.jsonl", setting.facts)
            write_records(folder / "world" / "templates.jsonl", setting.templates)
            console.print(
                f"[bold]seed {seed}[/]: {len(setting.facts)} facts, "
                f"{len(setting.train_examples)} fact sentences + {len(setting.reading)} reading "
                f"documents, {len(setting.test_examples)} questions"
            )
        console.print(  # one unwrapped line: the path is there to copy
            f"partial run: {folder} (if stopped: {resume('compare', folder)})"
            + (f"; {len(runs)} method runs done before" if runs else ""),
            soft_wrap=True,
            markup=False,
        )
        if workers > 1:
            console.print(f"{len(units)} units of work on {workers} worker processes")
        # closed however the block ends: Ctrl-C while a summary prints ends the workers too
        with closing(
            run_units(config, units, folder, initial, workers, config.keep_models)
        ) as method_runs:
            for run in method_runs:
                save_run(folder, run)
                runs[run.seed, run.method] = run
                console.print(f"  {run.summary}")
        ordered = [runs[seed, method] for seed in seeds for method in methods]
        table = write_outputs(
            folder,
            config,
            [row for run in ordered for row in run.rows],
            [sample for run in ordered for sample in run.samples],
            [run.cost for run in ordered],
            time.perf_counter() - start,
        )
        shutil.rmtree(folder / UNITS, ignore_errors=True)  # the run is complete
    return finished(console, table, config, f"{time.perf_counter() - start:.0f} s", "report.md")


UNITS = "units"  # a partial run's finished method runs, one file each


def save_run(folder: Path, run: MethodRun) -> None:
    """One method's run on one seed, kept whole or not at all (a kill mid-write leaves no
    file that --resume would read)."""
    path = folder / UNITS / f"seed{run.seed}-{run.method}.json"
    path.parent.mkdir(exist_ok=True)
    scratch = path.with_suffix(".json.partial")
    scratch.write_text(json.dumps(dataclasses.asdict(run)), encoding="utf-8")
    os.replace(scratch, path)


def saved_runs(partial: Path) -> dict[tuple[int, str], MethodRun]:
    """The method runs a stopped compare finished, by (seed, method)."""
    if not (partial / "config.yaml").is_file():
        raise UserError(f"{partial}: not a partial compare run (no config.yaml)")
    runs = {}
    for path in sorted((partial / UNITS).glob("*.json")):
        run = MethodRun(**json.loads(path.read_text(encoding="utf-8")))
        runs[run.seed, run.method] = run
    return runs


def setup_in_words(config: CompareConfig) -> str:
    """What was compared, in words (report.md's first paragraph)."""
    start = "the tiny reader" if config.model == "tiny" else config.model
    world = world_of(config, config.seed)
    counts = ", ".join(f"{sum(f.group == g for f in world.facts)} {g}" for g in GROUPS)
    if config.budget == "converged":
        c = config.converge
        steps = (
            f"until its trained direction's exact match gains less than {c.tolerance} in "
            f"{c.patience} checks {c.every} steps apart (at least {config.train.steps} steps "
            f"unless perfect sooner, at most {c.max_steps})"
        )
    else:
        steps = f"{config.train.steps} steps"
    return (
        f"{config.seeds} seed(s) from {config.seed}; {world.source}: {counts} facts; "
        f"{config.remedies.reading_documents} reading documents; every "
        f"trained method: {steps} of {config.train.batch_size} sequences "
        f"({config.train.decay} decay) from {start}."
    )


def write_outputs(
    folder: Path,
    config: CompareConfig,
    seed_rows: list[dict],
    samples: list[dict],
    costs: list[dict],
    seconds: float,
) -> str:
    """Aggregate the per-seed rows and write the table, chart, report and results (with the
    run's wall time so far, `seconds`); returns the table as printed."""
    rows = aggregate([{k: v for k, v in r.items() if k != "seed"} for r in seed_rows])
    main = [r for r in rows if r["metric"] in METRICS]
    extra = [r for r in rows if r["metric"] not in METRICS]
    table = render(results_table(main, f"revcurse compare, {config.seeds} seed(s)"))
    if extra:
        table += render(measurements_table(extra, "remedy-specific measurements"))
    chart(rows, folder / "chart.png")
    spent = summarize_costs(costs, rows)
    efficiency_chart(spent, folder / "efficiency.png")
    (folder / "report.md").write_text(report(setup_in_words(config), rows, spent), encoding="utf-8")
    write_results(
        folder,
        rows,
        table,
        samples,
        seed_rows=seed_rows,
        costs=costs,
        config=to_dict(config),
        peak_memory=peak_memory(),
        wall_seconds=seconds,
    )
    return table


app = recipe_app(
    "compare",
    CompareConfig,
    run_compare,
    (
        "Baseline and every remedy on the same world and training budget, over several seeds: "
        "one table, a chart and report.md."
    ),
)
