"""Every remedy on the same world, with the same training budget, over several seeds.

    revcurse compare --seeds 3 --output-dir runs/compare

For each seed: a fresh controlled world (facts plus reading documents), one shared
tokenizer, and each method from revcurse.remedies: the trained ones start from the same
weights (the tiny reader, or a pretrained model) and train for the same steps on the same
base corpus plus their own additions; the prompting ones and the edits reuse the baseline
model. All are scored by the same evaluator on the same held-out questions. Seeds, and
the methods that train their own model, run side by side in worker processes (one per
core by default: a tiny model uses two threads poorly). The run directory gets the
per-seed and aggregated rows (results.json), every answer (samples.jsonl), the table, a
bar chart (chart.png) and report.md with training time and estimated training FLOPs.
"""

from __future__ import annotations

import multiprocessing
import signal
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import matplotlib
import torch
from rich.console import Console
from scipy import stats
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from revcurse.config import to_dict, to_yaml
from revcurse.evaluate import EvalConfig, evaluate
from revcurse.facts import GROUPS, expand, write_records
from revcurse.model import TinyModelConfig
from revcurse.pretrained import load_pretrained
from revcurse.reader import ReaderConfig, load_or_train_reader
from revcurse.reading import reading_documents
from revcurse.remedies import OWN_MODEL, REMEDIES, parse_methods
from revcurse.remedies.reverse_training import SEGMENT_MARKER
from revcurse.remedies.setting import RemedyConfig, Setting
from revcurse.results import (
    CONFIDENCE,
    METRICS,
    default_run_dir,
    render,
    results_table,
    run_directory,
    versions,
    write_json,
    write_jsonl,
)
from revcurse.tokenizer import build_word_tokenizer
from revcurse.train import TrainConfig
from revcurse.world import TEMPLATES, WorldConfig, generate_facts, vocabulary

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt


@dataclass
class CompareConfig:
    output_dir: Path | None = None  # run directory; default runs/compare-<timestamp>
    seeds: int = 3  # independent worlds and initialisations; CIs are across seeds
    seed: int = 0  # the first seed; the others follow it
    methods: str = "all"  # comma-separated methods, or all (see revcurse.remedies)
    progress: bool = True  # progress bars on stderr
    workers: int = 0  # processes running seeds and methods side by side; 0: one per core (tiny)
    world: WorldConfig = field(default_factory=lambda: WorldConfig(facts_per_group=30))
    model: str = "tiny"  # tiny (from scratch) or a pretrained model, as in revcurse demo
    chat_template: bool = False  # instruct models: pose prompts in the tokenizer's chat template
    tiny: TinyModelConfig = field(default_factory=lambda: TinyModelConfig(max_len=128))
    # From the reader: ~16 passes over the fact sentences. The cosine decay lets 400 steps of
    # 32 learn what 1000 of 64 at a constant rate did (bidirectional 1.00 either way)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(steps=400, batch_size=32, decay="cosine")
    )
    eval: EvalConfig = field(default_factory=EvalConfig)
    remedies: RemedyConfig = field(default_factory=RemedyConfig)
    reader: ReaderConfig = field(default_factory=ReaderConfig)  # tiny: learns to read first


def starting_point(
    config: CompareConfig, console: Console | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The weights every causal remedy starts from: the pretrained model, or for `tiny` the
    cached reader (revcurse.reader) with the tokenizer of the world's whole vocabulary."""
    if config.model != "tiny":
        return load_pretrained(config.model)
    tokenizer = build_word_tokenizer([*vocabulary(), SEGMENT_MARKER])
    reader = load_or_train_reader(config.reader, config.tiny, tokenizer, config.progress, console)
    return reader, tokenizer


def build_setting(
    config: CompareConfig,
    seed: int,
    workdir: Path,
    start: tuple[PreTrainedModel, PreTrainedTokenizerBase],
) -> Setting:
    """One seed's world. A tiny model keeps reading its reading documents while it learns the
    facts; a pretrained one only uses them as generic text (edit statistics, perplexity)."""
    facts = generate_facts(config.world, seed)
    train, test = expand(facts, TEMPLATES, config.world.teach_test_phrasings)
    reading = reading_documents(
        config.remedies.reading_documents, config.remedies.distractors, TEMPLATES, facts, seed
    )
    model, tokenizer = start
    return Setting(
        facts=facts,
        templates=list(TEMPLATES),
        train=train,
        test=test,
        reading=reading,
        tokenizer=tokenizer,
        model=config.tiny,
        budget=config.train,
        remedies=config.remedies,
        seed=seed,
        workdir=workdir,
        eval_batch_size=config.eval.batch_size,
        progress=config.progress,
        start=model,
        pretrained=config.model != "tiny",
        chat=config.chat_template,
    )


PROPORTIONS = (
    "exact_match",
    "rank_acc",
    "reliability",
    "generalization",
    "control_exact_match",
    "locality",
    "teacher_accuracy",
    "teacher_agreed",
)


def is_proportion(metric: str) -> bool:
    return metric in PROPORTIONS or metric.startswith("retrieval_recall")


def aggregate(rows: list[dict]) -> list[dict]:
    """One row per method, group, direction and metric: the mean over seeds with a t interval
    across seeds (with one seed, that run's own interval); p-values combined by Fisher."""
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
            "ci_low": None,
            "ci_high": None,
        }
        if metric == "p_value" and values:
            row["value"] = float(stats.combine_pvalues(values, method="fisher").pvalue)
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


def chart(rows: list[dict], path: Path) -> None:
    """Exact match per method on the one-way facts, same vs reverse, with 95% CIs."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cells = [(g, d) for g in ("p2d", "d2p") for d in ("same", "reverse")]
    lookup = {
        (r["method"], r["group"], r["direction"]): r for r in rows if r["metric"] == "exact_match"
    }
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


@dataclass
class MethodRun:
    """One method on one seed: its result rows, answers, cost and a one-line summary."""

    method: str
    seed: int
    rows: list[dict]
    samples: list[dict]
    cost: dict
    summary: str


def run_methods(
    setting: Setting, methods: Sequence[str], config: EvalConfig
) -> Iterator[MethodRun]:
    """Apply and score each method on one seed's setting, in order (later ones may reuse the
    baseline model an earlier one trained), each run as soon as it is done."""
    for method in methods:
        start = time.perf_counter()
        treatment = REMEDIES[method](setting)
        test = setting.ask(treatment.test or setting.test)
        rows, samples = evaluate(treatment.lm, test, config, method, setting.seed)
        seconds = time.perf_counter() - start
        cost = {
            "method": method,
            "seed": setting.seed,
            "train_seconds": treatment.cost.seconds,
            "train_tokens": treatment.cost.tokens,
            "train_flops": treatment.cost.flops,
            "final_loss": treatment.cost.losses[-1],
            "wall_seconds": seconds,
        }
        one_way = [r for r in rows if r["metric"] == "exact_match" and r["group"] != "both"]
        summary = ", ".join(f"{r['group']} {r['direction']} {r['value']:.2f}" for r in one_way)
        yield MethodRun(
            method,
            setting.seed,
            [{**r, "seed": setting.seed} for r in [*rows, *treatment.rows]],
            [{**s, "seed": setting.seed} for s in samples],
            cost,
            f"seed {setting.seed} {method:<16} {summary}  ({seconds:.0f} s)",
        )


def work_units(methods: Sequence[str], seeds: Sequence[int]) -> list[tuple[int, list[str]]]:
    """What can run side by side: per seed, the methods that share its baseline model
    together, and each method that trains its own model from the start alone; largest first."""
    shared = [m for m in methods if m not in OWN_MODEL]
    units = [(seed, shared) for seed in seeds if shared]
    return units + [(seed, [m]) for m in methods if m in OWN_MODEL for seed in seeds]


def worker_count(config: CompareConfig, units: int) -> int:
    """--workers, or by default one process per core (torch's threads) for the tiny model;
    one for a pretrained model, whose every process would hold its own copy."""
    if config.workers < 0:
        raise ValueError(f"--workers must be 0 (auto) or more, got {config.workers}")
    wanted = config.workers or (torch.get_num_threads() if config.model == "tiny" else 1)
    return max(1, min(wanted, units))


_worker_start: tuple[PreTrainedModel, PreTrainedTokenizerBase] | None = None


def _start_worker(start: tuple[PreTrainedModel, PreTrainedTokenizerBase], threads: int) -> None:
    global _worker_start
    torch.set_num_threads(threads)  # the cores are shared out among the workers
    _worker_start = start


def _run_in_worker(
    config: CompareConfig, seed: int, methods: list[str], workdir: Path
) -> list[MethodRun]:
    """One unit of work in a worker process, whose starting point came with _start_worker."""
    assert _worker_start is not None, "a worker process starts with _start_worker"
    setting = build_setting(config, seed, workdir, _worker_start)
    return list(run_methods(setting, methods, config.eval))


@contextmanager
def children_ignore_ctrl_c() -> Iterator[None]:
    """Processes started in this block ignore Ctrl-C (an ignored signal stays ignored across
    exec), so it stops only this process, which ends them: no half-imported worker prints a
    traceback. A no-op outside the main thread, where signals cannot be set."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_units(
    config: CompareConfig,
    units: list[tuple[int, list[str]]],
    workdir: Path,
    start: tuple[PreTrainedModel, PreTrainedTokenizerBase],
    workers: int,
) -> Iterator[MethodRun]:
    """Every method's run: in this process, each as it is done, or spread over `workers`
    processes that each get an equal share of the threads (small models use many threads
    poorly), a unit's runs as the unit is done."""
    if workers == 1:
        for seed, methods in units:
            setting = build_setting(config, seed, workdir, start)
            yield from run_methods(setting, methods, config.eval)
        return
    threads = max(1, torch.get_num_threads() // workers)
    quiet = replace(config, progress=False)  # one bar here instead of one per worker
    spawn = multiprocessing.get_context("spawn")  # fork is unsafe once torch has threads
    others = set(multiprocessing.active_children())
    with ProcessPoolExecutor(workers, spawn, _start_worker, (start, threads)) as pool:
        with children_ignore_ctrl_c():  # the workers start as the units are submitted
            futures = [pool.submit(_run_in_worker, quiet, *unit, workdir) for unit in units]
        pool_processes = set(multiprocessing.active_children()) - others
        bar = tqdm(total=len(futures), desc="compare", unit="unit", disable=not config.progress)
        try:
            for future in as_completed(futures):
                bar.update()
                yield from future.result()
        except BaseException:  # an error, or Ctrl-C here: the other units stop now
            for process in pool_processes:
                process.terminate()
            raise
        finally:
            bar.close()


def run_compare(config: CompareConfig, console: Console | None = None) -> Path:
    console = console or Console(stderr=True)
    methods = parse_methods(config.methods)
    if config.seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {config.seeds}")
    output_dir = config.output_dir or default_run_dir("compare")
    if config.model != "tiny" and config.methods.strip() == "all":
        methods.remove("mlm_u")  # a masked model trained from scratch: tiny only
    seeds = range(config.seed, config.seed + config.seeds)
    units = work_units(methods, seeds)
    workers = worker_count(config, len(units))
    initial = starting_point(config, console)
    runs: dict[tuple[int, str], MethodRun] = {}
    with run_directory(output_dir) as scratch:
        (scratch / "config.yaml").write_text(to_yaml(config), encoding="utf-8")
        for seed in seeds:
            setting = build_setting(config, seed, scratch, initial)
            write_records(scratch / "world" / f"facts-seed{seed}.jsonl", setting.facts)
            console.print(
                f"[bold]seed {seed}[/]: {len(setting.facts)} facts, {len(setting.train)} fact "
                f"sentences + {len(setting.reading)} reading documents, "
                f"{len(setting.test)} questions"
            )
        if workers > 1:
            console.print(f"{len(units)} units of work on {workers} worker processes")
        for run in run_units(config, units, scratch, initial, workers):
            runs[run.seed, run.method] = run
            console.print(f"  {run.summary}")
        ordered = [runs[seed, method] for seed in seeds for method in methods]
        table = write_outputs(
            scratch,
            config,
            [row for run in ordered for row in run.rows],
            [sample for run in ordered for sample in run.samples],
            [run.cost for run in ordered],
        )
    print(table, end="")
    console.print(f"results: {output_dir}/report.md")
    return output_dir


def write_outputs(
    folder: Path,
    config: CompareConfig,
    seed_rows: list[dict],
    samples: list[dict],
    costs: list[dict],
) -> str:
    """Aggregate the per-seed rows and write the table, chart, report and results; returns
    the table as printed."""
    rows = aggregate([{k: v for k, v in r.items() if k != "seed"} for r in seed_rows])
    main = [r for r in rows if r["metric"] in METRICS]
    extra = [r for r in rows if r["metric"] not in METRICS]
    table = render(results_table(main, f"revcurse compare, {config.seeds} seed(s)"))
    if extra:
        names = tuple(dict.fromkeys(r["metric"] for r in extra))
        table += render(results_table(extra, "remedy-specific measurements", names), width=200)
    (folder / "table.txt").write_text(table, encoding="utf-8")
    chart(rows, folder / "chart.png")
    (folder / "report.md").write_text(
        report(config, rows, summarize_costs(costs)), encoding="utf-8"
    )
    write_jsonl(folder / "samples.jsonl", samples)
    results = {"rows": rows, "seed_rows": seed_rows, "costs": costs, "config": to_dict(config)}
    write_json(folder / "results.json", {**results, "versions": versions()})
    return table


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


def report(config: CompareConfig, rows: list[dict], costs: list[dict]) -> str:
    start = "the tiny reader" if config.model == "tiny" else config.model
    main = [r for r in rows if r["metric"] in METRICS]
    extra = [r for r in rows if r["metric"] not in METRICS]
    lines = [
        "# revcurse compare",
        "",
        f"{config.seeds} seed(s) from {config.seed}; "
        f"{config.world.facts_per_group} facts per group ({', '.join(GROUPS)}), "
        f"{config.remedies.reading_documents} reading documents; every "
        f"trained method: {config.train.steps} steps of {config.train.batch_size} sequences "
        f"({config.train.decay} decay) from {start}. Values are means over seeds with 95% t "
        "intervals across seeds "
        "(one seed: the run's own interval); p-values are combined with Fisher's method.",
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
        "| method | train seconds | train FLOPs | wall seconds |",
        "|---|---|---|---|",
        *(
            f"| {c['method']} | {c['train_seconds']:.1f} | {c['train_flops']:.2e} | "
            f"{c['wall_seconds']:.1f} |"
            for c in costs
        ),
        "",
    ]
    return "\n".join(lines)
