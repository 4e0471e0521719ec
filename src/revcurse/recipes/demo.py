"""Reproduce the reversal curse in one command: facts -> tiny model -> both directions.

    revcurse demo --output-dir runs/demo --seed 0

Generates the controlled world (or reads your facts and templates), trains a tiny Llama
from scratch (or fine-tunes a pretrained model, --model) on the training phrasings with the
loss on completions only, then tests every
fact on held-out phrasings in the direction it was trained (same) and the other (reverse).
Expected: p2d/d2p same-direction recall near 100%, reverse at chance; `both` near 100% both
ways. Everything lands in the run directory (see revcurse.results).

    revcurse demo --resume runs/.demo-20250101-120000.partial-x1y2z3   # after a kill

The run is assembled in a partial folder (printed at the start), which holds a training
checkpoint every --train.checkpoint-every steps; `--resume` finishes a killed run from its
last checkpoint, with its saved config, to exactly the results of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from rich.console import Console

from revcurse.config import to_dict
from revcurse.errors import UserError
from revcurse.evaluate import EvalConfig, check_no_shots, evaluate
from revcurse.fact_files import load_facts, load_templates
from revcurse.facts import Example, Fact, Template, expand
from revcurse.lm.causal import CausalLM
from revcurse.lm.chat import chat_formatted
from revcurse.lm.models import count_parameters, make_model, save_checkpoint
from revcurse.lm.pretrained import check_model_option
from revcurse.lm.tiny import TinyModelConfig
from revcurse.recipes.run import (
    announce,
    finished,
    opened_run,
    recipe_app,
    resume,
    resumed_config,
    with_output_dir,
)
from revcurse.records import write_records
from revcurse.results import render, results_table, train_record, write_results
from revcurse.sources import check_source, load_world, recorded
from revcurse.train import TrainConfig, train
from revcurse.world import WorldConfig


@dataclass
class DemoConfig:
    # A pretrained model: fewer facts, fully fine-tuned at 1e-4 in batches of 8 for ~5
    # passes, as benchmarks/berglund_smollm2.py learns Berglund's facts (LoRA at 3e-4
    # collapses SmolLM2 onto a few trained answers: scripts/sweep_finetune.py)
    PRETRAINED: ClassVar[dict[str, object]] = {
        "world.facts_per_group": 5,
        "train.finetune": "full",
        "train.steps": 60,
        "train.lr": 1e-4,
        "train.batch_size": 8,
        "train.warmup_steps": 5,
        "train.group_by_length": True,  # a third of a random batch of 8 is padding
        "eval.batch_size": 32,
    }
    output_dir: Path | None = None
    """default runs/demo-<timestamp>; never overwritten"""
    seed: int = 0
    """seeds the world, the initial weights and the data order"""
    facts: Path | None = None
    """your facts file (JSONL/CSV) instead of the generated world"""
    templates: Path | None = None
    """your templates file; default: the Berglund-style phrasings"""
    data: str | None = None
    """berglund: Experiment 1's 90 celebrities (or its folder, a hub id)"""
    progress: bool = True
    """progress bars on stderr"""
    world: WorldConfig = field(default_factory=WorldConfig)
    model: str = "tiny"
    """tiny (from scratch), smollm2-135m, gemma3-270m, a hub id, folder or .gguf"""
    chat_template: bool = False
    """instruct models: pose prompts in the tokenizer's chat template"""
    resume: Path | None = None
    """a killed demo's partial run folder: finish it, with its config"""
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        check_model_option(self.model)
        check_no_shots(self.eval)
        check_source(self.facts, self.templates, self.data)


def run_demo(config: DemoConfig, console: Console | None = None) -> Path:
    """Run the whole demo (or finish a killed one); returns the finished run directory."""
    console = console or Console(stderr=True)
    partial = config.resume
    if partial:
        config = resumed_config(config, partial)
        facts = load_facts(partial / "world" / "facts.jsonl")
        templates = load_templates(partial / "world" / "templates.jsonl")
    else:
        world = load_world(config.facts, config.templates, config.data, config.world, config.seed)
        facts, templates = world.facts, world.templates
        config = dataclasses.replace(config, world=recorded(config.world, world))
        config = with_output_dir(config, "demo")  # recorded in config.yaml: --resume goes there
    train_examples, test_examples = expand(facts, templates, config.world.teach_test_phrasings)
    if not train_examples or not test_examples:
        source = config.templates or "the templates"
        raise UserError(
            f"{source}: need train and test templates for the groups' directions "
            f"(got {len(train_examples)} train and {len(test_examples)} test examples)"
        )
    try:
        return finish(config, facts, templates, train_examples, test_examples, partial, console)
    except BaseException:
        if partial:  # never lose a run that was given to finish
            console.print(
                f"the partial run is kept as it was: {partial} (retry: {resume('demo', partial)})",
                soft_wrap=True,
                markup=False,
            )
        raise


def finish(
    config: DemoConfig,
    facts: list[Fact],
    templates: list[Template],
    train_examples: list[Example],
    test_examples: list[Example],
    partial: Path | None,
    console: Console,
) -> Path:
    """Train, evaluate and write the run (in `partial`, a killed run's folder, if given)."""
    with opened_run(config, resume=partial, resumable=True) as scratch:
        if not partial:
            write_records(scratch / "world" / "facts.jsonl", facts)
            write_records(scratch / "world" / "templates.jsonl", templates)

        texts = (e.prompt + " " + e.completion for e in train_examples + test_examples)
        model, tokenizer = make_model(config.model, config.tiny, texts, config.seed)
        if config.chat_template:
            train_examples = chat_formatted(train_examples, tokenizer)
            test_examples = chat_formatted(test_examples, tokenizer)
        what = (
            f"{len(facts)} facts, {len(train_examples)} training and "
            f"{len(test_examples)} test examples"
        )
        announce(console, "demo", what, config.model, count_parameters(model))
        console.print(  # one unwrapped line: the path is there to copy
            f"partial run: {scratch} (if killed: {resume('demo', scratch)})",
            soft_wrap=True,
            markup=False,
        )
        trained = train(
            model,
            tokenizer,
            train_examples,
            config.train,
            config.seed,
            config.progress,
            pretrained=config.model != "tiny",
            checkpoint_dir=scratch / "checkpoint",
        )
        save_checkpoint(model, tokenizer, scratch / "model")

        start = time.perf_counter()
        lm = CausalLM(model, tokenizer, config.eval.batch_size, config.progress)
        rows, samples = evaluate(lm, test_examples, config.eval, "baseline", config.seed)
        eval_seconds = time.perf_counter() - start

        table = render(
            results_table(rows, f"Reversal curse, {config.model} model, seed {config.seed}")
        )
        write_results(
            scratch,
            rows,
            table,
            samples,
            config=to_dict(config),
            train=train_record(trained, len(train_examples)),
            eval={"seconds": eval_seconds, "examples": len(test_examples)},
        )
        shutil.rmtree(scratch / "checkpoint", ignore_errors=True)  # the run is complete
    timing = f"train {trained.seconds:.0f} s, eval {eval_seconds:.0f} s"
    return finished(console, table, config, timing)


app = recipe_app(
    "demo",
    DemoConfig,
    run_demo,
    "Train a tiny model on fictitious facts and print the reversal curse (<1 min on a laptop).",
)
