"""Record files: JSON Lines, a JSON array or CSV in, JSONL or CSV out, every problem as
`FILE:LINE: what is wrong`, and writes that never leave half a file.

    revcurse facts validate facts.jsonl templates.csv facts.json

JSONL holds one object a line; a `.json` file (or any file that opens with `[`) one array
of objects; CSV a header row, then one record a row. What the records mean (facts,
templates, pairs) is up to the reader (revcurse.facts, revcurse.recipes.pairs).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from revcurse.errors import UserError

Records = list[tuple[int, dict[str, Any]]]  # (line number, record)


@dataclass(frozen=True)
class Problem:
    path: str
    line: int  # 0: the file as a whole
    message: str

    def __str__(self) -> str:
        # One line, whatever the values quoted in the message hold
        message = self.message.replace("\r", "\\r").replace("\n", "\\n")
        return f"{self.path}:{self.line}: {message}" if self.line else f"{self.path}: {message}"


SHOWN_PROBLEMS = 10  # a file with hundreds of bad lines is one mistake: show the first few


class DataError(UserError):
    """Bad input: every problem found, each as FILE:LINE: message (the first few shown)."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = [str(p) for p in problems[:SHOWN_PROBLEMS]]
        if len(problems) > SHOWN_PROBLEMS:
            lines.append(f"... and {len(problems) - SHOWN_PROBLEMS} more problems")
        super().__init__("\n".join(lines))


# ---------------------------------------------------------------------------- reading


def text_lines(path: Path) -> list[str]:
    """The file's lines as text; a non-UTF-8 byte is reported with the line it sits on."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError([Problem(str(path), 0, f"cannot read file: {err.strerror}")]) from err
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, 1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as err:
            msg = f"not UTF-8 (byte 0x{line[err.start]:02x} at column {err.start + 1})"
            raise DataError([Problem(str(path), number, msg)]) from err
    text = raw.decode("utf-8").removeprefix("\ufeff")
    if not text.strip():
        raise DataError([Problem(str(path), 1, "empty file: expected at least one record")])
    return text.split("\n")


def read_records(path: str | Path) -> Records:
    """(line number, record) for each record of a JSONL, JSON-array or CSV file."""
    records, problems = read(Path(path))
    if problems:
        raise DataError(problems)
    return records


def read(path: Path) -> tuple[Records, list[Problem]]:
    """Records and the problems of the lines that could not be read, so that the schema
    checks can still report on the rest: the user sees every problem in one go."""
    lines = text_lines(path)
    if path.suffix.lower() == ".csv":
        return _read_csv(path, lines)
    text = "\n".join(lines)
    if path.suffix.lower() == ".json" or _is_array(text):
        return _read_array(path, text)
    return _read_jsonl(path, lines)


def _read_csv(path: Path, lines: list[str]) -> tuple[Records, list[Problem]]:
    problems: list[Problem] = []
    records: Records = []
    rows = csv.reader(io.StringIO("\n".join(lines), newline=""))  # lone \r ends a row too
    header: list[str] | None = None
    try:
        for row in rows:
            number = rows.line_num
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = [cell.strip() for cell in row]
                continue
            if len(row) != len(header):
                problems.append(
                    Problem(str(path), number, f"{len(row)} columns, header has {len(header)}")
                )
                continue
            records.append((number, dict(zip(header, row, strict=True))))
    except csv.Error as err:  # e.g. a quote left open: the rest cannot be read
        problems.append(Problem(str(path), rows.line_num, f"malformed CSV: {err}"))
    if not records and not problems:  # a header alone, or only blank cells
        what = "a header but no records" if header else "expected a header and records"
        problems.append(Problem(str(path), 1, f"empty file: {what}"))
    return records, problems


# Python's JSON reader recurses once a level: thousands of open brackets exhaust its stack
NESTED = "nested too deeply"
# Half a UTF-16 pair: a JSON escape (\ud800) may hold one, UTF-8 text cannot, so a record
# that holds one could never be written again
_SURROGATE = re.compile("[\ud800-\udfff]")


def _not_text(path: Path, number: int, record: dict[str, Any]) -> Problem | None:
    for key, value in record.items():
        if _SURROGATE.search(key) or (isinstance(value, str) and _SURROGATE.search(value)):
            msg = f"field {key!a} holds half a UTF-16 pair (a lone \\ud800-\\udfff escape)"
            return Problem(str(path), number, msg)
    return None


def _is_array(text: str) -> bool:
    """A JSON array spread over lines (JSONL lines that hold arrays are not one)."""
    if not text.lstrip().startswith("["):
        return False
    try:
        return isinstance(json.loads(text), list)
    except (json.JSONDecodeError, RecursionError):
        return False


def _read_array(path: Path, text: str) -> tuple[Records, list[Problem]]:
    """A JSON array of objects; each record's line is where its object opens."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        return [], [Problem(str(path), err.lineno, f"malformed JSON: {err.msg}")]
    except RecursionError:
        return [], [Problem(str(path), 1, f"malformed JSON: {NESTED}")]
    if not isinstance(data, list):
        msg = "expected a JSON array of objects (or JSON Lines: one object a line)"
        return [], [Problem(str(path), 1, msg)]
    if not data:
        return [], [Problem(str(path), 1, "empty file: expected at least one record")]
    decoder, records, problems, at = json.JSONDecoder(), [], [], text.index("[") + 1
    for _ in data:  # decode again, element by element, to learn where each one starts
        while text[at] in " \t\r\n,":
            at += 1
        record, end = decoder.raw_decode(text, at)
        number = text.count("\n", 0, at) + 1
        if isinstance(record, dict) and (problem := _not_text(path, number, record)):
            problems.append(problem)
        elif isinstance(record, dict):
            records.append((number, record))
        else:
            problems.append(Problem(str(path), number, "expected a JSON object"))
        at = end
    return records, problems


def _read_jsonl(path: Path, lines: list[str]) -> tuple[Records, list[Problem]]:
    problems: list[Problem] = []
    records: Records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            problems.append(Problem(str(path), number, f"malformed JSON: {err.msg}"))
            continue
        except RecursionError:
            problems.append(Problem(str(path), number, f"malformed JSON: {NESTED}"))
            continue
        if not isinstance(record, dict):
            problems.append(Problem(str(path), number, "expected a JSON object"))
            continue
        if problem := _not_text(path, number, record):
            problems.append(problem)
            continue
        records.append((number, record))
    first = next(line for line in lines if line.strip())
    if problems and first.strip() == "{":  # pretty-printed JSON: one mistake, not one a line
        msg = "pretty-printed JSON: write JSON Lines (one object a line) or a JSON array"
        return [], [Problem(str(path), 1, msg)]
    return records, problems


# ---------------------------------------------------------------------------- writing


def write_atomic(path: str | Path, text: str) -> None:
    """Write through a temporary file in the same folder, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def as_record(record: Any) -> dict[str, Any]:
    """A dataclass as a record; an optional text left empty (a fact's relation) is omitted."""
    if isinstance(record, dict):
        return record
    return {k: v for k, v in asdict(record).items() if not (k == "relation" and v == "")}


def dumps_records(records: Iterable[Any], fmt: Literal["jsonl", "csv"] = "jsonl") -> str:
    rows = [as_record(r) for r in records]
    if fmt == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    out = io.StringIO()
    names = list(dict.fromkeys(name for row in rows for name in row))
    writer = csv.DictWriter(out, fieldnames=names, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write_records(path: str | Path, records: Iterable[Any]) -> None:
    """JSONL or CSV by the file's suffix."""
    fmt: Literal["jsonl", "csv"] = "csv" if Path(path).suffix.lower() == ".csv" else "jsonl"
    write_atomic(path, dumps_records(records, fmt))
