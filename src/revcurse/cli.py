"""The `revcurse` command line: one command per recipe (revcurse.recipes).

    revcurse demo                      # the reversal curse, reproduced in under a minute
    revcurse berglund                  # Berglund et al.'s Experiment 1 from the published files
    revcurse pairs --model smollm2-135m --limit 100   # their Experiment 2 on a local model
    revcurse compare                   # every remedy, same budget, several seeds
    revcurse analyze runs/demo-...     # where the one-way map lives in the trained model
    revcurse teach --facts F --templates T --output-dir taught/   # a model that knows F both ways
    revcurse ask taught/ "Q: Who invented the brass loom? A:"
    revcurse facts generate --out-dir world/
    revcurse facts validate world/facts.jsonl world/templates.jsonl
    revcurse kb add world/facts.jsonl --db kb.sqlite

A command's module is imported only when that command runs, so `revcurse --help`, `facts`
and `kb` never load torch. Bad input ends with one line on stderr (`FILE:LINE: what is
wrong`, or the option and what is wrong with it) and exit status 2, before any model is
loaded; Ctrl-C ends with exit status 130; an unexpected error prints one line and keeps the
traceback in a log file.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import traceback
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from typer.core import TyperGroup

from revcurse.config import CACHE, EXIT_BAD_INPUT
from revcurse.results import publishes

if TYPE_CHECKING:  # typer's own copy of click
    from typer._click import Command, Context, HelpFormatter

# name: (module with its `app`, one-line help for `revcurse --help`)
COMMANDS = {
    "demo": ("revcurse.recipes.demo", "The reversal curse, reproduced on a tiny model (<1 min)."),
    "berglund": ("revcurse.recipes.berglund", "Berglund et al.'s Experiment 1, both ways."),
    "pairs": ("revcurse.recipes.pairs", "Berglund et al.'s Experiment 2 on a local model."),
    "compare": ("revcurse.recipes.compare", "Every remedy on the same world, several seeds."),
    "analyze": ("revcurse.recipes.analyze", "Where the one-way map lives in a demo run."),
    "teach": ("revcurse.recipes.teach", "Teach a model your facts both ways; keep the model."),
    "ask": ("revcurse.recipes.ask", "Ask a saved model a question (closed book or --kb)."),
    "facts": ("revcurse.recipes.facts", "Create and check facts and templates files."),
    "kb": ("revcurse.recipes.kb", "A persistent knowledge base of facts (SQLite)."),
}
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_INTERNAL = 1  # a bug of ours (revcurse.errors: what a user's input causes exits 2)
LOGS = CACHE / "logs"


class LazyGroup(TyperGroup):
    """Subcommands imported on first use; the list and its help need no import at all."""

    def list_commands(self, ctx: Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name not in COMMANDS:
            return None
        module = importlib.import_module(COMMANDS[cmd_name][0])
        command = typer.main.get_command(module.app)
        command.name = cmd_name
        return command

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, text) for name, (_, text) in COMMANDS.items()])


app = typer.Typer(
    cls=LazyGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: every option name stays whole in 80 columns
)


@app.callback()
def revcurse() -> None:
    """Reproduce, explain and fix the LLM reversal curse on your own machine."""


def crash_log(error: BaseException) -> Path:
    """The traceback, written where the user can find it (a temporary folder if the cache
    cannot be written)."""
    text = "".join(traceback.format_exception(error))
    name = f"crash-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.log"
    for folder in (LOGS, Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text, encoding="utf-8")
            return folder / name
        except OSError:
            continue
    return Path("<unwritable>")


def main() -> None:
    """The entry point: `app`, with every error ending in one line and an exit status."""
    if not publishes():  # a distributed launch's other processes: the same run, told once
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.dup2(devnull, sys.stderr.fileno())
    try:
        code = app(prog_name="revcurse", standalone_mode=False)  # an exit status, or None
    except (typer.Abort, KeyboardInterrupt):  # click turns Ctrl-C into Abort
        print("revcurse: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except typer.TyperException as error:  # usage errors: click's own message, exit 2
        error.show()  # type: ignore[attr-defined]
        sys.exit(getattr(error, "exit_code", EXIT_BAD_INPUT))
    except Exception as error:  # a bug of ours: one line here, the traceback in a file
        log = crash_log(error)
        what = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        print(
            f"revcurse: internal error ({what[:200]}), not your input: the traceback is in "
            f"{log}; please report it",
            file=sys.stderr,
        )
        sys.exit(EXIT_INTERNAL)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
