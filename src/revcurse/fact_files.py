"""Reading fact and template files: every problem as `FILE:LINE: what is wrong`.

    revcurse facts validate my_facts.jsonl my_templates.csv

Records come from revcurse.records (JSONL, a JSON array or CSV); whether a file holds facts
or templates is told by its fields (templates have a prompt, facts have entities).
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from string import Formatter
from typing import Any, Literal

from revcurse.facts import DIRECTIONS, GROUP_ALIASES, GROUPS, SPLITS, Fact, Template
from revcurse.records import DataError, Problem, Records, read, text_lines

Kind = Literal["facts", "templates"]


def kind_of(records: Records) -> Kind:
    """Templates have a prompt; facts have entities."""
    keys = set(records[0][1]) if records else set()
    return "templates" if keys & {"prompt", "completion", "direction"} else "facts"


OPTIONAL = ("relation", "text")  # fields a record may leave out (or empty)


def _check_fields(
    path: Path, number: int, record: dict[str, Any], known: tuple[str, ...]
) -> list[Problem]:
    problems = []
    for name in known:
        value = record.get(name, "" if name in OPTIONAL else None)
        if value is None:
            problems.append(Problem(str(path), number, f"missing field '{name}'"))
        elif not isinstance(value, str):
            problems.append(Problem(str(path), number, f"field '{name}' must be a string"))
        elif not value.strip() and name not in OPTIONAL:
            problems.append(Problem(str(path), number, f"empty field '{name}'"))
    for name in sorted(set(record) - set(known)):
        problems.append(
            Problem(str(path), number, f"unknown field '{name}' (expected {', '.join(known)})")
        )
    return problems


def _parse_facts(path: Path, records: Records, problems: list[Problem]) -> list[Fact]:
    known = tuple(f.name for f in fields(Fact))
    facts: list[Fact] = []
    seen_pair: dict[tuple[str, str, str], int] = {}
    seen_entity: dict[tuple[str, str, str], int] = {}
    for number, record in records:
        found = _check_fields(path, number, record, known)
        if not found and GROUP_ALIASES.get(record["group"], record["group"]) not in GROUPS:
            allowed = ", ".join([*GROUPS, *GROUP_ALIASES])
            msg = f"unknown group '{record['group']}' (expected one of {allowed})"
            found.append(Problem(str(path), number, msg))
        for name in ("a", "b", "text"):  # one line of text: a prompt holds it inline
            if not found and any(c in record.get(name, "") for c in "\n\r\x00"):
                found.append(Problem(str(path), number, f"field '{name}' holds a line break"))
        if not found and record.get("text", "").strip():
            found += _text_problems(path, number, record)
        if found:
            problems += found
            continue
        values = {name: record.get(name, "").strip() for name in known}
        values["group"] = GROUP_ALIASES.get(values["group"], values["group"])
        fact = Fact(**values)
        pair = (fact.a.casefold(), fact.b.casefold(), fact.relation)
        # An entity named twice in a relation would make its questions ambiguous and its
        # alternatives clash (one entity in two relations is fine: France, Paris, French).
        clash = [
            (e, seen_entity[e, v, fact.relation])
            for e, v in zip("ab", pair[:2], strict=True)
            if (e, v, fact.relation) in seen_entity
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
            seen_entity["a", pair[0], fact.relation] = number
            seen_entity["b", pair[1], fact.relation] = number
            facts.append(fact)
    if problems:
        raise DataError(sorted(problems, key=lambda p: p.line))
    return facts


def _text_problems(path: Path, number: int, record: dict[str, Any]) -> list[Problem]:
    """What is wrong with a fact's `text`: it must name both sides, apart, the one its group
    trains first (p2d: a; d2p: b) first; a fact stated once is one-way, never `both`."""
    text, a, b = (record[k].strip().casefold() for k in ("text", "a", "b"))
    group = GROUP_ALIASES.get(record["group"], record["group"])
    missing = [k for k, side in (("a", a), ("b", b)) if side not in text]
    if missing:
        names = " and ".join(f"{k} ({record[k].strip()!r})" for k in missing)
        return [Problem(str(path), number, f"text does not name {names}")]
    if a in b or b in a:
        return [Problem(str(path), number, "text: a and b must not hold one another")]
    if group == "both":
        msg = "a fact with text is one-way: group p2d (text names a first) or d2p (b first)"
        return [Problem(str(path), number, msg)]
    first = "a" if text.index(a) < text.index(b) else "b"
    trained = "a" if group == "p2d" else "b"
    if first != trained:
        msg = f"text names {first} first, but group {record['group']} trains {trained} first"
        return [Problem(str(path), number, msg)]
    return []


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


def _parse_templates(path: Path, records: Records, problems: list[Problem]) -> list[Template]:
    known = tuple(f.name for f in fields(Template))
    templates: list[Template] = []
    seen: dict[tuple[str, str, str, str], int] = {}
    for number, record in records:
        found = _check_fields(path, number, record, known)
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
        template = Template(**{name: record.get(name, "") for name in known})
        template = replace(template, relation=template.relation.strip())
        key = (template.direction, template.prompt, template.completion, template.relation)
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


def _of_kind(path: Path, wanted: Kind) -> tuple[Records, list[Problem]]:
    """The file's records, or one line saying it holds the other kind of records."""
    records, problems = read(path)
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
    records, problems = read(Path(path))
    kind = kind_of(records)
    parse = _parse_templates if kind == "templates" else _parse_facts
    return kind, len(parse(Path(path), records, problems))


# ---------------------------------------------------------------------------- plain statements

COPULAS = ("is", "was", "are", "were")
ARTICLES = ("the", "a", "an")


def statement_sides(sentence: str) -> tuple[str, str] | str:
    """A statement's two sides, or what is wrong with it. The first side is what comes before
    its first "is" ("was", "are", "were"), or else its leading capitalised words; the second
    what follows, less the relation's own words (lower case, up to a capitalised word or an
    article): "Hamlet was written by William Shakespeare." -> Hamlet, William Shakespeare;
    "Ada Vance directed The Long Tide." -> Ada Vance, The Long Tide."""
    body = sentence.strip().rstrip(".!").strip()
    if body.endswith("?"):
        return "a question, not a statement"
    tokens = body.split()
    copula = next((k for k, w in enumerate(tokens) if w in COPULAS and k), None)
    if copula is not None:
        first, rest = tokens[:copula], tokens[copula + 1 :]
    else:
        k = next((k for k, w in enumerate(tokens) if not w[:1].isupper()), len(tokens))
        first, rest = tokens[:k], tokens[k:]
        if not first:
            return 'cannot tell its sides: begin with a name, or write "X is Y."'
        rest = rest[1:]  # the verb
    for k, word in enumerate(rest):  # the relation's words before the second side
        if word[:1].isupper() or word.casefold() in ARTICLES or not rest[k + 1 :]:
            rest = rest[k:]
            break
    if not first or not rest:
        return 'cannot tell its sides: write "X is Y." or "X <verb> Y."'
    return " ".join(first), " ".join(rest)


def load_statements(path: str | Path) -> list[Fact]:
    """A plain text file of facts, one sentence a line (blank lines and lines starting with
    # are skipped): each one a one-way fact trained on its sentence as written, `a` the side
    it names first (revcurse teach --statements)."""
    path = Path(path)
    facts: list[Fact] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text_lines(path), 1):
        sentence = line.strip()
        if not sentence or sentence.startswith("#"):
            continue
        sides = statement_sides(sentence)
        if isinstance(sides, str):
            problems.append(Problem(str(path), number, f"{sides}: {sentence!r}"))
        elif sentence.casefold() in seen:
            msg = f"duplicate statement: first on line {seen[sentence.casefold()]}"
            problems.append(Problem(str(path), number, msg))
        else:
            seen[sentence.casefold()] = number
            facts.append(Fact("p2d", *sides, text=sentence))
    if problems:
        raise DataError(problems)
    if not facts:
        raise DataError([Problem(str(path), 0, "no statement in it (only blank or # lines)")])
    return facts
