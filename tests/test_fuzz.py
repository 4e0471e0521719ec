"""Property tests of everything that reads a user's file: arbitrary bytes, arbitrary JSON
and arbitrary YAML give a clean one-line-per-problem error (DataError / ValueError) or a
valid result, never another exception.

    pytest tests/test_fuzz.py                                 # 300 inputs per reader
    REVCURSE_FUZZ=10000 pytest tests/test_fuzz.py -p no:cacheprovider   # the long run
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from revcurse.config import load_yaml
from revcurse.facts import Fact, Template, load_facts, load_templates, validate
from revcurse.recipes.compare import CompareConfig
from revcurse.recipes.demo import DemoConfig
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
