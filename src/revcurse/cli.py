"""The `revcurse` command line.

    revcurse demo                      # the reversal curse, reproduced in under a minute
    revcurse berglund                  # Berglund et al.'s Experiment 1 from the published files
    revcurse pairs --model smollm2-135m --limit 100   # their Experiment 2 on a local model
    revcurse analyze runs/demo-...     # where the one-way map lives in the trained model
    revcurse facts generate --out-dir world/
    revcurse facts validate world/facts.jsonl world/templates.jsonl

Bad input ends with `FILE:LINE: what is wrong` on stderr and exit status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from revcurse.analysis import AnalyzeConfig, run_analyze, with_run_dir_argument
from revcurse.compare import CompareConfig, run_compare
from revcurse.config import command_from_config
from revcurse.demo import DemoConfig, run_demo
from revcurse.facts import DataError, validate, write_records
from revcurse.pairs import PairsConfig, run_pairs
from revcurse.pretrained import ModelNotFound
from revcurse.reproduce import BerglundConfig, run_berglund
from revcurse.results import RunDirExists

app = typer.Typer(
    help="Reproduce, explain and fix the LLM reversal curse on your own machine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
facts_app = typer.Typer(help="Create and check facts and templates files.", no_args_is_help=True)
app.add_typer(facts_app, name="facts")

EXIT_BAD_INPUT = 2


def fail(message: str) -> None:
    typer.echo(message, err=True)  # plain: FILE:LINE: lines must never be wrapped
    raise typer.Exit(EXIT_BAD_INPUT)


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

kb_app = typer.Typer(help="A persistent knowledge base of facts (SQLite).", no_args_is_help=True)
app.add_typer(kb_app, name="kb")
DB_OPTION = typer.Option("--db", help="The knowledge base file (created if missing).")


@kb_app.command("add")
def kb_add(
    files: Annotated[list[Path], typer.Argument(help="Facts files (.jsonl or .csv).")],
    db: Annotated[Path, DB_OPTION] = Path("kb.sqlite"),
    dense: Annotated[bool, typer.Option(help="Also store all-MiniLM-L6-v2 embeddings.")] = False,
) -> None:
    """Add facts to the knowledge base; bad files are reported as FILE:LINE: and add nothing."""
    from revcurse.facts import load_facts
    from revcurse.kb import KnowledgeBase

    facts = []
    problems = []
    for path in files:
        try:
            facts += load_facts(path)
        except DataError as error:
            problems += error.problems
    if problems:
        fail(str(DataError(problems)))
    try:
        with KnowledgeBase(db) as kb:
            added = kb.add(facts, embed=dense)
            total = len(kb)
    except RuntimeError as error:
        fail(str(error))
    print(f"{db}: added {added} new facts ({len(facts) - added} already there), {total} in all")


@kb_app.command("query")
def kb_query(
    text: Annotated[str, typer.Argument(help="A question or any text about an entity.")],
    db: Annotated[Path, DB_OPTION] = Path("kb.sqlite"),
    k: Annotated[int, typer.Option(help="How many facts to return.")] = 3,
    retriever: Annotated[str, typer.Option(help="bm25 or dense.")] = "bm25",
) -> None:
    """The k facts that best match TEXT, best first."""
    from revcurse.kb import KnowledgeBase

    if not db.exists():
        fail(f"{db}: no such knowledge base (create it with: revcurse kb add FILE --db {db})")
    try:
        with KnowledgeBase(db) as kb:
            hits = kb.query(text, k, retriever)
    except (ValueError, RuntimeError) as error:
        fail(str(error))
    for hit in hits:
        print(f"{hit.score:.4f}\t{hit.fact.group}\t{hit.fact.a}\t{hit.fact.b}")


@facts_app.command("validate")
def facts_validate(
    files: Annotated[list[Path], typer.Argument(help="Facts or templates files (.jsonl or .csv).")],
) -> None:
    """Check facts/templates files; print FILE:LINE: problems and exit 2 if any is bad."""
    bad = False
    for path in files:
        try:
            kind, count = validate(path)
        except DataError as error:
            bad = True
            typer.echo(str(error), err=True)
            continue
        print(f"{path}: ok ({count} {kind})")
    if bad:
        raise typer.Exit(EXIT_BAD_INPUT)


@facts_app.command("generate")
def facts_generate(
    out_dir: Annotated[Path, typer.Option(help="Folder for facts.jsonl and templates.jsonl.")],
    facts_per_group: Annotated[int, typer.Option(help="Facts in each of p2d, d2p, both.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the name and description draw.")] = 0,
    csv: Annotated[bool, typer.Option("--csv", help="Write CSV instead of JSONL.")] = False,
) -> None:
    """Write the controlled world's facts and templates, to edit or to read with `demo --facts`."""
    from revcurse.world import TEMPLATES, WorldConfig, generate_facts

    try:
        facts = generate_facts(WorldConfig(facts_per_group=facts_per_group), seed)
    except ValueError as error:
        fail(f"--facts-per-group: {error}")
    suffix = ".csv" if csv else ".jsonl"
    for name, records in (("facts", facts), ("templates", TEMPLATES)):
        write_records(out_dir / f"{name}{suffix}", records)
        print(out_dir / f"{name}{suffix}")


def main() -> None:
    app(prog_name="revcurse")


if __name__ == "__main__":
    sys.exit(main())
