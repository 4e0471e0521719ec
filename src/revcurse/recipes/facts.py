"""`revcurse facts`: write the controlled world's files, and check yours.

    revcurse facts generate --out-dir world/ --facts-per-group 50
    revcurse facts validate world/facts.jsonl world/templates.jsonl

Bad files are reported as `FILE:LINE: what is wrong`, with exit status 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from revcurse.config import EXIT_BAD_INPUT, ConfigError, fail
from revcurse.fact_files import validate
from revcurse.records import DataError, write_records
from revcurse.results import check_writable
from revcurse.world import TEMPLATES, WorldConfig, generate_facts

app = typer.Typer(
    help="Create and check facts and templates files.", no_args_is_help=True, rich_markup_mode=None
)


@app.command("validate")
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


@app.command("generate")
def facts_generate(
    out_dir: Annotated[Path, typer.Option(help="Folder for facts.jsonl and templates.jsonl.")],
    facts_per_group: Annotated[int, typer.Option(help="Facts in each of p2d, d2p, both.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the name and description draw.")] = 0,
    csv: Annotated[bool, typer.Option("--csv", help="Write CSV instead of JSONL.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Write the controlled world's facts and templates, to edit or to read with `demo --facts`."""
    try:
        facts = generate_facts(WorldConfig(facts_per_group=facts_per_group), seed)
    except ConfigError as error:
        fail(f"--facts-per-group: {error.message}")
    suffix = ".csv" if csv else ".jsonl"
    files = {
        out_dir / f"{name}{suffix}": records
        for name, records in (("facts", facts), ("templates", TEMPLATES))
    }
    there = [str(path) for path in files if path.exists()]
    if there and not force:  # they may hold the user's edits
        fail(f"{there[0]}: already exists (--force overwrites it)")
    try:
        check_writable(out_dir)
    except ValueError as error:
        fail(str(error))
    for path, records in files.items():
        try:
            write_records(path, records)
        except OSError as error:  # a full disk, say: write_records leaves no half file
            fail(f"{path}: cannot write it ({error.strerror})")
        print(path)
