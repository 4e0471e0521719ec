"""Facts, templates and examples: the data every revcurse command reads and writes.

    revcurse facts validate my_facts.jsonl my_templates.csv

A *fact* joins two entities: `a` (a name) and `b` (a description), and belongs to one of
Berglund et al.'s groups: `p2d` (training text puts the name first), `d2p` (description
first) or `both`. A *template* phrases any fact in one direction: `a2b` asks for the
description given the name ("{a}, known far and wide for being" -> " {b}"), `b2a` for the
name given the description ("Known as {b}," -> " {a}"). An *example* is one template filled
with one fact. Files are JSONL (one record a line) or CSV (a header row, then one record a
row); the kind (facts or templates) is told by the fields. Every problem is reported as
`FILE:LINE: what is wrong`, and writes go through a temporary file, so nothing is ever
half-written.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from string import Formatter
from typing import Any, Literal

GROUPS = ("p2d", "d2p", "both")
DIRECTIONS = ("a2b", "b2a")
SPLITS = ("train", "test")
# The direction each group's training text uses; results call it "same", the other "reverse".
# (`both` trains both ways; its a2b side is reported as "same" so its rows line up with p2d.)
SAME_DIRECTION = {"p2d": "a2b", "d2p": "b2a", "both": "a2b"}

Kind = Literal["facts", "templates"]


def words(text: str) -> list[str]:
    """Words and punctuation marks, in order: how answers are compared and text reversed."""
    return re.findall(r"\w+|[^\w\s]", text)


def relation(group: str, direction: str) -> str:
    """'same' when `direction` is the one the group's training text uses, else 'reverse'."""
    return "same" if SAME_DIRECTION[group] == direction else "reverse"


@dataclass(frozen=True)
class Fact:
    group: str
    a: str
    b: str


@dataclass(frozen=True)
class Template:
    direction: str
    split: str
    prompt: str
    completion: str

    def fill(self, fact: Fact, fact_id: int, template_id: int) -> Example:
        return Example(
            fact=fact_id,
            group=fact.group,
            direction=self.direction,
            split=self.split,
            template=template_id,
            prompt=self.prompt.format(a=fact.a, b=fact.b),
            completion=self.completion.format(a=fact.a, b=fact.b),
        )


@dataclass(frozen=True)
class Example:
    """One prompt/completion pair. `fact` and `template` are indices: the examples that share
    group, direction, split and template but differ in fact are each other's alternatives
    in the log-likelihood test."""

    fact: int
    group: str
    direction: str
    split: str
    template: int
    prompt: str
    completion: str

    @property
    def relation(self) -> str:
        return relation(self.group, self.direction)


# ---------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


SHOWN_PROBLEMS = 10  # a file with hundreds of bad lines is one mistake: show the first few


class DataError(Exception):
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


def read_records(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) for each non-blank line of a JSONL file or row of a CSV file."""
    records, problems = _read(Path(path))
    if problems:
        raise DataError(problems)
    return records


def _read(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], list[Problem]]:
    """Records and the problems of the lines that could not be read, so that the schema
    checks can still report on the rest: the user sees every problem in one go."""
    lines = text_lines(path)
    problems: list[Problem] = []
    records: list[tuple[int, dict[str, Any]]] = []
    if path.suffix.lower() == ".csv":
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
                    msg = f"{len(row)} columns, header has {len(header)}"
                    problems.append(Problem(str(path), number, msg))
                    continue
                records.append((number, dict(zip(header, row, strict=True))))
        except csv.Error as err:  # e.g. a quote left open: the rest cannot be read
            problems.append(Problem(str(path), rows.line_num, f"malformed CSV: {err}"))
        if header is not None and not records and not problems:
            problems.append(Problem(str(path), 1, "empty file: a header but no records"))
    else:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                problems.append(Problem(str(path), number, f"malformed JSON: {err.msg}"))
                continue
            if not isinstance(record, dict):
                problems.append(Problem(str(path), number, "expected a JSON object"))
                continue
            records.append((number, record))
    return records, problems


def kind_of(records: list[tuple[int, dict[str, Any]]]) -> Kind:
    """Templates have a prompt; facts have entities."""
    keys = set(records[0][1]) if records else set()
    return "templates" if keys & {"prompt", "completion", "direction"} else "facts"


def _check_fields(
    path: Path, number: int, record: dict[str, Any], required: tuple[str, ...]
) -> list[Problem]:
    problems = []
    for name in required:
        value = record.get(name)
        if name not in record:
            problems.append(Problem(str(path), number, f"missing field '{name}'"))
        elif not isinstance(value, str):
            problems.append(Problem(str(path), number, f"field '{name}' must be a string"))
        elif not value.strip():
            problems.append(Problem(str(path), number, f"empty field '{name}'"))
    for name in sorted(set(record) - set(required)):
        problems.append(
            Problem(str(path), number, f"unknown field '{name}' (expected {', '.join(required)})")
        )
    return problems


def _parse_facts(
    path: Path, records: list[tuple[int, dict[str, Any]]], problems: list[Problem]
) -> list[Fact]:
    required = tuple(f.name for f in fields(Fact))
    facts: list[Fact] = []
    seen_pair: dict[tuple[str, str], int] = {}
    seen_entity: dict[tuple[str, str], int] = {}
    for number, record in records:
        found = _check_fields(path, number, record, required)
        if not found and record["group"] not in GROUPS:
            msg = f"unknown group '{record['group']}' (expected one of {', '.join(GROUPS)})"
            found.append(Problem(str(path), number, msg))
        for name in ("a", "b"):  # an entity is one line of text: a prompt holds it inline
            if not found and any(c in record[name] for c in "\n\r\x00"):
                found.append(Problem(str(path), number, f"field '{name}' holds a line break"))
        if found:
            problems += found
            continue
        fact = Fact(**{name: record[name].strip() for name in required})
        pair = (fact.a.casefold(), fact.b.casefold())
        # An entity named twice would make its questions ambiguous and its alternatives clash.
        clash = [
            (e, seen_entity[e, v]) for e, v in zip("ab", pair, strict=True) if (e, v) in seen_entity
        ]
        if pair in seen_pair:
            problems.append(
                Problem(str(path), number, f"duplicate fact: first on line {seen_pair[pair]}")
            )
        elif clash:
            entity, first = clash[0]
            msg = f"duplicate {entity}={getattr(fact, entity)!r}: first on line {first}"
            problems.append(Problem(str(path), number, msg))
        else:
            seen_pair[pair] = number
            seen_entity[("a", pair[0])] = seen_entity[("b", pair[1])] = number
            facts.append(fact)
    if problems:
        raise DataError(sorted(problems, key=lambda p: p.line))
    return facts


# Which placeholder each side of a template must hold, by direction.
_PLACEHOLDERS = {"a2b": ("a", "b"), "b2a": ("b", "a")}


def _placeholders(text: str) -> list[str] | str:
    """The placeholder names of a template, or what is wrong with it ({a:>2000000}, {a!r})."""
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in Formatter().parse(text)]
    except ValueError as err:
        return str(err)
    for name, spec, conversion in fields:
        if name is not None and (spec or conversion):
            return f"write {{{name}}} alone, without a format spec or conversion"
    return [name for name, _, _ in fields if name is not None]


def _parse_templates(
    path: Path, records: list[tuple[int, dict[str, Any]]], problems: list[Problem]
) -> list[Template]:
    required = tuple(f.name for f in fields(Template))
    templates: list[Template] = []
    seen: dict[tuple[str, str, str], int] = {}
    for number, record in records:
        found = _check_fields(path, number, record, required)
        for name, allowed in (("direction", DIRECTIONS), ("split", SPLITS)):
            if not found and record[name] not in allowed:
                msg = f"unknown {name} '{record[name]}' (expected one of {', '.join(allowed)})"
                found.append(Problem(str(path), number, msg))
        if not found:
            given, wanted = _PLACEHOLDERS[record["direction"]]
            for side, placeholder in (("prompt", given), ("completion", wanted)):
                names = _placeholders(record[side])
                if isinstance(names, str):
                    found.append(Problem(str(path), number, f"bad {side} template: {names}"))
                elif names != [placeholder]:
                    msg = (
                        f"{side} of a {record['direction']} template must hold "
                        f"{{{placeholder}}} exactly once, found "
                        + (", ".join(f"{{{n}}}" for n in names) or "no placeholder")
                    )
                    found.append(Problem(str(path), number, msg))
        if found:
            problems += found
            continue
        template = Template(**{name: record[name] for name in required})
        key = (template.direction, template.prompt, template.completion)
        if key in seen:
            problems.append(
                Problem(str(path), number, f"duplicate template: first on line {seen[key]}")
            )
            continue
        seen[key] = number
        templates.append(template)
    if problems:
        raise DataError(sorted(problems, key=lambda p: p.line))
    return templates


def _of_kind(path: Path, wanted: Kind) -> tuple[list[tuple[int, dict[str, Any]]], list[Problem]]:
    """The file's records, or one line saying it holds the other kind of records."""
    records, problems = _read(path)
    if records and (found := kind_of(records)) != wanted:
        msg = f"this is a {found} file (fields {', '.join(sorted(records[0][1])[:4])}), not a"
        raise DataError([Problem(str(path), records[0][0], f"{msg} {wanted} file: swapped?")])
    return records, problems


def load_facts(path: str | Path) -> list[Fact]:
    return _parse_facts(Path(path), *_of_kind(Path(path), "facts"))


def load_templates(path: str | Path) -> list[Template]:
    return _parse_templates(Path(path), *_of_kind(Path(path), "templates"))


def validate(path: str | Path) -> tuple[Kind, int]:
    """Check a facts or templates file; returns its kind and record count, or raises."""
    records, problems = _read(Path(path))
    kind = kind_of(records)
    parse = _parse_templates if kind == "templates" else _parse_facts
    return kind, len(parse(Path(path), records, problems))


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


def dumps_records(records: Iterable[Any], fmt: Literal["jsonl", "csv"] = "jsonl") -> str:
    rows = [asdict(r) if not isinstance(r, dict) else r for r in records]
    if fmt == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else [], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write_records(path: str | Path, records: Iterable[Any]) -> None:
    """JSONL or CSV by the file's suffix."""
    fmt: Literal["jsonl", "csv"] = "csv" if Path(path).suffix.lower() == ".csv" else "jsonl"
    write_atomic(path, dumps_records(records, fmt))


def expand(
    facts: list[Fact], templates: list[Template], teach_test_phrasings: bool = True
) -> tuple[list[Example], list[Example]]:
    """Fill templates with facts: (train, test) examples.

    Each group trains on the train templates of its own direction(s). Every fact is tested
    on the held-out test templates of both directions. A reverse question is only a fair
    test when the model knows its phrasing from other facts, so with `teach_test_phrasings`
    the `both` group is also trained on the test phrasings (its test rows then measure
    recall of trained text, a ceiling); without it a 0% reverse score is guaranteed by
    construction and says nothing about the curse.
    """
    trained = {"p2d": ("a2b",), "d2p": ("b2a",), "both": DIRECTIONS}
    train, test = [], []
    for fact_id, fact in enumerate(facts):
        for template_id, template in enumerate(templates):
            example = template.fill(fact, fact_id, template_id)
            if template.split == "test":
                test.append(example)
            if template.direction in trained[fact.group] and (
                template.split == "train" or (teach_test_phrasings and fact.group == "both")
            ):
                train.append(example)
    return train, test
