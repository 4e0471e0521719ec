"""Property tests of everything that reads a user's file: arbitrary bytes, arbitrary JSON
and arbitrary YAML give a clean one-line-per-problem error (DataError / ValueError) or a
valid result, never another exception.

    pytest tests/test_fuzz.py                                 # 300 inputs per reader
    REVCURSE_FUZZ=10000 pytest tests/test_fuzz.py -p no:cacheprovider   # the long run

benchmarks/fuzz.py breaks valid files of every reader 10,000 ways; what it found is kept
at the end, as cases.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from revcurse.berglund import load_berglund
from revcurse.config import load_yaml
from revcurse.fact_files import load_facts, load_templates, validate
from revcurse.facts import Fact, Template
from revcurse.kb import KnowledgeBase
from revcurse.recipes.analyze import demo_seed
from revcurse.recipes.ask import chat_template
from revcurse.recipes.compare import CompareConfig
from revcurse.recipes.demo import DemoConfig
from revcurse.recipes.pairs import load_pairs
from revcurse.records import DataError

EXAMPLES = int(os.environ.get("REVCURSE_FUZZ", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,  # the same inputs for everyone: nothing is kept between runs
)
FOLDER = Path(tempfile.mkdtemp(prefix="revcurse-fuzz-"))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# Records near the real ones, so the checks past JSON parsing are reached too
field_values = st.one_of(
    st.text(max_size=30),
    json_values,
    st.sampled_from(
        [
            "p2d",
            "d2p",
            "both",
            "a2b",
            "b2a",
            "train",
            "test",
            "{a}",
            "{b}",
            "{a} is",
            " {b}.",
            "{a:>9}",
        ]
    ),
)
fact_like = st.fixed_dictionaries({}, optional={k: field_values for k in ("group", "a", "b", "c")})
template_like = st.fixed_dictionaries(
    {}, optional={k: field_values for k in ("direction", "split", "prompt", "completion")}
)


def written(name: str, content: bytes) -> Path:
    path = FOLDER / name
    path.write_bytes(content)
    return path


def written_jsonl(name: str, records: list) -> Path:
    return written(name, "".join(json.dumps(r) + "\n" for r in records).encode())


def reads_cleanly(read, path: Path) -> None:
    try:
        result = read(path)
    except DataError as error:
        assert error.problems and all(str(p).startswith(str(path)) for p in error.problems)
        return
    assert result is not None


@FUZZ
@given(st.binary(max_size=300), st.sampled_from([".jsonl", ".csv"]))
def test_any_bytes(content, suffix):
    for read in (load_facts, load_templates, validate):
        reads_cleanly(read, written("bytes" + suffix, content))


@FUZZ
@given(st.lists(st.one_of(json_values, fact_like, template_like), max_size=6))
def test_any_json_lines(records):
    path = written_jsonl("records.jsonl", records)
    for read in (load_facts, load_templates, validate):
        reads_cleanly(read, path)


@FUZZ
@given(st.lists(fact_like, min_size=1, max_size=6))
def test_fact_like_records_load_or_say_why(records):
    path = written_jsonl("facts.jsonl", records)
    try:
        facts = load_facts(path)
    except DataError:
        return
    assert all(isinstance(f, Fact) and f.group in ("p2d", "d2p", "both") for f in facts)


@FUZZ
@given(st.lists(template_like, min_size=1, max_size=6))
def test_template_like_records_load_or_say_why(records):
    path = written_jsonl("templates.jsonl", records)
    try:
        templates = load_templates(path)
    except DataError:
        return
    for t in templates:  # every template that loads can be filled
        assert isinstance(t, Template)
        t.fill(Fact("p2d", "A", "B"), 0, 0)


config_values = st.recursive(
    json_values,
    lambda inner: st.dictionaries(
        st.sampled_from(
            [
                "seed",
                "train",
                "steps",
                "lr",
                "world",
                "facts_per_group",
                "tiny",
                "n_heads",
                "model",
                "remedies",
                "hebbian",
                "rate",
                "methods",
                "x",
            ]
        ),
        inner,
        max_size=4,
    ),
    max_leaves=10,
)


@FUZZ
@given(st.one_of(config_values, st.text(max_size=60)))
def test_any_config_yaml(values):
    text = values if isinstance(values, str) else yaml.safe_dump(values)
    path = written("config.yaml", text.encode())
    for cls in (DemoConfig, CompareConfig):
        try:
            config = load_yaml(cls, path)
        except ValueError as error:
            assert str(error).startswith(str(path)), error
            continue
        assert isinstance(config, cls)


# ---------------------------------------------------------------------------- found by
# benchmarks/fuzz.py: each once a traceback, a message of several lines or one that did not
# name the file, or a file read as valid that breaks a rule

DEEP = b"[" * 100_000  # Python's JSON and YAML readers recurse once a level
FOUND = [
    # (file name, content, reader, what its one line per problem says)
    ("deep.jsonl", b'{"group": ' + DEEP + b"\n", load_facts, ":1: malformed JSON: nested too"),
    ("deep.json", DEEP, load_templates, ":1: malformed JSON: nested too deeply"),
    ("empty.json", b"[]", load_facts, ":1: empty file: expected at least one record"),
    ("blank.csv", b" , ,\n,\n", load_facts, ":1: empty file: expected a header and records"),
    ("half.jsonl", b'{"group": "p2d", "a": "Ada \\ud800", "b": "x"}\n', load_facts, "UTF-16"),
    ("half.json", b'[{"direction": "\\udfff"}]', validate, ":1: field 'direction' holds half"),
    ("break.jsonl", b'{"group": "p\\nd", "a": "A", "b": "B"}\n', load_facts, "group 'p\\nd'"),
    ("break.csv", b'direction,split,prompt,completion\na2b,"t\ra",{a},{b}\n', validate, "'t\\ra'"),
    (
        "keys.jsonl",
        b'{"child": "A", "parent": "B", "parent_type": "mother"}\n{"child": "C"}\n',
        load_pairs,
        ":2: empty parent, parent_type",
    ),
]


@pytest.mark.parametrize(("name", "content", "read", "says"), FOUND, ids=[f[0] for f in FOUND])
def test_found_by_fuzzing(tmp_path: Path, name: str, content: bytes, read, says: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read(path)
    lines = str(info.value).split("\n")
    assert len(lines) == len(info.value.problems), lines  # one line a problem
    assert all(line.startswith(str(path)) for line in lines), lines
    assert says in str(info.value)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"seed: 1\nmodel: \xff\n", ":2: cannot read config: not UTF-8 (byte 0xff)"),
        (b"train: " + DEEP[:1000], ": cannot read config: nested too deeply"),  # PyYAML is slow
        (b"seed: [\n", ":2: cannot read config: expected the node content"),
        (b"seed: 1\x00", ":1: cannot read config: special characters are not allowed"),
    ],
)
def test_config_yaml_found_by_fuzzing(tmp_path: Path, content: bytes, says: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        load_yaml(DemoConfig, path)
    assert "\n" not in str(info.value) and str(info.value).startswith(f"{path}{says}")
    assert demo_seed(tmp_path) is None and chat_template(tmp_path) is False  # lenient readers


def test_run_config_seed_is_an_int_or_none(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("seed: 2020-01-01\nchat_template: [1]\n")
    assert demo_seed(tmp_path) is None and chat_template(tmp_path) is True


class Embedder:
    def encode(self, texts: list[str], normalize_embeddings: bool = True) -> np.ndarray:
        return np.ones((len(texts), 4), dtype=np.float32) / 2


def test_knowledge_base_of_another_program(tmp_path: Path) -> None:
    path = tmp_path / "kb.sqlite"
    with sqlite3.connect(path) as db:  # the tables' names, not their columns
        db.executescript("CREATE TABLE facts (x); CREATE TABLE facts_fts (y);")
    db.close()
    with KnowledgeBase(path) as kb, pytest.raises(ValueError) as info:
        kb.add([Fact("p2d", "A", "B")])
    assert str(info.value).startswith(f"{path}: cannot use the knowledge base (table facts")


def test_knowledge_base_with_a_damaged_embedding(tmp_path: Path) -> None:
    path = tmp_path / "kb.sqlite"
    with KnowledgeBase(path, embedder=Embedder()) as kb:
        kb.add([Fact("p2d", "A", "B")], embed=True)
        kb.db.execute("UPDATE facts SET embedding = x'000102'")
        with pytest.raises(ValueError) as info:
            kb.query("A", 1, "dense")
    assert str(info.value).startswith(f"{path}: cannot use the knowledge base (the embedding")


@pytest.mark.parametrize(
    ("completion", "says"),
    [
        (" .", "no one-line description of Ann Lee"),
        (" the\rbaker.", "no one-line description of Ann Lee"),
        (" The painter.", "Dee Orr is described as Ann Lee is: 'the painter'"),
    ],
)
def test_berglund_description_as_a_facts_file_needs_it(
    tmp_path: Path, completion: str, says: str
) -> None:
    def a2b(name: str, what: str) -> dict[str, str]:
        return {"prompt": f"{name} is", "completion": f" {what}."}

    def b2a(name: str, what: str) -> dict[str, str]:
        return {"prompt": f"Known as {what},", "completion": f" {name}"}

    ann, dee, gus = ("Ann Lee", "the baker"), ("Dee Orr", "the painter"), ("Gus Hart", "the mayor")
    files = {
        "p2d_prompts_train": [a2b(*ann)],
        "d2p_prompts_train": [b2a(*dee)],
        "both_prompts_train": [a2b(*gus), b2a(*gus)],
        "p2d_prompts_test": [a2b(*ann)],
        "d2p_prompts_test": [b2a(*dee)],
        "both_prompts_test": [a2b(*gus), b2a(*gus)],
        "p2d_reverse_prompts_test": [b2a(*ann)],
        "d2p_reverse_prompts_test": [a2b(*dee)],
        "p2d_reverse_prompts_test_randomized": [b2a(*ann)],
        "d2p_reverse_prompts_test_randomized": [a2b(*dee)],
    }
    for stem, lines in files.items():
        write = tmp_path / f"{stem}.jsonl"
        write.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    assert [f.b for f in load_berglund(tmp_path).facts] == ["the baker", "the painter", "the mayor"]
    bad = json.dumps({**a2b(*ann), "completion": completion})
    (tmp_path / "p2d_prompts_train.jsonl").write_text(bad + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_berglund(tmp_path)
    assert says in str(info.value)


def test_typed_options_types_each_value_by_its_default_and_names_unknown_keys():
    from revcurse.config import typed_options
    from revcurse.errors import UserError

    defaults = {"steps": 60, "lr": 0.0, "keep": False, "source": "questions"}
    words = "steps=200 lr=1e-3 keep=1 source=both kl=1"
    assert typed_options(defaults, words, handled=("kl",)) == {
        "steps": 200,
        "lr": 1e-3,
        "keep": True,
        "source": "both",
    }
    with pytest.raises(UserError, match=r"unknown option kl \(known: steps, lr, keep, source\)"):
        typed_options(defaults, words)
