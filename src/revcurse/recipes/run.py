"""How every recipe becomes a command, and opens and closes its run directory.

    app = recipe_app("demo", DemoConfig, run_demo, "Train a tiny model ...")

    config = with_output_dir(config, "demo")
    with opened_run(config) as folder:       # folder holds config.yaml already
        ...                                  # models, results, write_results(folder, ...)
    return finished(console, table, config, "train 24 s")   # the run's folder

The folder becomes `config.output_dir` only when the block ends well (revcurse.results).
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import typer
from rich.console import Console

from revcurse.config import (
    changed_leaves,
    command_from_config,
    fail,
    load_yaml,
    option_name,
    to_dict,
    to_yaml,
)
from revcurse.errors import UserError
from revcurse.memory import EXIT_OUT_OF_MEMORY, out_of_memory
from revcurse.results import KEPT, check_run_dir, default_run_dir, run_directory


class RunConfig(Protocol):
    """What every recipe's config has: where its run goes, and whether to draw progress."""

    output_dir: Path | None
    progress: bool


C = TypeVar("C")
R = TypeVar("R", bound=RunConfig)

# What users get wrong (revcurse.errors) and what their machine refuses (a full disk, a
# folder without permission): one line and exit 2, never a traceback. Anything else is a bug
# of ours (revcurse.cli: exit 1, the traceback in a log)
BAD_INPUT = (UserError, OSError)


def recipe_app(
    name: str,
    config_cls: type,
    run: Callable[[Any], object],
    doc: str,
    wrap: Callable[[Callable[..., None]], Callable[..., None]] | None = None,
) -> typer.Typer:
    """The command `name`: its options are the config's fields (revcurse.config); `wrap`
    may add arguments (e.g. analyze's RUN_DIR)."""

    def call(config: Any) -> None:
        try:
            run(config)
        except BaseException as error:  # MemoryCapReached is one, as Ctrl-C is
            if out_of_memory(error):
                typer.echo(out_of_memory_line(name, config, error), err=True)
                raise typer.Exit(EXIT_OUT_OF_MEMORY) from None
            if kept := kept_run(error):
                typer.echo(f"revcurse {name}: partial run kept: {resume(name, kept)}", err=True)
            if isinstance(error, BAD_INPUT):
                fail(str(error))
            raise

    command = command_from_config(config_cls, call, doc)
    app = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False)
    app.command(name)(wrap(command) if wrap else command)
    return app


def out_of_memory_line(command: str, config: Any, error: BaseException) -> str:
    """One line: what ran out, the batch sizes in use and the options that lower them, and
    the partial run to finish, where one was kept (revcurse.results.run_directory)."""
    sizes = [
        f"{option_name((section, 'batch_size'))} {getattr(config, section).batch_size}"
        for section in ("train", "eval")
        if hasattr(getattr(config, section, None), "batch_size")
    ]
    what = (str(error).splitlines() or [type(error).__name__])[0][:120]  # MemoryError(): ""
    text = f"revcurse {command}: out of memory ({what})"
    if sizes:
        text += f"; batch sizes {', '.join(sizes)}: lower them, or raise --max-memory"
    if kept := kept_run(error):
        text += f"; the partial run is kept: {resume(command, kept)}"
    return text


def kept_run(error: BaseException) -> str:
    """The partial run folder an error left for `--resume` (revcurse.results.run_directory),
    or ''."""
    notes = [n for n in getattr(error, "__notes__", []) if n.startswith(KEPT)]
    return notes[0][len(KEPT) :] if notes else ""


def resume(command: str, partial: Path | str) -> str:
    """The command that finishes a partial run."""
    return f"revcurse {command} --resume {partial}"


def resumed_config(given: R, partial: Path) -> R:
    """The killed run's saved config (with the progress setting given now). An option given
    now that contradicts it is refused: a resumed run ends as the run it continues."""
    kind = type(given)
    saved = load_yaml(kind, partial / "config.yaml")
    then = to_dict(saved)
    for path, value in changed_leaves(to_dict(given), to_dict(kind())):
        was = functools.reduce(operator.getitem, path, then)
        if path[0] not in ("resume", "progress") and was != value:
            raise UserError(
                f"{option_name(path)}: --resume finishes a run with its saved config "
                f"(there {was!r}, here {value!r}); start a new run to change it"
            )
    return dataclasses.replace(saved, progress=given.progress)  # type: ignore[type-var]


def with_output_dir(config: R, command: str) -> R:
    """`config` with its output_dir set (default runs/<command>-<timestamp>), so that the
    saved config.yaml says where the run is; RunDirExists or ValueError at once if that
    folder is taken or cannot be made."""
    output_dir = config.output_dir or default_run_dir(command)
    check_run_dir(output_dir)
    return dataclasses.replace(config, output_dir=output_dir)  # type: ignore[type-var]


@contextmanager
def opened_run(
    config: Any, resume: Path | None = None, resumable: bool | Callable[[], bool] = False
) -> Iterator[Path]:
    """The scratch folder of the run `config.output_dir`, holding config.yaml; with `resume`,
    a killed run's partial folder, finished in place and kept if anything goes wrong.
    `resumable` (or, when it is a function, what it says then): Ctrl-C keeps the partial
    folder for a later `--resume`."""
    with run_directory(config.output_dir, resumable=resumable, partial=resume) as folder:
        if not resume:
            (folder / "config.yaml").write_text(to_yaml(config), encoding="utf-8")
        yield folder


def announce(console: Console, command: str, what: str, model: str, parameters: int) -> None:
    """The line a recipe prints once its data and model are ready."""
    console.print(f"[bold]revcurse {command}[/]: {what}; model {model}, {parameters:,} parameters")


def finished(
    console: Console, table: str, config: RunConfig, timing: str, name: str = "results.json"
) -> Path:
    """The table on stdout, then where the results are, the time taken and the peak memory;
    the run's folder."""
    if config.output_dir is None:
        raise RuntimeError("finished() before with_output_dir(): the run has no folder")
    print(table, end="")
    console.print(f"results: {config.output_dir}/{name} ({timing}, peak memory {peak_memory()})")
    return config.output_dir


def peak_memory() -> str:
    """The largest resident set so far of this process or of a finished worker, e.g.
    '3.1 GiB' (Linux counts KiB; 'unknown' where there is no `resource` module)."""
    try:
        import resource
    except ImportError:
        return "unknown"
    kib = max(
        resource.getrusage(who).ru_maxrss
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return f"{kib / 2**20:.1f} GiB"
