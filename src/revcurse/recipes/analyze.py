"""Where the one-way map lives: a demo run in, a new analysis run directory out.

    revcurse analyze runs/demo-20261126-093000 --output-dir runs/analyze-seed0
    revcurse analyze runs/compare-20261206-180000   # a compare run's --keep-models

Reads RUN_DIR/model and RUN_DIR/world of `revcurse demo`, runs the logit lens, causal
tracing, the probe, the association score and the subject/object role cosines
(revcurse.analysis), and writes config.yaml, results.json ({"rows", "config", "demo_seed",
"positions", "traced", "seconds", "versions"}), table.txt and lens.png, trace.png,
probe.png, assoc.png, roles.png (see revcurse.results for the directory). A compare run
gets what its wrong answers are (revcurse.analysis.answers: from its samples.jsonl, no
model), and its kept models (--keep-models: RUN_DIR/models/seed<S>-<method>/, a causal LM
or concept_memory's) the role cosines, each method's seeds pooled: rows, table.txt and
roles.png. A demo run gets the answer rows too.
"""

from __future__ import annotations

import inspect
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import typer
import yaml
from rich.console import Console

from revcurse.analysis.answers import SAMPLE_KEYS, answer_rows
from revcurse.analysis.association import assoc_rows
from revcurse.analysis.figures import plot_assoc, plot_lens, plot_probe, plot_roles, plot_trace
from revcurse.analysis.lens import lens_rows
from revcurse.analysis.probe import ProbeConfig, probe_rows
from revcurse.analysis.queries import build_queries, cells, sample_queries
from revcurse.analysis.roles import (
    Cosines,
    residual_sites,
    role_cosines,
    role_rows,
    role_vectors,
    roles_table,
)
from revcurse.analysis.rows import summary_table
from revcurse.analysis.tracing import POSITIONS, TraceConfig, trace_rows
from revcurse.config import check, to_dict
from revcurse.errors import UserError
from revcurse.fact_files import load_facts, load_templates
from revcurse.facts import Fact, Template, expand
from revcurse.lm.causal import CausalLM
from revcurse.lm.hooks import decoder_layers
from revcurse.lm.models import load_checkpoint
from revcurse.recipes.run import finished, opened_run, recipe_app, with_output_dir
from revcurse.records import read_records
from revcurse.remedies.concept_jepa import JEPA, ConceptJepaLM
from revcurse.remedies.concept_memory import MEMORY, ConceptLM
from revcurse.results import KEPT_MODELS, measurements_table, render, write_results
from revcurse.stats import mean_row

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class AnalyzeConfig:
    run_dir: Path | None = None
    """the trained run to analyse (or give it as RUN_DIR)"""
    output_dir: Path | None = None
    """default runs/analyze-<timestamp>; never overwritten"""
    seed: int = 0
    """seeds the traced facts, the noise and the probe's label splits"""
    progress: bool = True
    """progress bars on stderr"""
    # Tracing runs thousands of tiny forward passes: split over threads they gain nothing and
    # stall (30x measured) whenever another process holds a core. 0 = torch's default.
    cpu_threads: int = 1
    """torch CPU threads for this command"""
    trace: TraceConfig = field(default_factory=TraceConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)

    def __post_init__(self) -> None:
        check(self.cpu_threads >= 0, "cpu_threads", f"must be 0 or more, got {self.cpu_threads}")


ROLES_TITLE = "An entity as subject vs as object: cosine / against another entity's"
RUNS_READ = "`revcurse demo` or `revcurse compare`"
ANSWERS_TITLE = "What the answers are when wrong: another fact's trained answer, or other text"


def check_run_dir(run_dir: Path | None) -> Path:
    """`run_dir` if it holds what a demo run writes, or a compare run's answers; else a
    one-line UserError."""
    if run_dir is None:
        raise UserError(f"RUN_DIR: missing; give a run directory of {RUNS_READ}")
    needed: tuple[str, ...] = ("model/config.json", "world/facts.jsonl", "world/templates.jsonl")
    if compared(run_dir):
        needed = ("world/templates.jsonl",) if kept(run_dir) else ()
    if not run_dir.exists():
        raise UserError(f"{run_dir}: no such run directory")
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: not a directory; give a run directory of {RUNS_READ}")
    missing = [name for name in needed if not (run_dir / name).is_file()]
    if missing:
        raise UserError(f"{run_dir}: not a revcurse run directory (missing {', '.join(missing)})")
    return run_dir


def demo_seed(run_dir: Path) -> int | None:
    """The seed in the demo run's config.yaml, None when it does not tell."""
    try:
        seed = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")).get("seed")
    # No or odd config (ValueError: not UTF-8; RecursionError: nested too deeply): only a
    # label is lost
    except (OSError, ValueError, RecursionError, yaml.YAMLError, AttributeError):
        return None
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


@contextmanager
def timed(seconds: dict[str, float], name: str) -> Iterator[None]:
    """Adds the block's wall time to `seconds` as `name` (results.json reports each step)."""
    start = time.perf_counter()
    yield
    seconds[name] = time.perf_counter() - start


def run_analyze(config: AnalyzeConfig, console: Console | None = None) -> Path:
    """Analyse a trained run; returns the finished analysis run directory."""
    console = console or Console(stderr=True)
    run_dir = check_run_dir(config.run_dir)
    config = with_output_dir(config, "analyze")
    threads = torch.get_num_threads()
    if config.cpu_threads:
        torch.set_num_threads(config.cpu_threads)
    try:
        if compared(run_dir):
            return _analyze_compare(config, run_dir, console)
        model, tokenizer = load_checkpoint(run_dir / "model")
        facts = load_facts(run_dir / "world" / "facts.jsonl")
        templates = load_templates(run_dir / "world" / "templates.jsonl")
        return _analyze(config, run_dir, model, tokenizer, facts, templates, console)
    finally:
        torch.set_num_threads(threads)


def compared(run_dir: Path) -> bool:
    """Whether `run_dir` is a compare run: scored answers, and no single model of a demo."""
    return (run_dir / "samples.jsonl").is_file() and not (run_dir / "model").exists()


def answers(run_dir: Path) -> tuple[list[dict], str]:
    """A run's answer rows (revcurse.analysis.answers) and their table; none for a run
    without samples.jsonl."""
    path = run_dir / "samples.jsonl"
    if not path.is_file():
        return [], ""
    samples = []
    for line, sample in read_records(path):
        missing = [key for key in SAMPLE_KEYS if key not in sample]
        if missing:
            raise UserError(f"{path}:{line}: not a scored answer (no {', '.join(missing)})")
        samples.append(sample)
    rows = answer_rows(samples)
    return rows, render(measurements_table(rows, ANSWERS_TITLE)) if rows else ""


def kept(run_dir: Path) -> bool:
    """Whether `run_dir` is a compare run with kept models (compare --keep-models)."""
    return (run_dir / KEPT_MODELS).is_dir()


def kept_models(run_dir: Path) -> list[tuple[int, str, Path]]:
    """(seed, method, folder) of every model a compare run kept, in seed order."""
    found = []
    for folder in (run_dir / KEPT_MODELS).iterdir():
        named = re.fullmatch(r"seed(\d+)-(\w+)", folder.name)
        if named and folder.is_dir():
            found.append((int(named[1]), named[2], folder))
    if not found:
        raise UserError(f"{run_dir}: its models/ folder holds no kept model")
    return sorted(found)  # by seed, then method


def kept_lm(folder: Path) -> CausalLM | ConceptLM | ConceptJepaLM:
    """A model `compare --keep-models` saved: concept_memory's, concept_jepa's, or a causal LM."""
    if (folder / f"{MEMORY}.json").is_file():
        return ConceptLM.load(folder)
    if (folder / f"{JEPA}.json").is_file():
        return ConceptJepaLM.load(folder)
    return CausalLM(*load_checkpoint(folder))


Reads = dict[tuple[str, str, str, str], list[float]]  # (method, group, relation, metric) -> shares


def pooled(run_dir: Path, templates: list[Template]) -> tuple[dict[str, Cosines], Reads]:
    """Each kept method's role cosines and, for a concept memory, the share of attention its
    questions' last position gives the memory, per layer; its seeds' entities pooled."""
    cosines: dict[str, Cosines] = {}
    reads: Reads = {}
    for seed, method, folder in kept_models(run_dir):
        facts_file = run_dir / "world" / f"facts-seed{seed}.jsonl"
        if not facts_file.is_file():
            raise UserError(f"{run_dir}: missing world/{facts_file.name} for {folder.name}")
        facts = load_facts(facts_file)
        lm = kept_lm(folder)
        sites = residual_sites(lm.model) if isinstance(lm, CausalLM) else lm.sites
        test = expand(facts, templates)[1]
        vectors = role_vectors(sites, lm.tokenizer, facts, test)
        for key, (own, other) in role_cosines(vectors, facts).items():
            into = cosines.setdefault(method, {}).setdefault(key, ([], []))
            into[0].extend(own)
            into[1].extend(other)
        if isinstance(lm, ConceptLM):
            shares = lm.memory_attention([e.prompt for e in test])
            span = lm.lexicon.span
            for e, by_layer in zip(test, shares.tolist(), strict=True):
                # attention spread evenly over the memory's positions and the prompt's
                even = span / (span + len(lm.tokenizer(e.prompt).input_ids))
                for metric, share in [
                    *((f"memory_attention_layer{i}", s) for i, s in enumerate(by_layer)),
                    ("memory_attention_even", even),
                ]:
                    reads.setdefault((method, e.group, e.sense, metric), []).append(share)
    return cosines, reads


def _analyze_compare(config: AnalyzeConfig, run_dir: Path, console: Console) -> Path:
    """A compare run: what its wrong answers are; with kept models, how alike each entity
    is as subject and as object, and how much a concept memory's questions read from it."""
    start = time.perf_counter()
    console.print(f"[bold]revcurse analyze[/]: the compare run {run_dir}")
    with opened_run(config) as scratch:
        rows, table = answers(run_dir)
        if kept(run_dir):
            templates = load_templates(run_dir / "world" / "templates.jsonl")
            cosines, reads = pooled(run_dir, templates)
            roles, curves = [], {}
            for method, by_site in cosines.items():
                method_rows, curves[method] = role_rows(method, by_site)
                roles += method_rows
            plot_roles(curves, scratch / "roles.png")
            table += render(roles_table(roles, f"{ROLES_TITLE}, {run_dir.name}"))
            read_rows = [mean_row(*key, shares) for key, shares in reads.items()]
            if read_rows:
                title = "A question's attention on the memory, by layer (even: spread evenly)"
                table += render(measurements_table(read_rows, title))
            rows += roles + read_rows
        seconds = time.perf_counter() - start
        write_results(scratch, rows, table, None, config=to_dict(config), seconds=seconds)
    return finished(console, table, config, f"{seconds:.0f} s")


def _analyze(
    config: AnalyzeConfig,
    run_dir: Path,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    facts: list[Fact],
    templates: list[Template],
    console: Console,
) -> Path:
    start = time.perf_counter()
    test = build_queries(facts, templates, tokenizer, ("test",))
    # The probe reads every phrasing, training ones included: more examples per fact.
    every = build_queries(facts, templates, tokenizer, ("train", "test"))
    layers = len(decoder_layers(model))
    console.print(
        f"[bold]revcurse analyze[/]: {run_dir}, {len(facts)} facts, {len(test)} test prompts, "
        f"{layers} layers"
    )
    seconds: dict[str, float] = {}
    with opened_run(config) as scratch:
        with timed(seconds, "lens"):
            lens, lens_curves = lens_rows(model, test)
        with timed(seconds, "trace"):
            traced = sample_queries(test, config.trace.facts_per_group, config.seed)
            traces, grids, peaks = trace_rows(
                model, traced, config.trace, config.seed, config.progress
            )
        with timed(seconds, "probe"):
            probes, probe_curves, probe_chance = probe_rows(model, every, config.probe, config.seed)
        with timed(seconds, "assoc"):
            assoc, bars = assoc_rows(model, test, config.seed)
        with timed(seconds, "roles"):
            vectors = role_vectors(
                residual_sites(model), tokenizer, facts, expand(facts, templates)[1]
            )
            roles, role_curves = role_rows("baseline", role_cosines(vectors, facts))
        said, said_table = answers(run_dir)
        rows = lens + traces + probes + assoc + roles + said

        seed = demo_seed(run_dir)
        name = run_dir.name if seed is None else f"{run_dir.name}, demo seed {seed}"
        with timed(seconds, "figures"):
            plot_lens(lens_curves, scratch / "lens.png")
            title = f"Causal tracing, {name} (analysis seed {config.seed})"
            plot_trace(grids, list(cells(traced)), title, scratch / "trace.png")
            plot_probe(probe_curves, probe_chance, scratch / "probe.png")
            plot_assoc(bars, scratch / "assoc.png")
            plot_roles({"baseline": role_curves}, scratch / "roles.png")

        title = f"Where the one-way map lives: {name} (analysis seed {config.seed})"
        table = render(summary_table(rows, peaks, layers, title))
        table += render(roles_table(roles, ROLES_TITLE)) + said_table
        seconds["total"] = time.perf_counter() - start
        write_results(
            scratch,
            rows,
            table,
            None,
            config=to_dict(config),
            demo_seed=seed,
            positions=list(POSITIONS),
            traced=[[q.fact, q.template] for q in traced],
            seconds=seconds,
        )
    return finished(console, table, config, f"{seconds['total']:.0f} s")


def with_run_dir_argument(command: Callable[..., None]) -> Callable[..., None]:
    """`command` (from revcurse.config.command_from_config) with an optional positional
    RUN_DIR that sets --run-dir, so `revcurse analyze RUN_DIR` reads naturally and
    `--config saved.yaml` still replays a run on its own."""
    signature = inspect.signature(command)
    positional = inspect.Parameter(
        "run_dir_argument",
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default=typer.Argument(
            None, metavar="RUN_DIR", help="A run directory of revcurse demo or compare."
        ),
        annotation=Path | None,
    )

    def wrapped(run_dir_argument: Path | None = None, **kwargs: Any) -> None:
        if run_dir_argument is not None:
            kwargs["run_dir"] = run_dir_argument
        command(**kwargs)

    wrapped.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[positional, *signature.parameters.values()]
    )
    wrapped.__doc__ = command.__doc__
    return wrapped


app = recipe_app(
    "analyze",
    AnalyzeConfig,
    run_analyze,
    "Logit lens, causal tracing, probes and weight asymmetry of a demo run (RUN_DIR); what a"
    " compare run's wrong answers are, and its kept models' subject/object cosines.",
    wrap=with_run_dir_argument,
)
