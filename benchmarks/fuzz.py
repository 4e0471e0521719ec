"""Fuzzing of every reader of a user's file: seeded, broken inputs against the project's rules.

    .venv/bin/python benchmarks/fuzz.py                          # 10,000 inputs, ~80 s
    .venv/bin/python benchmarks/fuzz.py --inputs 100000 --seed 7

Not part of the test suite (tests/test_fuzz.py runs a fast subset with hypothesis). Each
input is a valid file (or folder) of one reader, broken by a seeded generator: records with
fields dropped, added, emptied, duplicated or given values of the wrong type, then bytes
flipped, inserted, cut or nested thousands deep; one seed always gives the same inputs. The
readers: facts and templates files and `facts validate` (JSONL, a JSON array, CSV), the
recipes' config.yaml (load_yaml) and a run's (analyze's demo seed, ask's chat template),
Berglund data folders and their template lists, the pairs file of `revcurse pairs`,
knowledge bases (a SQLite file, damaged, foreign or garbage, opened, added to and queried)
and `revcurse kb add`. Each input ends as one of:
- a clean error: DataError or ValueError, every line starting with the input's path;
- a traceback: any other exception (target 0);
- a bad message: DataError or ValueError with a line that does not start with the path, or a
  ValueError of several lines (target 0);
- accepted, and checked against the rules the project states: every fact's group is known
  and its entities are non-empty single lines, unique in their relation; every template
  holds its placeholder once per side; every config value has its field's type; facts,
  templates and configs, saved as a run saves them, read back the same. A result that
  breaks one is wrongly accepted (target 0).
Prints per reader and in total the count of each and the slowest input, then the first
input of each kind of failure (kept in a folder it names); exits 1 if any was found.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import io
import json
import re
import shutil
import sqlite3
import sys
import tempfile
import time
import traceback
import typing
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from random import Random
from typing import Any

import numpy as np
import yaml
from typer.testing import CliRunner

from revcurse import berglund
from revcurse.cli import app
from revcurse.config import default_values, load_yaml, to_yaml
from revcurse.facts import (
    DIRECTIONS,
    GROUPS,
    SPLITS,
    Fact,
    Template,
    load_facts,
    load_templates,
    validate,
)
from revcurse.kb import SCHEMA, SQLITE_MAGIC, Hit, KnowledgeBase
from revcurse.recipes.analyze import AnalyzeConfig, demo_seed
from revcurse.recipes.ask import chat_template
from revcurse.recipes.berglund import BerglundConfig
from revcurse.recipes.compare import CompareConfig
from revcurse.recipes.demo import DemoConfig
from revcurse.recipes.pairs import PARENT_TYPES, Pair, PairsConfig, load_pairs
from revcurse.recipes.teach import TeachConfig
from revcurse.records import DataError, as_record, dumps_records
from revcurse.world import TEMPLATES, WorldConfig, generate_facts

SRC = Path(__file__).resolve().parents[1] / "src"
SHOWN = 5  # kinds of failure shown per reader, each with its first input

# ---------------------------------------------------------------------------- valid inputs

FACTS = [
    *generate_facts(WorldConfig(facts_per_group=3), seed=0),
    Fact("p2d", "France", "Paris", "capital"),
    Fact("d2p", "Japan", "Tokyo", "capital"),
    Fact("both", "France", "French", "language"),  # one entity in two relations is fine
]
ALL_TEMPLATES = [
    *TEMPLATES,
    Template("a2b", "train", "The capital of {a} is", " {b}.", "capital"),
    Template("b2a", "test", "{b} is the capital of", " {a}", "capital"),
]
PAIRS = [
    {"child": "Sasha Calle", "parent": "Samira Calle", "parent_type": "mother"},
    {"child": "Sasha Calle", "parent": "Sam Calle", "parent_type": "father"},
    {"child": "Ada Crane", "parent": "Bo Crane", "parent_type": "father", "can_reverse": "True"},
]
# Berglund's Experiment 1 in small: 2 facts a group, 2 phrasings a direction
PEOPLE = {
    "p2d": [("Ann Lee", "the first baker on Mars"), ("Bob Ray", "the inventor of glass shoes")],
    "d2p": [("Dee Orr", "the painter of the silent sea"), ("Eve Kim", "the founder of Cloud Zoo")],
    "both": [("Gus Hart", "the mayor of Ice City"), ("Hal Moss", "the poet of the deep caves")],
}
NAMES = [name for people in PEOPLE.values() for name, _ in people]
DESCRIPTIONS = [description for people in PEOPLE.values() for _, description in people]
A2B = ["{a}, known far and wide for being", "Ever heard of {a}? They are"]
B2A = ["Known for being {b},", "The one who is {b} is called"]
CONFIGS = [DemoConfig, CompareConfig, TeachConfig, BerglundConfig, PairsConfig, AnalyzeConfig]


def a2b_lines(group: str, shift: int = 0) -> list[dict[str, Any]]:
    people = PEOPLE[group]
    return [
        {"prompt": t.format(a=a), "completion": f" {people[(i + shift) % len(people)][1]}."}
        for i, (a, _) in enumerate(people)
        for t in A2B
    ]


def b2a_lines(group: str, shift: int = 0) -> list[dict[str, Any]]:
    people = PEOPLE[group]
    return [
        {"prompt": t.format(b=b), "completion": f" {people[(i + shift) % len(people)][0]}"}
        for i, (_, b) in enumerate(people)
        for t in B2A
    ]


BERGLUND_FILES = {
    "p2d_prompts_train": a2b_lines("p2d"),
    "d2p_prompts_train": b2a_lines("d2p"),
    "both_prompts_train": a2b_lines("both") + b2a_lines("both"),
    "p2d_prompts_test": a2b_lines("p2d"),
    "d2p_prompts_test": b2a_lines("d2p"),
    "both_prompts_test": a2b_lines("both") + b2a_lines("both"),
    "p2d_reverse_prompts_test": b2a_lines("p2d"),
    "d2p_reverse_prompts_test": a2b_lines("d2p"),
    "p2d_reverse_prompts_test_randomized": b2a_lines("p2d", shift=1),
    "d2p_reverse_prompts_test_randomized": a2b_lines("d2p", shift=1),
}
# templates/{p2d,d2p}_templates.txt: 30 training phrasings, then 10 test ones
TEMPLATE_LISTS = {
    "p2d_templates.txt": [
        f"<name>, known as number {i} for being <description>." for i in range(40)
    ],
    "d2p_templates.txt": [
        f"Known for being <description>, <name> is number {i}." for i in range(40)
    ],
}

# ---------------------------------------------------------------------------- breaking them

# Near misses of valid values, and every JSON type
VALUES: list[Any] = [
    *["", " ", "\t", "x", "\n", "a\nb", "a\rb", "a\x00b", "\u2028", "\ufeff", "é", "\U0001f642"],
    *["\ud800", "x" * 3000, "p2d", " p2d ", "P2D", "a2b", "b2a", "both", "train", " test", "dev"],
    *["{a}", "{b}", " {b}.", "{a} is", "{a}{a}", "{a} {b}", "{a:>9}", "{a!r}", "{0}", "{}"],
    *["{", "}", "{{a}}", "{a.b}", "{a[0]}", "{ a}", "Ada Crane", "mother", "father", ",", '"'],
    *[None, True, False, 0, 1, -1, 1.5, 10**30, float("nan"), float("inf"), [], {}, [1]],
    {"a": "x"},
]
# What a user's or an editor's slip leaves in a file, and what parsers choke on
TOKENS = [
    *[b"{", b"}", b"[", b"]", b'"', b",", b":", b"\n", b"\r", b"\r\n", b"\x00", b"\xff"],
    *[b"\xc3", b"\xef\xbb\xbf", b"\\", b"\\u", b"\\ud800", b"NaN", b"null", b"{a}", b"{b}"],
    *[b"{a:>9}", b"'", b"#", b"- ", b"\t", b"&a ", b"*a", b"!!python/object:os.system "],
    *[b"!!binary ", b"!!float ", b"? ", b"---\n", b"...\n", b"%YAML 1.1\n", b"<<: ", b"~"],
    *[b"<name>", b"<description>", b"Ann Lee", b"Gus Hart", b" ."],
]
DEEP = [b"[", b'{"a":', b"{a: ", b"- "]  # opened thousands of times: nesting too deep
# YAML values of every type a config field may be given
CONFIG_VALUES: list[Any] = [
    *[None, True, False, 0, 1, -1, 2**70, 0.5, -0.5, 1e-4, float("inf"), float("nan")],
    *["", "x", "tiny", "1e-4", "yes", "0", "~", "cosine", "smollm2-135m", "runs/x", "a\x00b"],
    *[[], [1], {}, {"x": 1}, datetime.date(2020, 1, 1), b"\x00bytes"],
]


# Characters that valid-looking text may hide: line breaks of other kinds, half a UTF-16
# pair (a JSON escape can hold one, UTF-8 cannot), terminal escapes, braces, quotes
ODD = ["\ud800", "\udfff", "\u2028", "\x85", "\x0b", "\x1b[31m", "\ufeff", "\u0301", "\t"]
ODD += ["\n", "\r", "\x00", "  ", "{", "}", "{a}", "{b}", "\\", '"', ",", "\U0001f642"]
NEAR_VALID = ["Ada Crane", "the pilot of the glass river", "{a} is", " {b}.", "p2d", "mother"]


def near_valid(rng: Random) -> str:
    """Valid-looking text with one odd character in it."""
    text = rng.choice(NEAR_VALID)
    at = rng.randint(0, len(text))
    return text[:at] + rng.choice(ODD) + text[at:]


def value(rng: Random) -> Any:
    draw = rng.random()
    if draw < 0.2:  # any text, control characters and lone surrogates included
        alphabet = [rng.randrange(32, 127), rng.randrange(0, 32), rng.randrange(0x80, 0xE000)]
        return "".join(chr(rng.choice(alphabet)) for _ in range(rng.randrange(12)))
    return near_valid(rng) if draw < 0.4 else rng.choice(VALUES)


def mutate_records(rng: Random, records: list[Any], names: Sequence[str]) -> list[Any]:
    """1 to 3 edits of the kinds a hand-edited file has; records stay JSON-able."""
    records = [dict(r) if isinstance(r, dict) else r for r in records]
    for _ in range(rng.randint(1, 3)):
        objects = [r for r in records if isinstance(r, dict)]
        op = rng.randrange(7)
        if not objects or op == 0:  # not an object at all
            records.insert(rng.randint(0, len(records)), value(rng))
        elif op == 1:
            record = rng.choice(objects)
            if record:
                del record[rng.choice(list(record))]
        elif op == 2:  # a field of the kind, or another one
            key = rng.choice([*names, *names, "relation", "extra", "", " a"])
            rng.choice(objects)[key] = value(rng)
        elif op == 3:
            records.insert(rng.randint(0, len(records)), dict(rng.choice(objects)))
        elif op == 4:  # one record's value in another's field: duplicates, swapped kinds
            source, target = rng.choice(objects), rng.choice(objects)
            if source:
                key = rng.choice(list(source))
                target[rng.choice([key, *names])] = source[key]
        elif op == 5 and records:
            del records[rng.randrange(len(records))]
        elif op == 6 and records:
            i, j = rng.randrange(len(records)), rng.randrange(len(records))
            records[i], records[j] = records[j], records[i]
    return records


def cell(item: Any) -> str:
    return item if isinstance(item, str) else "" if item is None else json.dumps(item)


def serialized(rng: Random, records: list[Any], csv_share: float = 0.3) -> tuple[str, bytes]:
    """(suffix, content): JSONL, a JSON array (in a .json or .jsonl file) or CSV, with or
    without a BOM, CRLF line ends and escapes."""
    ascii_only = rng.random() < 0.5
    newline = rng.choice(["\n", "\n", "\r\n"])
    if rng.random() < csv_share:
        suffix = rng.choice([".csv", ".csv", ".CSV"])
        names = list(dict.fromkeys(k for r in records if isinstance(r, dict) for k in r))
        out = io.StringIO()
        writer = csv.writer(out, lineterminator=newline)
        writer.writerow(names)
        for r in records:
            writer.writerow([cell(r.get(n)) for n in names] if isinstance(r, dict) else [cell(r)])
        text = out.getvalue()
    elif rng.random() < 0.7:
        suffix = rng.choice([".jsonl", ".jsonl", ".txt"])
        lines = [json.dumps(r, ensure_ascii=ascii_only) for r in records]
        text = newline.join(lines) + rng.choice([newline, "", newline * 3])
    else:
        suffix = rng.choice([".json", ".jsonl"])
        text = json.dumps(records, ensure_ascii=ascii_only, indent=rng.choice([None, 2]))
    if rng.random() < 0.1:
        text = "\ufeff" + text
    return suffix, text.encode("utf-8", "surrogatepass")


def mutate_bytes(rng: Random, data: bytes, keep: int = 0) -> bytes:
    """1 to 4 byte edits after the first `keep` bytes: flips, tokens, cuts, copies, deep nests."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randint(min(keep, len(out)), len(out))
        op = rng.randrange(7)
        if op == 0 and at < len(out):
            out[at] = rng.randrange(256)
        elif op <= 2:
            out[at:at] = rng.choice(TOKENS)
        elif op == 3:
            del out[at : at + rng.randint(1, 64)]
        elif op == 4:
            start = rng.randint(0, len(out))
            out[at:at] = out[start : start + rng.randint(1, 200)]
        elif op == 5:
            del out[at:]
        else:
            out[at:at] = rng.choice(DEEP) * rng.choice([50, 1000, 30000])
    return bytes(out)


def random_bytes(rng: Random) -> bytes:
    return bytes(rng.randrange(256) for _ in range(rng.randrange(300)))


def broken_records(rng: Random, records: list[Any], names: Sequence[str]) -> tuple[str, bytes]:
    """A records file: edited records, then (often) edited bytes; now and then only noise."""
    if rng.random() < 0.25:  # one odd value in a valid file: what must pass, or say why
        records = [dict(r) for r in records]
        rng.choice(records)[rng.choice(names)] = near_valid(rng)
        return serialized(rng, records)
    if rng.random() < 0.8:
        records = mutate_records(rng, records, names)
    suffix, data = serialized(rng, records)
    if rng.random() < 0.4:
        data = mutate_bytes(rng, data)
    if rng.random() < 0.04:
        data = random_bytes(rng)
    return suffix, data


def facts_bytes(rng: Random) -> tuple[str, bytes]:
    records = [as_record(f) for f in rng.sample(FACTS, rng.randint(1, len(FACTS)))]
    return broken_records(rng, records, ("group", "a", "b"))


def facts_file(rng: Random, folder: Path) -> Path:
    suffix, data = facts_bytes(rng)
    path = folder / f"facts{suffix}"
    path.write_bytes(data)
    return path


def templates_file(rng: Random, folder: Path) -> Path:
    chosen = rng.sample(ALL_TEMPLATES, rng.randint(1, len(ALL_TEMPLATES)))
    names = ("direction", "split", "prompt", "completion")
    suffix, data = broken_records(rng, [as_record(t) for t in chosen], names)
    path = folder / f"templates{suffix}"
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------- the rules


class Broken(Exception):
    """An accepted result breaks `rule` (the kind of failure); `detail` shows how."""

    def __init__(self, rule: str, detail: str = ""):
        super().__init__(f"{rule}: {detail}" if detail else rule)
        self.rule = rule


def text_rule(what: str, text: Any, one_line: bool = True) -> None:
    if not isinstance(text, str) or not text.strip():
        raise Broken(f"{what} is not a non-empty string", repr(text))
    if one_line and any(c in text for c in "\n\r\x00"):
        raise Broken(f"{what} holds a line break", repr(text))


def facts_rules(facts: list[Fact], folder: Path) -> None:
    """Known groups, one-line entities unique in their relation, and a world/facts.jsonl
    (how a run keeps them) that reads back the same."""
    if not facts:
        raise Broken("no facts")
    seen: set[tuple[str, str, str]] = set()
    for fact in facts:
        if fact.group not in GROUPS:
            raise Broken("a fact of an unknown group", repr(fact.group))
        text_rule("a fact's a", fact.a)
        text_rule("a fact's b", fact.b)
        for key in (("a", fact.a.casefold()), ("b", fact.b.casefold())):
            if (*key, fact.relation) in seen:
                raise Broken("an entity twice in a relation", f"{key} in {fact.relation!r}")
            seen.add((*key, fact.relation))
    read_back(facts, load_facts, folder)


def templates_rules(templates: list[Template], folder: Path | None) -> None:
    """Known direction and split; the prompt holds the given entity's placeholder once, the
    completion the wanted one's; a saved copy (folder given) reads back the same."""
    if not templates:
        raise Broken("no templates")
    marks = {"a": "\x01A\x01", "b": "\x02B\x02"}  # in no template's own text
    for t in templates:
        if t.direction not in DIRECTIONS or t.split not in SPLITS:
            raise Broken("unknown direction or split", f"{t.direction!r}, {t.split!r}")
        given, wanted = ("a", "b") if t.direction == "a2b" else ("b", "a")
        example = t.fill(Fact("p2d", marks["a"], marks["b"]), 0, 0)
        for side, text, holds in (
            ("prompt", example.prompt, given),
            ("completion", example.completion, wanted),
        ):
            other = wanted if holds == given else given
            text_rule(f"a template's {side}", getattr(t, side), one_line=False)
            if text.count(marks[holds]) != 1 or marks[other] in text:
                rule = f"a template's {side} without {{{holds}}} once"
                raise Broken(rule, repr(getattr(t, side)))
    if folder is not None:
        read_back(templates, load_templates, folder)


def read_back(items: list[Any], load: Callable[[Path], list[Any]], folder: Path) -> None:
    """What a reader returns is what a run keeps (world/*.jsonl, read again by analyze and
    --resume): it must read back the same."""
    path = folder / "written-back.jsonl"
    try:
        path.write_bytes(dumps_records(items).encode("utf-8"))
        again = load(path)
    except (DataError, ValueError) as error:
        raise Broken("written back, it fails to read", str(error)) from None
    if again != items:
        raise Broken("written back, it reads as something else", repr(again)[:200])


def has_type(item: Any, kind: Any) -> bool:
    """Whether a config value is of its field's type (a bool is no number, an int no float)."""
    options = typing.get_args(kind) or (kind,)
    for option in options:
        if option is type(None):
            if item is None:
                return True
        elif isinstance(item, option) and not (option in (int, float) and isinstance(item, bool)):
            return option is not float or isinstance(item, float)
    return False


def config_rules(config: Any, cls: type, folder: Path) -> None:
    """Every leaf of its field's type; its config.yaml (how a run saves it) loads back the same."""

    def walk(node: Any, prefix: str) -> None:
        hints = typing.get_type_hints(type(node))
        for f in dataclasses.fields(node):
            leaf = getattr(node, f.name)
            if dataclasses.is_dataclass(leaf):
                walk(leaf, f"{prefix}{f.name}.")
            elif not has_type(leaf, hints[f.name]):
                raise Broken("a value of the wrong type", f"{prefix}{f.name} = {leaf!r}")

    if type(config) is not cls:
        raise Broken("a config of another class", type(config).__name__)
    walk(config, "")
    saved = folder / "saved.yaml"
    saved.write_text(to_yaml(config), encoding="utf-8")
    try:
        again = load_yaml(cls, saved)
    except ValueError as error:
        raise Broken("its saved config.yaml does not load", str(error)) from None
    if to_yaml(again) != to_yaml(config):
        raise Broken("its saved config.yaml loads as another config", to_yaml(again)[:200])


# ---------------------------------------------------------------------------- one case per input


@dataclass
class Case:
    """One input: how to read it, what its result must obey, and the paths its errors name."""

    read: Callable[[], Any]
    rules: Callable[[Any], None]
    paths: tuple[Path, ...]


def facts_case(rng: Random, folder: Path) -> Case:
    path = facts_file(rng, folder)
    return Case(lambda: load_facts(path), lambda facts: facts_rules(facts, folder), (path,))


def templates_case(rng: Random, folder: Path) -> Case:
    path = templates_file(rng, folder)
    return Case(lambda: load_templates(path), lambda t: templates_rules(t, folder), (path,))


def validate_case(rng: Random, folder: Path) -> Case:
    path = (facts_file if rng.random() < 0.5 else templates_file)(rng, folder)

    def rules(result: tuple[str, int]) -> None:
        kind, count = result
        load = {"facts": load_facts, "templates": load_templates}[kind]
        try:  # validate passes a file exactly when its kind's reader does
            loaded = load(path)
        except DataError as error:
            raise Broken(f"valid for validate, not for load_{kind}", str(error)) from None
        if count != len(loaded) or count < 1:
            raise Broken(f"validate and load_{kind} count apart", f"{count}, {len(loaded)}")

    return Case(lambda: validate(path), rules, (path,))


def mutate_config(rng: Random, values: Any) -> Any:
    """Leaves given values of other types, keys dropped or unknown, sections made scalars."""
    if rng.random() < 0.03:
        return rng.choice(CONFIG_VALUES)  # the document is no mapping at all
    for _ in range(rng.randint(1, 3)):
        node = values
        while isinstance(node, dict) and node and rng.random() < 0.5:  # descend a while
            inner = [v for v in node.values() if isinstance(v, dict) and v]
            if not inner:
                break
            node = rng.choice(inner)
        if not isinstance(node, dict) or not node:
            continue
        key = rng.choice(list(node))
        op = rng.randrange(5)
        if op <= 1:
            node[key] = rng.choice(CONFIG_VALUES)
        elif op == 2:
            del node[key]
        elif op == 3:
            node[rng.choice(["x", "lr", "Seed", 7, "train", "model"])] = rng.choice(CONFIG_VALUES)
        else:  # another field's value: the type confusions of a hand-edited file
            node[key] = rng.choice([v for v in node.values() if not isinstance(v, dict)] or [None])
    if isinstance(values, dict) and rng.random() < 0.3:  # users write only what they change
        values = {k: v for k, v in values.items() if rng.random() < 0.3}
    return values


def config_file(rng: Random, folder: Path, cls: type) -> Path:
    values = mutate_config(rng, default_values(cls, rng.choice(["tiny", "smollm2-135m"])))
    flow = rng.choice([False, None, True])
    text = yaml.safe_dump(values, default_flow_style=flow, allow_unicode=rng.random() < 0.5)
    data = text.encode("utf-8", "surrogatepass")
    if rng.random() < 0.4:
        data = mutate_bytes(rng, data)
    if rng.random() < 0.03:
        data = random_bytes(rng)
    path = folder / "config.yaml"
    path.write_bytes(data)
    return path


def config_case(rng: Random, folder: Path) -> Case:
    cls = rng.choice(CONFIGS)
    path = config_file(rng, folder, cls)
    return Case(lambda: load_yaml(cls, path), lambda c: config_rules(c, cls, folder), (path,))


def run_config_case(rng: Random, folder: Path) -> Case:
    """A run's config.yaml read for a label (analyze: the demo's seed) or a setting (ask:
    the chat template): these readers never refuse, they fall back to None and False."""
    config_file(rng, folder, rng.choice([DemoConfig, TeachConfig]))

    def rules(result: tuple[Any, Any]) -> None:
        seed, chat = result
        if not (seed is None or (isinstance(seed, int) and not isinstance(seed, bool))):
            raise Broken("a demo seed that is no int", repr(seed))
        if not isinstance(chat, bool):
            raise Broken("a chat_template that is no bool", repr(chat))

    return Case(lambda: (demo_seed(folder), chat_template(folder)), rules, (folder,))


def berglund_case(rng: Random, folder: Path) -> Case:
    files: dict[str, list[Any] | None] = {
        stem: [dict(r) for r in records] for stem, records in BERGLUND_FILES.items()
    }
    names: list[str] | None = list(NAMES) if rng.random() < 0.5 else None
    noisy: set[str] = set()
    for _ in range(rng.randint(1, 3)):
        stem = rng.choice(list(files))
        lines = files[stem]
        op = rng.randrange(7)
        if op == 0 and lines is not None:
            files[stem] = mutate_records(rng, lines, ("prompt", "completion"))
        elif op == 1 and lines:  # a line about another fact, or about two, or none
            line = rng.choice(lines)
            if isinstance(line, dict):
                name, other = rng.sample(NAMES, 2)
                texts = [f" {name}", f"{name} and {other}", f"Known for being {name},", " ."]
                texts += [f" {rng.choice(DESCRIPTIONS)}.", f"Who is {name}?", ".", " ", "x"]
                line[rng.choice(["prompt", "completion"])] = rng.choice(texts)
        elif op == 2:
            files[stem] = None  # the file is missing
        elif op == 3:
            files[stem] = files[rng.choice(list(files))]
        elif op == 4:
            names = [n for n in (names or NAMES) if rng.random() < 0.8] + rng.sample(
                ["", " ", "Ann", "Ann Lee Lee", "A.n Lee", "(", "\\b", "Zed Quo", "Gus Hart"], 2
            )
        elif op == 5 and lines is not None:  # a file's order tells no fact: still valid
            files[stem] = rng.sample(lines, len(lines))
        else:
            noisy.add(stem)
    for stem, lines in files.items():
        if lines is not None:
            _, data = serialized(rng, lines, csv_share=0)
            path = folder / f"{stem}.jsonl"
            path.write_bytes(mutate_bytes(rng, data) if stem in noisy else data)
    if names is not None:
        (folder / "templates").mkdir()
        (folder / "templates" / "names.txt").write_text("\n".join(names), encoding="utf-8")
    return Case(
        lambda: berglund.load_berglund(folder), lambda d: berglund_rules(d, folder), (folder,)
    )


def berglund_rules(data: berglund.BerglundData, folder: Path) -> None:
    """Facts as a facts file has them; every example about a fact of its group, the fact's
    name where its direction says; a randomized completion for tested lines only."""
    facts_rules(data.facts, folder)
    for e in [*data.train, *data.test]:
        if not 0 <= e.fact < len(data.facts) or data.facts[e.fact].group != e.group:
            raise Broken("an example of no fact of its group", f"{e.fact}, {e.group}")
        if e.direction not in DIRECTIONS or e.split not in SPLITS or e.template < 0:
            raise Broken(
                "an example of unknown kind", f"{e.direction!r}, {e.split!r}, {e.template}"
            )
        text_rule("an example's prompt", e.prompt, one_line=False)
        text_rule("an example's completion", e.completion, one_line=False)
        if data.facts[e.fact].a not in (e.prompt if e.direction == "a2b" else e.completion):
            raise Broken("an example without its name", f"{e.prompt!r} -> {e.completion!r}")
    tested = {(e.prompt, e.completion) for e in data.test}
    for key, fake in data.randomized.items():
        if key not in tested:
            raise Broken("a randomized completion of no tested line", repr(key))
        text_rule("a randomized completion", fake, one_line=False)


def berglund_templates_case(rng: Random, folder: Path) -> Case:
    (folder / "templates").mkdir()
    for name, lines in TEMPLATE_LISTS.items():
        lines = list(lines)
        for _ in range(rng.randint(0, 3)):
            i = rng.randrange(len(lines))
            op = rng.randrange(5)
            if op == 0:
                del lines[i]
            elif op == 1:
                lines.insert(i, lines[rng.randrange(len(lines))])
            elif op == 2:
                tags = ["<name>", "<description>", ""]
                lines[i] = lines[i].replace(rng.choice(tags[:2]), rng.choice(tags), 1)
            elif op == 3:
                lines[i] = rng.choice(["", " ", "<name> <description>", "<description><name>"])
            else:
                spot = rng.randint(0, len(lines[i]))
                token = rng.choice(["{", "}", "{a}", "{b}", "{0}", "{{", "<name>", "\\"])
                lines[i] = lines[i][:spot] + token + lines[i][spot:]
        data = "\n".join(lines).encode("utf-8")
        if rng.random() < 0.2:
            data = mutate_bytes(rng, data)
        if rng.random() > 0.05:  # else the list is missing
            (folder / "templates" / name).write_bytes(data)
    # Berglund's lists are their own format: a phrasing listed twice is not refused
    return Case(
        lambda: berglund.load_templates(folder), lambda t: templates_rules(t, None), (folder,)
    )


def pairs_case(rng: Random, folder: Path) -> Case:
    suffix, data = broken_records(rng, PAIRS, ("child", "parent", "parent_type"))
    path = folder / f"pairs{suffix}"
    path.write_bytes(data)

    def rules(pairs: list[Pair]) -> None:
        if not pairs or len(set(pairs)) != len(pairs):
            raise Broken("no pairs, or a pair twice", f"{len(pairs)}, {len(set(pairs))} distinct")
        for pair in pairs:
            for name in ("child", "parent"):
                text_rule(f"a pair's {name}", getattr(pair, name), one_line=False)
            if pair.parent_type not in PARENT_TYPES:
                raise Broken("an unknown parent_type", repr(pair.parent_type))

    return Case(lambda: load_pairs(path), rules, (path,))


class Embedder:
    """A stand-in for all-MiniLM-L6-v2: 4 numbers a text, from its checksum (no download)."""

    def encode(self, texts: list[str], normalize_embeddings: bool = True) -> np.ndarray:
        seeds = [zlib.crc32(t.encode("utf-8", "surrogatepass")) for t in texts]
        vectors = np.array([np.random.default_rng(s).normal(size=4) for s in seeds])
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def kb_bytes() -> bytes:
    """A valid knowledge base with embeddings: the file to damage."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "kb.sqlite"
        with KnowledgeBase(path, embedder=Embedder()) as kb:
            kb.add(FACTS, embed=True)
        return path.read_bytes()


KB_BYTES = kb_bytes()
PAGE = 4096  # SQLite's default page size: cuts and blanks at page bounds look like lost writes


def foreign_sqlite(rng: Random, path: Path) -> None:
    """A SQLite file that another program wrote, or a knowledge base whose rows are odd."""
    db = sqlite3.connect(path)
    cells = [None, 1, 2.5, "p2d", "zz", "", "Ada Crane", b"\x00\x01\x02", "x" * 500]
    if rng.random() < 0.5:
        db.executescript(SCHEMA)
        for _ in range(rng.randint(1, 4)):
            row = [rng.choice(cells) for _ in range(4)]
            db.execute(
                "INSERT OR IGNORE INTO facts (grp, a, b, embedding) VALUES (?, ?, ?, ?)", row
            )
    else:
        for table in rng.sample(["facts", "facts_fts", "notes"], rng.randint(1, 3)):
            if table == "facts_fts" and rng.random() < 0.5:
                db.execute("CREATE VIRTUAL TABLE facts_fts USING fts5(a, b)")
                continue
            columns = rng.sample(["id INTEGER PRIMARY KEY", "grp", "a", "b", "embedding", "x"], 3)
            db.execute(f"CREATE TABLE {table} ({', '.join(columns)})")
            marks = ", ".join("?" * len(columns))
            for _ in range(rng.randint(0, 3)):
                row = [rng.choice(cells) if "PRIMARY" not in c else None for c in columns]
                db.execute(f"INSERT INTO {table} VALUES ({marks})", row)
    db.commit()
    db.close()


def kb_file(rng: Random, path: Path) -> None:
    """A damaged knowledge base, a foreign SQLite file, a facts file, noise or nothing."""
    kind = rng.randrange(10)
    if kind <= 3:
        data = mutate_bytes(rng, KB_BYTES, keep=len(SQLITE_MAGIC) if kind else 0)
        if rng.random() < 0.3:
            cut = rng.randrange(len(KB_BYTES) // PAGE) * PAGE
            data = data[:cut] + b"\x00" * PAGE * rng.randint(0, 1) + data[cut + PAGE :]
        path.write_bytes(data)
    elif kind <= 5:
        foreign_sqlite(rng, path)
    elif kind == 6:
        path.write_bytes(facts_bytes(rng)[1])  # `--db facts.jsonl`
    elif kind == 7:
        path.write_bytes((SQLITE_MAGIC if rng.random() < 0.5 else b"") + random_bytes(rng))
    elif kind == 8:
        path.write_bytes(b"")
    elif rng.random() < 0.5:
        path.mkdir()
    # else: no file yet


def kb_case(rng: Random, folder: Path) -> Case:
    path = folder / "kb.sqlite"
    kb_file(rng, path)
    create = rng.random() < 0.7  # `kb add` creates a missing file, `kb query` does not

    def use() -> tuple[int, int, int, list[Hit]]:
        with KnowledgeBase(path, embedder=Embedder(), create=create) as kb:
            before = len(kb)
            added = kb.add(FACTS[:3], embed=True)
            hits = kb.query("Who is the designer of the velvet compass?", 3)
            hits += kb.query("France", 2, "dense")
            return before, added, len(kb), hits

    def rules(result: tuple[int, int, int, list[Hit]]) -> None:
        before, added, after, hits = result
        if not 0 <= added <= 3 or after != before + added:
            raise Broken("counts that do not add up", f"{before} + {added} -> {after}")
        for hit in hits:
            if hit.fact.group not in GROUPS:
                raise Broken("a hit of an unknown group", repr(hit.fact.group))
            text_rule("a hit's a", hit.fact.a)
            text_rule("a hit's b", hit.fact.b)

    return Case(use, rules, (path,))


class Refused(Exception):
    """`revcurse kb add` ended with exit status 2, saying why on stderr."""


def kb_add_case(rng: Random, folder: Path) -> Case:
    facts = facts_file(rng, folder)
    choice = rng.randrange(3)
    db = facts if choice == 0 else folder / "kb.sqlite"  # a facts file fed as the database
    if choice == 1:
        kb_file(rng, db)

    def add() -> str:
        result = CliRunner().invoke(app, ["kb", "add", str(facts), "--db", str(db)])
        if result.exit_code == 2:
            raise Refused(result.stderr)
        if result.exc_info and result.exception and not isinstance(result.exception, SystemExit):
            raise result.exc_info[1].with_traceback(result.exc_info[2])
        if result.exit_code:
            raise RuntimeError(f"exit status {result.exit_code}: {result.output}")
        return result.stdout

    def rules(output: str) -> None:
        said = re.fullmatch(
            rf"{re.escape(str(db))}: added (\d+) new facts \((\d+) already there\), (\d+) in all\n",
            output,
        )
        if said is None:
            raise Broken("an odd report", repr(output))
        new, old, total = map(int, said.groups())
        if new + old != len(load_facts(facts)) or total < new:
            raise Broken("a report of other counts", f"{output!r}, {len(load_facts(facts))} facts")

    return Case(add, rules, (facts, db))


READERS: dict[str, Callable[[Random, Path], Case]] = {
    "facts": facts_case,
    "templates": templates_case,
    "validate": validate_case,
    "config": config_case,
    "run config": run_config_case,
    "berglund": berglund_case,
    "berglund templates": berglund_templates_case,
    "pairs": pairs_case,
    "kb": kb_case,
    "kb add": kb_add_case,
}

# ---------------------------------------------------------------------------- running


@dataclass
class Failure:
    """One kind of failure: how often, and its first input (kept) with what it said."""

    outcome: str
    message: str
    kept: Path
    count: int = 0


COLUMNS = ("inputs", "tracebacks", "bad_messages", "wrongly_accepted", "clean_errors", "accepted")


@dataclass
class Tally:
    inputs: int = 0
    tracebacks: int = 0
    bad_messages: int = 0
    wrongly_accepted: int = 0
    clean_errors: int = 0
    accepted: int = 0
    slowest: float = 0.0
    failures: dict[str, Failure] = field(default_factory=dict)  # by kind

    @property
    def failed(self) -> int:
        return self.tracebacks + self.bad_messages + self.wrongly_accepted

    def row(self, name: str) -> str:
        cells = "".join(f"{getattr(self, c):>{len(c) + 2}}" for c in COLUMNS)
        return f"{name:<20}{cells}{self.slowest * 1000:>9.0f} ms"


def where(error: BaseException) -> str:
    """The line of revcurse that raised it (else the innermost line): the kind of traceback."""
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if f.filename.startswith(str(SRC))] or frames[-1:]
    if not ours:
        return "?"
    path = Path(ours[-1].filename)
    return f"{path.relative_to(SRC) if path.is_relative_to(SRC) else path.name}:{ours[-1].lineno}"


def message_lines(error: Exception) -> list[str]:
    """The lines a user sees (a terminal ends one at CR or LF), less the note on problems
    not shown."""
    text = "\n".join(map(str, error.problems)) if isinstance(error, DataError) else str(error)
    lines = re.split(r"\r\n|\r|\n", text.strip("\r\n"))
    return [line for line in lines if not re.fullmatch(r"\.\.\. and \d+ more problems", line)]


def judge(case: Case) -> tuple[str, str, str]:
    """(outcome, kind of failure, message); the outcome is the Tally field it counts in."""
    try:
        result = case.read()
    except (DataError, ValueError, Refused) as error:
        lines = message_lines(error)
        what = "revcurse kb add" if isinstance(error, Refused) else where(error)
        several = isinstance(error, DataError)  # a DataError lists its problems, one a line
        if not several and isinstance(error, ValueError) and len(lines) != 1:
            kind = f"{type(error).__name__} of {len(lines)} lines at {what}"
            return "bad_messages", kind, str(error)
        stray = [line for line in lines if not line.startswith(tuple(map(str, case.paths)))]
        if not lines or stray:
            kind = f"{type(error).__name__} not naming the file at {what}"
            return "bad_messages", kind, (stray or ["(no message)"])[0]
        return "clean_errors", "", ""
    except Exception as error:  # every other exception is what is counted
        return "tracebacks", f"{type(error).__name__} at {where(error)}", repr(error)
    try:
        case.rules(result)
    except Broken as broken:
        return "wrongly_accepted", broken.rule, str(broken)
    except Exception as error:  # a result that cannot be used is no result
        kind = f"using it raised {type(error).__name__} at {where(error)}"
        return "wrongly_accepted", kind, repr(error)
    return "accepted", "", ""


def run(
    name: str,
    make: Callable[[Random, Path], Case],
    count: int,
    seed: int,
    scratch: Path,
    kept: Path,
) -> Tally:
    rng = Random(f"{seed}:{name}")  # each reader its own stream: --inputs changes no other's
    tally = Tally()
    for i in range(count):
        folder = scratch / f"{i}"
        folder.mkdir()
        case = make(rng, folder)
        start = time.perf_counter()
        outcome, kind, message = judge(case)
        tally.slowest = max(tally.slowest, time.perf_counter() - start)
        tally.inputs += 1
        setattr(tally, outcome, getattr(tally, outcome) + 1)
        if kind:
            if kind not in tally.failures:
                keep = kept / f"{name.replace(' ', '-')}-{i}"
                shutil.copytree(folder, keep, symlinks=True)
                tally.failures[kind] = Failure(outcome, message, keep)
            tally.failures[kind].count += 1
        shutil.rmtree(folder, ignore_errors=True)
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--inputs", type=int, default=10_000, help="inputs in all, shared by the readers"
    )
    parser.add_argument("--seed", type=int, default=0, help="the same seed, the same inputs")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="revcurse-fuzz-"))
    kept = base / "failures"
    kept.mkdir()
    tallies: dict[str, Tally] = {}
    start = time.perf_counter()
    for n, (name, make) in enumerate(READERS.items()):
        count = args.inputs // len(READERS) + (n < args.inputs % len(READERS))
        scratch = base / name.replace(" ", "-")
        scratch.mkdir()
        tallies[name] = run(name, make, count, args.seed, scratch, kept)
    seconds = time.perf_counter() - start
    header = "".join(f"{c.replace('_', ' '):>{len(c) + 2}}" for c in COLUMNS)
    print(f"{'reader':<20}{header}{'slowest':>12}")
    total = Tally()
    for name, tally in tallies.items():
        print(tally.row(name))
        for c in COLUMNS:
            setattr(total, c, getattr(total, c) + getattr(tally, c))
        total.slowest = max(total.slowest, tally.slowest)
    print(total.row("total"))
    print(f"seed {args.seed}, {seconds:.0f} s")
    for name, tally in tallies.items():
        for kind, failure in list(tally.failures.items())[:SHOWN]:
            print(f"\n{name}: {failure.outcome.replace('_', ' ')}, {failure.count}x: {kind}")
            print(f"  {failure.message[:300]}\n  input: {failure.kept}")
    if not total.failed:
        shutil.rmtree(base)
    sys.exit(1 if total.failed else 0)


if __name__ == "__main__":
    main()
