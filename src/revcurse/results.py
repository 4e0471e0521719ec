"""Results: the run directory, its files and the printed table (rows: revcurse.stats).

Every command writes one run directory, never overwriting an existing one:
    config.yaml     the full config (replay it with --config)
    results.json    {"rows": [{method, group, direction, metric, value, n, facts, ci_low, ci_high}],
                     plus run metadata}
    samples.jsonl   every prompt, target, output and whether it was correct
    table.txt       the table printed at the end
    models/         compare --keep-models: seed<S>-<method>/, each a transformers folder
The directory is assembled under a temporary name and renamed when complete, so a crash
never leaves a half-written run where a finished one is expected.
"""

from __future__ import annotations

import copy
import io
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.table import Table

from revcurse.errors import UserError
from revcurse.facts import GROUP_ALIASES, GROUP_LEGEND
from revcurse.memory import out_of_memory

if TYPE_CHECKING:
    from revcurse.train import TrainResult

# ---------------------------------------------------------------------------- run directory


def default_run_dir(command: str, root: Path = Path("runs")) -> Path:
    return root / f"{command}-{datetime.now():%Y%m%d-%H%M%S}"


class RunDirExists(UserError):
    """The run folder is taken: runs are never overwritten."""


KEPT_MODELS = "models"  # a run folder's models saved by compare --keep-models


def kept_model_dir(run_dir: Path, seed: int, method: str) -> Path:
    """Where `compare --keep-models` saves a method's model of one seed."""
    return run_dir / KEPT_MODELS / f"seed{seed}-{method}"


def check_run_dir(path: Path) -> None:
    """RunDirExists if `path` holds anything; ValueError if it cannot be made (a file where
    a folder is needed): checked before a recipe does any work."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise RunDirExists(f"{path} already exists and is not empty; runs are never overwritten")
    check_writable(path)


def check_writable(folder: Path) -> None:
    """ValueError unless files can be written in `folder` (made first if it is missing)."""
    for where in (folder, *folder.parents):
        if where.exists():
            if not where.is_dir():
                raise UserError(f"{folder}: cannot create it: {where} is a file, not a folder")
            if not os.access(where, os.W_OK | os.X_OK):
                raise UserError(f"{folder}: cannot write there: {where} is not writable")
            return


def publishes() -> bool:
    """Whether this process writes runs and caches: always, but in a distributed launch
    (`accelerate launch`, torchrun: every process runs the same command) only the first."""
    return os.environ.get("RANK", "0") == "0"


KEPT = "partial run kept: "  # the note on an error that left a resumable partial run


@contextmanager
def run_directory(
    path: Path, resumable: bool | Callable[[], bool] = False, partial: Path | None = None
) -> Iterator[Path]:
    """Yields a scratch directory that becomes `path` only if the block finishes. An error
    removes it; so does Ctrl-C, unless the run is `resumable` (its checkpoints are kept; a
    function: asked when it stops, e.g. whether any part of the run is finished).
    `partial`: a killed run's folder, finished in place; whatever happens, it is kept."""
    path = Path(path)
    check_run_dir(path)
    if not publishes():  # the same run on another process: its files are the first's
        with tempfile.TemporaryDirectory(prefix="revcurse-rank-") as elsewhere:
            yield Path(elsewhere)
        return
    if partial is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.partial-"))
    else:
        scratch = Path(partial)
    try:
        yield scratch
    except BaseException as error:
        # Ctrl-C, or running out of memory (revcurse.memory), is no fault of the run: a
        # resumable one is kept, and said so
        stopped = isinstance(error, KeyboardInterrupt) or out_of_memory(error)
        keep = resumable() if callable(resumable) else resumable
        if partial is None and keep and stopped:
            error.add_note(f"{KEPT}{scratch}")
        elif partial is None:
            shutil.rmtree(scratch, ignore_errors=True)
        raise
    if path.exists():
        path.rmdir()  # empty, checked above
    os.replace(scratch, path)


def pyplot() -> Any:
    """matplotlib's pyplot, imported on first use (it is slow to import) with the Agg
    backend: figures are files of the run directory, never windows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def versions() -> dict[str, str]:
    """Library versions, saved beside every result (torch and transformers change numerics)."""
    import torch
    import transformers

    import revcurse

    return {
        "revcurse": revcurse.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_jsonl(path: Path, records: Sequence[dict]) -> None:
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8"
    )


def write_results(
    folder: Path,
    rows: Sequence[dict],
    table: str,
    samples: Sequence[dict] | None,
    **metadata: Any,
) -> None:
    """table.txt, table.md (every metric of `rows`), samples.jsonl (unless None) and
    results.json ({"rows", **metadata, "versions"}): what every recipe leaves in its run
    directory."""
    (folder / "table.txt").write_text(table, encoding="utf-8")
    if rows:
        (folder / "table.md").write_text(markdown_table(rows), encoding="utf-8")
    if samples is not None:
        write_jsonl(folder / "samples.jsonl", samples)
    write_json(folder / "results.json", {"rows": rows, **metadata, "versions": versions()})


def train_record(trained: TrainResult, examples: int) -> dict[str, float]:
    """What results.json keeps of a training run."""
    return {
        "final_loss": trained.losses[-1],
        "steps": len(trained.losses),
        "seconds": trained.seconds,
        "tokens": trained.tokens,
        "flops": trained.flops,
        "examples": examples,
    }


# ---------------------------------------------------------------------------- table

METRICS = ("exact_match", "anywhere", "rank_acc", "rank_chance", "logprob_margin", "p_value")
# A text table's columns: they fit 100 characters with an interval in each of two, never a
# cell over two lines (every metric: table.md and results.json)
SHOWN = ("exact_match", "rank_acc", "rank_chance", "p_value")
HEADERS = {
    "exact_match": "exact match",
    "rank_acc": "rank acc",
    "rank_chance": "chance",
    "p_value": "p",
}


def _cell(row: dict | None) -> str:
    if row is None or row["value"] is None:
        return "-"
    value = row["value"]
    if row["metric"].endswith("p_value"):
        return f"{value:.1e}" if value < 1e-3 else f"{value:.3f}"
    text = f"{value:.2f}"
    if row["ci_low"] is not None:
        text += f" [{row['ci_low']:.2f},{row['ci_high']:.2f}]"
    return text


def _lines(rows: Sequence[dict], metrics: Sequence[str]) -> Iterator[list[str]]:
    """A table's cells: per method, group and direction, those three, n (questions), the
    facts they ask about ("-": not counted) and each metric."""
    keys = dict.fromkeys((r["method"], r["group"], r["direction"]) for r in rows)
    for key in keys:
        by_metric = {
            r["metric"]: r for r in rows if (r["method"], r["group"], r["direction"]) == key
        }
        n = str(max(r["n"] for r in by_metric.values()))
        counted = [r["facts"] for r in by_metric.values() if r.get("facts") is not None]
        facts = str(max(counted)) if counted else "-"
        yield [*key, n, facts, *(_cell(by_metric.get(m)) for m in metrics)]


# What each weight-changing remedy's metric measures (revcurse.remedies.targets), one line
# under every table that shows it
METRIC_LEGEND = {
    "reliability": "the treated facts' reverse, in the phrasings the edit or lesson used",
    "generalization": "the treated facts' reverse, in held-out phrasings, closed book",
    "kept": "the treated facts' trained direction still answered (held-out phrasings)",
    "control_exact_match": "untreated one-way facts' reverse: a placebo, stays at chance",
    "locality": "share of the controls' answers (facts nothing replayed or kept) left unchanged",
    "locality_known": "of those the model had right, the share still right",
    "locality_replayed": "share of the answers left unchanged about facts it may replay or keep",
    "locality_world": "of the real-world facts the start model knew, the share still known",
    "ppl_drift": "perplexity of held-out text after / before the treatment, minus 1",
    "sham_exact_match": "the same treatment shown false pairs: the true reverse (at chance)",
    "sham_generalization": "the same treatment shown false pairs: their reverse, held out",
    "infill_exact_match": "the subject of a held-out trained-direction sentence, masked in place"
    " and filled (its token count given)",
    "wrong_trained_answer": "wrong, and another fact's trained answer (one it learned to give)",
    "wrong_other": "wrong, and not another fact's trained answer",
}
# Their short headers in the sweeps' tables (scripts/sweep_distill.py, sweep_hebbian.py)
EDIT_COLUMNS = [  # (metric, group, header)
    ("generalization", "p2d", "gen p2d"),
    ("generalization", "d2p", "gen d2p"),
    ("reliability", "p2d", "rel p2d"),
    ("reliability", "d2p", "rel d2p"),
    ("kept", "p2d", "kept p2d"),
    ("kept", "d2p", "kept d2p"),
    ("control_exact_match", "p2d", "ctrl p2d"),
    ("control_exact_match", "d2p", "ctrl d2p"),
    ("locality", "untouched", "locality"),
    ("locality_known", "untouched", "loc known"),
    ("locality_world", "world", "loc world"),
    ("sham_exact_match", "p2d", "sham p2d"),
    ("sham_exact_match", "d2p", "sham d2p"),
]


def column_values(rows: Sequence[dict], columns: Sequence[tuple[str, str, str]]) -> list:
    """Each (metric, group, header) column's value among `rows`; None where there is none."""
    values = {(r["metric"], r["group"]): r["value"] for r in rows}
    return [values.get((metric, group)) for metric, group, _ in columns]


def metric_legend(metrics: Sequence[str]) -> list[str]:
    """`metric: what it measures`, for those of `metrics` that need saying."""
    return [f"{m}: {METRIC_LEGEND[m]}" for m in dict.fromkeys(metrics) if m in METRIC_LEGEND]


def _legend(rows: Sequence[dict], metrics: Sequence[str]) -> str | None:
    named = any(r["group"].split("/")[0] in GROUP_ALIASES.values() for r in rows)
    shown = {r["metric"] for r in rows}
    lines = [GROUP_LEGEND] if named else []
    lines += metric_legend([m for m in metrics if m in shown])
    return "\n".join(lines) or None


def _table(title: str, columns: Sequence[str], right: int, caption: str | None) -> Table:
    """A table of left-aligned key columns and `right` right-aligned value columns, drawn
    with rules under the title and header only, so that its width is its cells'."""
    table = Table(
        title=title,
        title_justify="left",
        caption=caption,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for k, name in enumerate(columns):
        kept_right = k >= len(columns) - right
        table.add_column(name, justify="right" if kept_right else "left", no_wrap=True)
    return table


def results_table(rows: Sequence[dict], title: str, metrics: Sequence[str] = SHOWN) -> Table:
    """One line per method, group and direction; one column per metric."""
    headers = [HEADERS.get(m, m) for m in metrics]
    table = _table(
        title,
        ["method", "group", "direction", "n", "facts", *headers],
        len(metrics) + 2,
        _legend(rows, metrics),
    )
    for cells in _lines(rows, metrics):
        table.add_row(*cells)
    return table


def measurements_table(rows: Sequence[dict], title: str) -> Table:
    """One line per method, group, direction and metric: for many metrics, few of them
    measured on each line (a remedy's own measurements)."""
    metrics = [r["metric"] for r in rows]
    columns = ["method", "group", "direction", "metric", "n", "facts", "value"]
    table = _table(title, columns, 3, _legend(rows, metrics))
    for r in rows:
        facts = "-" if r.get("facts") is None else str(r["facts"])
        cells = [r["method"], r["group"], r["direction"], r["metric"], str(r["n"]), facts]
        table.add_row(*cells, _cell(r))
    return table


def markdown_table(rows: Sequence[dict]) -> str:
    """Every row's every metric as a markdown table (table.md: for papers and issues)."""
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    lines = [
        "| " + " | ".join(["method", "group", "direction", "n", "facts", *metrics]) + " |",
        "|" + "---|" * 5 + "---:|" * len(metrics),
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in _lines(rows, metrics)]
    legend = _legend(rows, metrics)
    return "\n".join(lines) + ("\n\n" + legend.replace("\n", "  \n") if legend else "") + "\n"


def render(table: Table) -> str:
    """The table as text at its own width: a cell is never wrapped or cut; its title and
    caption are lines of their own (rich would wrap them to the table's width)."""
    bare = copy.copy(table)
    bare.title = bare.caption = None
    console = Console(width=10_000, record=True, file=io.StringIO())
    console.print(bare)
    body = [line.rstrip() for line in console.export_text().splitlines()]
    while body and not body[-1]:
        body.pop()
    lines = [str(table.title or ""), *body, *([f"\n{table.caption}"] if table.caption else [])]
    return "\n".join(lines if table.title else lines[1:]) + "\n"
