"""Berglund et al.'s Experiment 1, reproduced from the published files.

    revcurse berglund                              # the tiny model, all 90 facts (~3 min)
    revcurse berglund --model smollm2-135m --facts-per-group 8 --train-phrasings 5 \
        --test-phrasings 2 --train.lr 1e-4 --train.batch-size 8 --train.steps 60

Reads the 90 fictitious celebrities (revcurse.berglund; --data is a folder or a hub id),
trains --model on their training lines (p2d facts written name first, d2p description
first, `both` both ways; 30 paraphrases each) with the loss on completions only (LoRA for
pretrained models, see --train.finetune), and asks the 10 held-out paraphrases in the
trained direction (same) and the other (reverse), before training (method `untrained`) and
after (`trained`). A greedy answer is correct when it starts with the completion (Berglund's
rule; b2a lines are completed by the name alone, see names_asked); rank_acc ranks the
completion among the same phrasing's completions for the group's other facts. Reverse lines
also get Berglund's log-likelihood test: log p(correct completion) against log p(the
`_randomized` file's completion, another entity of the group) for the same prompt, by a
paired t-test (random_p_value) and a Kolmogorov-Smirnov test (random_ks_p_value); the 17
lines whose random draw is the true entity are left out. The tests treat the lines as
independent, though each fact gives 10 of them. The run directory is the demo's, without
the model (see revcurse.results).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

from rich.console import Console

from revcurse.berglund import HUB_ID, PUBLISHED, BerglundData, load_berglund, select
from revcurse.config import check, to_dict
from revcurse.evaluate import EvalConfig, check_no_shots, evaluate
from revcurse.facts import GROUPS, Example
from revcurse.lm.causal import CausalLM, LanguageModel
from revcurse.lm.models import count_parameters, device, make_model
from revcurse.lm.pretrained import check_model_option
from revcurse.lm.tiny import TinyModelConfig
from revcurse.recipes.run import announce, finished, opened_run, recipe_app, with_output_dir
from revcurse.results import render, results_table, train_record, write_results
from revcurse.stats import ks_row, mean_row, p_value_row
from revcurse.train import TrainConfig, train

EXP1 = PUBLISHED / "exp1"
DEFAULT_DATA = str(EXP1) if EXP1.is_dir() else HUB_ID
# the table's columns (every metric: table.md, results.json): is the right name likelier
# than a random one's?
SHOWN = ("exact_match", "rank_acc", "rank_chance", "random_p_value", "random_ks_p_value")
HEADLINE = (
    "Berglund et al. 2023, GPT-3 175B fine-tuned on all 90 facts: same direction d2p 96.7%, "
    "p2d 50.0%; reverse ~0%, the correct completion no likelier than a random one.\n"
)


@dataclass
class BerglundConfig:
    # benchmarks/berglund_smollm2.py: full fine-tuning at 1e-4 in batches of 8 learns the
    # facts (same direction ~0.9) where the tiny model's 400 steps of 256 at 3e-3 ran a
    # 24 GiB machine out of memory; 32 sequences a scoring pass
    PRETRAINED: ClassVar[dict[str, object]] = {
        "train.finetune": "full",
        "train.steps": 150,
        "train.lr": 1e-4,
        "train.batch_size": 8,
        "train.warmup_steps": 5,
        "train.group_by_length": True,  # a third of a random batch of 8 is padding
        "eval.batch_size": 32,
    }
    output_dir: Path | None = None
    """default runs/berglund-<timestamp>; never overwritten"""
    data: str = DEFAULT_DATA
    """Experiment 1 folder, or a hub dataset id (needs the hub extra)"""
    facts_per_group: int = 0
    """facts of each group, drawn with --seed (0 = all 30)"""
    train_phrasings: int = 0
    """training paraphrases per fact and direction (0 = all 30)"""
    test_phrasings: int = 0
    """held-out paraphrases per fact and direction (0 = all 10)"""
    seed: int = 0
    """seeds the fact draw, the initial weights and the data order"""
    progress: bool = True
    """progress bars on stderr"""
    model: str = "tiny"
    """tiny (from scratch), smollm2-135m, gemma3-270m, a hub id, folder or .gguf"""
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        check_model_option(self.model)
        for name in ("facts_per_group", "train_phrasings", "test_phrasings"):
            value = getattr(self, name)
            check(value >= 0, name, f"must be 0 (all) or more, got {value}")
        check_no_shots(self.eval)


def randomized_test(
    lm: LanguageModel, samples: Sequence[dict], randomized: dict[tuple[str, str], str], method: str
) -> list[dict]:
    """Rows of Berglund's log-likelihood test of the reverse lines; adds the random completion
    and its log-prob to each tested sample."""
    tested, fakes = [], []
    for s in samples:  # lines with a random completion, less those that drew the true one
        fake = randomized.get((s["prompt"], s["target"]))
        if fake not in (None, s["target"]):
            tested.append(s)
            fakes.append(fake)
    scores = lm.logprobs([(s["prompt"], f) for s, f in zip(tested, fakes, strict=True)])
    for s, fake, score in zip(tested, fakes, scores, strict=True):
        s["random"], s["random_logprob"] = fake, score
    rows = []
    for group in GROUPS:
        cell = [s for s in tested if s["group"] == group]
        if not cell:
            continue
        key = {"method": method, "group": group, "direction": "reverse"}
        true = [s["logprob"] for s in cell]
        random = [s["random_logprob"] for s in cell]
        margins = [t - f for t, f in zip(true, random, strict=True)]
        rows += [
            mean_row(**key, metric="random_margin", values=margins),
            p_value_row(**key, metric="random_p_value", a=true, b=random),
            ks_row(**key, metric="random_ks_p_value", a=true, b=random),
        ]
    return rows


def names_asked(data: BerglundData) -> list[Example]:
    """The test lines, each b2a one completed by the name alone: the published `both` test
    lines go on after the name with their held-out template's own words (" Isaac Goldsmith
    has found their calling."), which no model can know; p2d and d2p lines end at the name."""
    return [
        replace(e, completion=" " + data.facts[e.fact].a) if e.direction == "b2a" else e
        for e in data.test
    ]


def assess(
    lm: LanguageModel, data: BerglundData, config: BerglundConfig, method: str
) -> tuple[list[dict], list[dict]]:
    """Rows and samples of the test lines: exact match, ranking and the randomized test."""
    rows, samples = evaluate(lm, names_asked(data), config.eval, method, config.seed)
    return rows + randomized_test(lm, samples, data.randomized, method), samples


def run_berglund(config: BerglundConfig, console: Console | None = None) -> Path:
    """Train and test on Experiment 1; returns the finished run directory."""
    console = console or Console(stderr=True)
    published = load_berglund(config.data)
    data = select(
        published,
        config.facts_per_group,
        config.train_phrasings,
        config.test_phrasings,
        config.seed,
    )
    config = with_output_dir(config, "berglund")
    with opened_run(config) as scratch:
        # The tiny model's words come from every published line, random completions included.
        texts = [e.prompt + " " + e.completion for e in published.train + published.test]
        texts += published.randomized.values()
        model, tokenizer = make_model(config.model, config.tiny, texts, config.seed)
        model.to(device())
        what = (
            f"{len(data.facts)} facts, {len(data.train)} training and {len(data.test)} test lines"
        )
        announce(console, "berglund", what, config.model, count_parameters(model))
        start = time.perf_counter()
        lm = CausalLM(model, tokenizer, config.eval.batch_size, config.progress)
        rows, samples = assess(lm, data, config, "untrained")
        trained = train(
            model,
            tokenizer,
            data.train,
            config.train,
            config.seed,
            config.progress,
            pretrained=config.model != "tiny",  # LoRA under --train.finetune auto
        )
        trained_rows, trained_samples = assess(lm, data, config, "trained")
        eval_seconds = time.perf_counter() - start - trained.seconds

        title = f"Berglund Experiment 1, {config.model} model, seed {config.seed}"
        text = render(results_table(rows + trained_rows, title, SHOWN)) + HEADLINE
        write_results(
            scratch,
            rows + trained_rows,
            text,
            samples + trained_samples,
            config=to_dict(config),
            data={"facts": len(data.facts), "train": len(data.train), "test": len(data.test)},
            train=train_record(trained, len(data.train)),
            eval={"seconds": eval_seconds, "examples": 2 * len(data.test)},
        )
    timing = f"train {trained.seconds:.0f} s, eval {eval_seconds:.0f} s"
    return finished(console, text, config, timing)


app = recipe_app(
    "berglund",
    BerglundConfig,
    run_berglund,
    (
        "Berglund et al.'s Experiment 1 from the published files: train on the fictitious "
        "celebrities, then test the held-out paraphrases both ways, before and after training, "
        "with their exact-match rule and their log-likelihood test against random names."
    ),
)
