"""How every recipe opens and closes its run directory.

    config = with_output_dir(config, "demo")
    with opened_run(config) as folder:       # folder holds config.yaml already
        ...                                  # models, results, write_results(folder, ...)
    finished(console, table, config.output_dir, "train 24 s")

The folder becomes `config.output_dir` only when the block ends well (revcurse.results).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console

from revcurse.config import to_yaml
from revcurse.results import default_run_dir, run_directory

C = TypeVar("C")


def with_output_dir(config: C, command: str) -> C:
    """`config` with its output_dir set (default runs/<command>-<timestamp>), so that the
    saved config.yaml says where the run is."""
    output_dir = config.output_dir or default_run_dir(command)  # type: ignore[attr-defined]
    return dataclasses.replace(config, output_dir=output_dir)  # type: ignore[type-var]


@contextmanager
def opened_run(config: Any, resume: Path | None = None, resumable: bool = False) -> Iterator[Path]:
    """The scratch folder of the run `config.output_dir`, holding config.yaml; with `resume`,
    a killed run's partial folder taken over whole (its config.yaml and checkpoints too).
    `resumable`: Ctrl-C keeps the partial folder for a later `--resume`."""
    with run_directory(config.output_dir, resumable=resumable) as folder:
        if resume:
            folder.rmdir()
            resume.rename(folder)
        else:
            (folder / "config.yaml").write_text(to_yaml(config), encoding="utf-8")
        yield folder


def announce(console: Console, command: str, what: str, model: str, parameters: int) -> None:
    """The line a recipe prints once its data and model are ready."""
    console.print(f"[bold]revcurse {command}[/]: {what}; model {model}, {parameters:,} parameters")


def finished(
    console: Console, table: str, output_dir: Path, timing: str, name: str = "results.json"
) -> None:
    """The table on stdout, then where the results are."""
    print(table, end="")
    console.print(f"results: {output_dir}/{name} ({timing})")
