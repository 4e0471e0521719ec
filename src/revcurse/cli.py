"""The `revcurse` command line.

    revcurse demo                      # the reversal curse, reproduced in under a minute
    revcurse facts generate --out-dir world/
    revcurse facts validate world/facts.jsonl world/templates.jsonl

Bad input ends with `FILE:LINE: what is wrong` on stderr and exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from revcurse.config import command_from_config
from revcurse.facts import DataError, validate, write_records
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


def _demo(
    config,
) -> None:  # the config type lives in revcurse.demo, imported lazily (torch is slow)
    from revcurse.demo import run_demo

    try:
        run_demo(config)
    except (DataError, RunDirExists, ValueError) as error:
        fail(str(error))


def _demo_command():
    from revcurse.demo import DemoConfig

    return command_from_config(
        DemoConfig,
        _demo,
        "Train a tiny model on fictitious facts and print the reversal curse (<1 min on a laptop).",
    )


app.command("demo")(_demo_command())


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
