"""The `revcurse` command line: one command per recipe (revcurse.recipes).

    revcurse demo                      # the reversal curse, reproduced in under a minute
    revcurse berglund                  # Berglund et al.'s Experiment 1 from the published files
    revcurse pairs --model smollm2-135m --limit 100   # their Experiment 2 on a local model
    revcurse compare                   # every remedy, same budget, several seeds
    revcurse analyze runs/demo-...     # where the one-way map lives in the trained model
    revcurse facts generate --out-dir world/
    revcurse facts validate world/facts.jsonl world/templates.jsonl
    revcurse kb add world/facts.jsonl --db kb.sqlite

Bad input ends with one line on stderr (`FILE:LINE: what is wrong`, or the option and what
is wrong with it) and exit status 2, before any model is loaded.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import typer

from revcurse.config import command_from_config, fail
from revcurse.facts import DataError
from revcurse.lm.pretrained import ModelNotFound
from revcurse.recipes import facts, kb
from revcurse.recipes.analyze import AnalyzeConfig, run_analyze, with_run_dir_argument
from revcurse.recipes.berglund import BerglundConfig, run_berglund
from revcurse.recipes.compare import CompareConfig, run_compare
from revcurse.recipes.demo import DemoConfig, run_demo
from revcurse.recipes.pairs import PairsConfig, run_pairs
from revcurse.results import RunDirExists

# Plain help (click's, not rich's panels): every option name stays whole in 80 columns.
app = typer.Typer(
    help="Reproduce, explain and fix the LLM reversal curse on your own machine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(facts.app, name="facts")
app.add_typer(kb.app, name="kb")

# What users get wrong (bad files, existing run folders, bad options, unknown models): one
# line and exit 2, never a traceback.
BAD_INPUT = (DataError, RunDirExists, ValueError, ModelNotFound)


def recipe(config_cls: type, run: Callable[[Any], object], doc: str) -> Callable[..., None]:
    """A command whose options are the recipe's config fields (revcurse.config)."""

    def call(config: Any) -> None:
        try:
            run(config)
        except BAD_INPUT as error:
            fail(str(error))

    return command_from_config(config_cls, call, doc)


app.command("demo")(
    recipe(
        DemoConfig,
        run_demo,
        "Train a tiny model on fictitious facts and print the reversal curse (<1 min on a laptop).",
    )
)
app.command("berglund")(
    recipe(
        BerglundConfig,
        run_berglund,
        "Berglund et al.'s Experiment 1 from the published files: train on the fictitious "
        "celebrities, then test the held-out paraphrases both ways, before and after training, "
        "with their exact-match rule and their log-likelihood test against random names.",
    )
)
app.command("pairs")(
    recipe(
        PairsConfig,
        run_pairs,
        "Berglund et al.'s Experiment 2 on a local model, untrained: ask each real celebrity's "
        "parent and each parent's child (greedy answers, and the right name ranked among names "
        "drawn from the file).",
    )
)
app.command("compare")(
    recipe(
        CompareConfig,
        run_compare,
        "Baseline and every remedy on the same world and training budget, over several seeds: "
        "one table, a chart and report.md.",
    )
)
app.command("analyze")(
    with_run_dir_argument(
        recipe(
            AnalyzeConfig,
            run_analyze,
            "Logit lens, causal tracing, probes and weight asymmetry of a demo run (RUN_DIR).",
        )
    )
)


def main() -> None:
    app(prog_name="revcurse")


if __name__ == "__main__":
    sys.exit(main())
