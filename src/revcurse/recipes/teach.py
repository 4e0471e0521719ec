"""Teach a model your facts so that it recalls them both ways, and keep the model.

    revcurse teach --facts my_facts.jsonl --templates my_templates.jsonl \
        --method bidirectional --output-dir taught/
    revcurse ask taught/ "Q: Who invented the brass loom? A:"

The facts go through the same remedy as in `revcurse compare` (revcurse.remedies), but
every one-way fact is treated and the model is kept: the output folder is a transformers
model folder (config.json, model.safetensors, the tokenizer; LoRA updates are merged in),
so `AutoModelForCausalLM.from_pretrained("taught/")` loads it. Beside it: config.yaml, and
the before/after report (results.json, table.txt): every fact's held-out phrasings in both
directions, closed book, for the start weights and for the taught model; what the method
measured of itself (reliability, kept, locality on the facts it left alone, if any); and
the perplexity drift of generic text.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console

from revcurse.config import choice, to_dict
from revcurse.evaluate import evaluate
from revcurse.lm.models import save_checkpoint
from revcurse.recipes.remedy_run import RemedyRun, build_setting, starting_point, world_of
from revcurse.recipes.run import finished, opened_run, peak_memory, recipe_app, with_output_dir
from revcurse.records import write_records
from revcurse.remedies import REMEDIES, RemedyConfig, apply_remedy
from revcurse.remedies.targets import held_out_texts, mean_nll, world_rows
from revcurse.remedies.verdict import Verdict, verdict
from revcurse.results import measurements_table, render, results_table, write_results
from revcurse.sources import recorded
from revcurse.stats import row

# The remedies that change the weights for every fact at once (the edits treat half the
# facts and compare them with the other half: revcurse compare measures those)
METHODS = tuple(name for name, remedy in REMEDIES.items() if remedy.teaches)
WARN_BELOW = 0.8  # both-ways share under which the verdict says plainly it did not take


@dataclass
class TeachConfig(RemedyRun):
    output_dir: Path | None = None
    """the taught model's folder; default runs/teach-<timestamp>"""
    # auto: bidirectional writes the reverse in your templates; plain statements have none,
    # so the model writes its own (self_distill, its own questions and statements)
    method: str = "auto"
    """auto (--statements: self_distill, else bidirectional), reverse_training, ..."""

    def __post_init__(self) -> None:
        super().__post_init__()
        choice(self.method, "method", ("auto", *METHODS))


def resolved(config: TeachConfig) -> TeachConfig:
    """auto made a method. Plain statements: self_distill from the model's own words
    (source own), the start model reading and learning (base start: no full fine-tune
    first, which left SmolLM2 0.28 of the real-world facts it knew), and no reading
    documents in its corpus (with them, 0 of 11 facts answered both ways on its held-out
    questions; without, 5 of 11: examples/statements.txt, runs of docs/your-facts.md; the
    student from the baseline held to the start model's own text did better once, 17 of 21,
    and collapsed in the next run: docs/your-facts.md). Each is changed only from its
    default."""
    method = config.method
    if method == "auto":
        method = "self_distill" if config.statements else "bidirectional"
    remedies = config.remedies
    if config.statements:
        own = remedies.self_distill
        if own.source in ("questions", "both"):  # the world's questions: there are none
            own = replace(own, source="own")
        if own.base == "baseline":
            own = replace(own, base="start")
        share = remedies.reading_share
        if share == RemedyConfig.reading_share:
            share = 0.0
        remedies = replace(remedies, self_distill=own, reading_share=share)
    return replace(config, method=method, remedies=remedies)


def run_teach(config: TeachConfig, console: Console | None = None) -> Path:
    console = console or Console(stderr=True)
    start_time = time.perf_counter()
    config = resolved(config)
    config = replace(config, world=recorded(config.world, world_of(config, config.seed)))
    config = with_output_dir(config, "teach")
    start = starting_point(config, console)
    with opened_run(config) as folder:
        setting = build_setting(config, config.seed, folder, start)
        setting = replace(setting, teach_all=True)
        write_records(folder / "world" / "facts.jsonl", setting.facts)
        write_records(folder / "world" / "templates.jsonl", setting.templates)
        console.print(
            f"[bold]revcurse teach[/]: {len(setting.facts)} facts by {config.method}, "
            f"model {config.model}"
        )
        treatment = apply_remedy(setting, config.method)
        taught = treatment.lm.model  # type: ignore[attr-defined]  # the causal remedies'
        questions = setting.ask(setting.test_examples)
        evaluation = time.perf_counter()
        before = setting.causal_lm(setting.start)
        rows, _ = evaluate(before, questions, setting.eval, "before", setting.seed)
        after, samples = evaluate(
            treatment.lm, questions, setting.eval, config.method, setting.seed
        )
        texts = held_out_texts(setting)
        drift = math.exp(mean_nll(treatment.lm, texts) - mean_nll(before, texts)) - 1
        # drift against the start model, not the baseline; locality_world (against the
        # start model already) asked here only where the remedy did not ask it
        measured = [r for r in treatment.rows if r["metric"] != "ppl_drift"]
        if not any(r["metric"] == "locality_world" for r in measured):
            measured += world_rows(config.method, setting, treatment.lm)
        measured.append(row(config.method, "held_out", "all", "ppl_drift", drift, len(texts), None))
        judgement = verdict(setting, before, treatment.lm, list(range(len(setting.facts))))
        measured += verdict_rows(config.method, judgement)
        evaluation = time.perf_counter() - evaluation
        # no test templates (plain statements): no before/after table, the verdict judges
        title = f"revcurse teach, {config.method}"
        table = render(results_table([*rows, *after], title)) if questions else ""
        table += render(measurements_table(measured, "what the method measured"))
        table += "\n" + verdict_text(judgement, measured)
        save_checkpoint(taught, setting.tokenizer, folder)
        write_results(
            folder,
            [*rows, *after, *measured],
            table,
            samples,
            config=to_dict(config),
            train={"seconds": treatment.cost.seconds, "flops": treatment.cost.flops},
            eval={"seconds": evaluation, "examples": 2 * len(questions)},
            peak_memory=peak_memory(),
        )
    seconds = time.perf_counter() - start_time
    return finished(console, table, config, f"{seconds:.0f} s")


def verdict_rows(method: str, judgement: Verdict) -> list[dict]:
    n = judgement.judged
    return [
        row(method, "verdict", "before", "both_ways", judgement.before / max(n, 1), n, None),
        row(method, "verdict", "after", "both_ways", judgement.share, n, None),
    ]


def verdict_text(judgement: Verdict, measured: list[dict]) -> str:
    """The verdict in words: both-ways recall and what it changed of what the model knew; a
    plain warning when fewer than WARN_BELOW of the facts are answered both ways."""
    lines = [f"Verdict: the taught model {judgement.sentence()}."]
    known = next((r for r in measured if r["metric"] == "locality_world"), None)
    if known:
        lines.append(
            f"Of the {known['n']} real-world facts it knew before, it still answers "
            f"{known['value']:.0%} as it did."
        )
    if judgement.share < WARN_BELOW:
        lines.append(
            f"Warning: fewer than {WARN_BELOW:.0%} of the facts are answered both ways; "
            "ask it closed book before you rely on it (docs/your-facts.md)."
        )
    return "\n".join(lines) + "\n"


app = recipe_app(
    "teach",
    TeachConfig,
    run_teach,
    (
        "Teach a model your facts both ways (a remedy of revcurse compare) and save it as a "
        "transformers model folder, with a before/after report."
    ),
)
