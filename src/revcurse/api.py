"""revcurse from Python: the commands `compare` and `teach` as functions, beside the CLI.

    import revcurse
    results = revcurse.compare("baseline,in_context", seeds=1)
    taught = revcurse.teach([{"group": "p2d", "a": "Ada Crane", "b": "the pilot"}])

Each takes the command's options as keywords: a field of its config by name (`seeds=1`,
`model="smollm2-135m"`) and a nested one with `__` for the dot (`train__steps=100` is
`--train.steps 100`). They start from the same defaults as the command (a pretrained
model's where `model` is not tiny), are checked the same way (a bad value raises
revcurse.errors.UserError naming its option) and write the same run folder; they print
nothing (the table is `Results.table`).
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rich.console import Console

from revcurse.config import default_values, from_dict, set_leaf
from revcurse.records import write_records

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from revcurse.facts import Fact

C = TypeVar("C")


def configured(cls: type[C], options: Mapping[str, Any]) -> C:
    """`cls`'s config as the command line builds it from these options (`a__b` for `a.b`)."""
    model = str(options.get("model", "tiny"))
    values = default_values(cls, model)
    for key, value in options.items():
        set_leaf(values, tuple(key.split("__")), str(value) if isinstance(value, Path) else value)
    return from_dict(cls, values, source="revcurse")


@dataclass
class Results:
    """A finished run: its folder and its result rows (results.json's `rows`)."""

    folder: Path
    rows: list[dict]

    @property
    def table(self) -> str:
        """The table the command prints (table.txt)."""
        return (self.folder / "table.txt").read_text(encoding="utf-8")

    def value(self, method: str, group: str, direction: str, metric: str = "exact_match") -> float:
        """One cell of the table: its value (pooled over seeds)."""
        for row in self.rows:
            if (row["method"], row["group"], row["direction"], row["metric"]) == (
                method,
                group,
                direction,
                metric,
            ):
                return float(row["value"])
        raise KeyError(f"no row {method} {group} {direction} {metric} in {self.folder}")


def finished_results(folder: Path) -> Results:
    return Results(folder, json.loads((folder / "results.json").read_text())["rows"])


def compare(methods: str | Iterable[str] = "thesis", **options: Any) -> Results:
    """`revcurse compare`: the methods (comma-separated, a list, or a preset: thesis, all)
    on the same world and budget; its results."""
    from revcurse.recipes.compare import CompareConfig, run_compare

    names = methods.split(",") if isinstance(methods, str) else list(methods)
    config = configured(CompareConfig, {"progress": False, **options, "methods": names})
    with contextlib.redirect_stdout(io.StringIO()):  # the table: Results.table
        folder = run_compare(config, Console(stderr=True, quiet=True))
    return finished_results(folder)


@dataclass
class Taught(Results):
    """A taught model (loaded from the run folder, a transformers model folder) and its
    before/after report."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase


def teach(
    facts: str | Path | Iterable[Fact | Mapping[str, str]] | None = None,
    statements: str | Path | Iterable[str] | None = None,
    **options: Any,
) -> Taught:
    """`revcurse teach`: the facts (a file; or records, revcurse.facts.Fact or dicts with its
    fields), or plain statements (a text file, or the sentences), taught both ways by
    `method`; the taught model, loaded, and its report. Without either: the generated
    world."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from revcurse.recipes.teach import TeachConfig, run_teach

    with tempfile.TemporaryDirectory() as scratch:
        if facts is not None and not isinstance(facts, (str, Path)):
            path = Path(scratch) / "facts.jsonl"
            write_records(path, [f if is_dataclass(f) else dict(f) for f in facts])
            facts = path
        if statements is not None and not isinstance(statements, (str, Path)):
            path = Path(scratch) / "statements.txt"
            path.write_text("".join(f"{line}\n" for line in statements), encoding="utf-8")
            statements = path
        given = {"facts": facts} if facts is not None else {}
        given |= {"statements": statements} if statements is not None else {}
        config = configured(TeachConfig, {"progress": False, **options, **given})
        with contextlib.redirect_stdout(io.StringIO()):
            folder = run_teach(config, Console(stderr=True, quiet=True))
    results = finished_results(folder)
    return Taught(
        results.folder,
        results.rows,
        AutoModelForCausalLM.from_pretrained(folder),
        AutoTokenizer.from_pretrained(folder),
    )
