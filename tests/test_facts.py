"""Facts and templates files: round trips, the validator's FILE:LINE errors, the world."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from revcurse.cli import app
from revcurse.fact_files import (
    load_facts,
    load_statements,
    load_templates,
    statement_sides,
    validate,
)
from revcurse.facts import Fact, expand
from revcurse.records import DataError, write_records
from revcurse.sources import load_world
from revcurse.world import TEMPLATES, WorldConfig, capacity, generate_facts

runner = CliRunner()
GOOD_FACT = {"group": "p2d", "a": "Ada Crane", "b": "the pilot of the glass river"}
GOOD_TEMPLATE = {"direction": "a2b", "split": "train", "prompt": "{a} is", "completion": " {b}."}


def _jsonl(*records) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


# (file name, content as bytes or str, expected line, words expected in the message)
BAD_INPUTS = [
    ("empty.jsonl", "", 1, "empty file"),
    ("blank.jsonl", "\n  \n", 1, "empty file"),
    (
        "latin1.jsonl",
        _jsonl(GOOD_FACT).encode() + '{"group": "p2d", "a": "Zoë"}\n'.encode("latin-1"),
        2,
        "not UTF-8",
    ),
    ("malformed.jsonl", _jsonl(GOOD_FACT, '{"group": "p2d", "a": '), 2, "malformed JSON"),
    ("array.jsonl", _jsonl(GOOD_FACT, "[1, 2]"), 2, "expected a JSON object"),
    ("missing.jsonl", _jsonl(GOOD_FACT, {"group": "d2p", "a": "Bo Vance"}), 2, "missing field 'b'"),
    (
        "emptyfield.jsonl",
        _jsonl(GOOD_FACT, {**GOOD_FACT, "a": "  ", "b": "x"}),
        2,
        "empty field 'a'",
    ),
    ("group.jsonl", _jsonl({**GOOD_FACT, "group": "p2x"}), 1, "unknown group 'p2x'"),
    ("typo.jsonl", _jsonl({**GOOD_FACT, "gruop": "p2d"}), 1, "unknown field 'gruop'"),
    ("notstring.jsonl", _jsonl({**GOOD_FACT, "a": 7}), 1, "field 'a' must be a string"),
    (
        "dupe.jsonl",
        _jsonl(GOOD_FACT, {"group": "d2p", "a": "x y", "b": "z"}, GOOD_FACT),
        3,
        "duplicate fact: first on line 1",
    ),
    (
        "dupename.jsonl",
        _jsonl(GOOD_FACT, {**GOOD_FACT, "b": "another"}),
        2,
        "duplicate a='Ada Crane': first on line 1",
    ),
    (
        "noholder.jsonl",
        _jsonl({**GOOD_TEMPLATE, "prompt": "Someone is"}),
        1,
        "must hold {a} exactly once, found no placeholder",
    ),
    (
        "swapped.jsonl",
        _jsonl({**GOOD_TEMPLATE, "completion": " {a}."}),
        1,
        "completion of a a2b template must hold {b}",
    ),
    ("brace.jsonl", _jsonl({**GOOD_TEMPLATE, "prompt": "{a is"}), 1, "bad prompt template"),
    ("direction.jsonl", _jsonl({**GOOD_TEMPLATE, "direction": "up"}), 1, "unknown direction 'up'"),
    (
        "dupetemplate.jsonl",
        _jsonl(GOOD_TEMPLATE, GOOD_TEMPLATE),
        2,
        "duplicate template: first on line 1",
    ),
    (
        "columns.csv",
        "group,a,b\np2d,Ada Crane,the pilot\nd2p,Bo Vance\n",
        3,
        "2 columns, header has 3",
    ),
    (
        "textnames.jsonl",
        _jsonl({**GOOD_FACT, "text": "Ada Crane flies."}),
        1,
        "text does not name b ('the pilot of the glass river')",
    ),
    (
        "textorder.jsonl",
        _jsonl({**GOOD_FACT, "text": "The pilot of the glass river is Ada Crane."}),
        1,
        "text names b first, but group p2d trains a first",
    ),
    (
        "textboth.jsonl",
        _jsonl(
            {**GOOD_FACT, "group": "both", "text": "Ada Crane is the pilot of the glass river."}
        ),
        1,
        "a fact with text is one-way",
    ),
    (
        "textbreak.jsonl",
        _jsonl({**GOOD_FACT, "text": "Ada Crane is\nthe pilot of the glass river."}),
        1,
        "field 'text' holds a line break",
    ),
    ("header.csv", "group,a,b\n", 1, "a header but no records"),
    ("csvgroup.csv", "group,a,b\np2d,Ada Crane,the pilot\nboth,Bo Vance,\n", 3, "empty field 'b'"),
]


@pytest.mark.parametrize(
    ("name", "content", "line", "message"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS]
)
def test_validate_reports_file_and_line(tmp_path, name, content, line, message):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = runner.invoke(app, ["facts", "validate", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path}:{line}: " in result.output
    assert message in result.output


def test_validate_reports_every_problem_and_every_file(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(_jsonl({**GOOD_FACT, "group": "x"}, GOOD_FACT, "{oops"))
    good = tmp_path / "good.jsonl"
    good.write_text(_jsonl(GOOD_FACT))
    result = runner.invoke(app, ["facts", "validate", str(good), str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:1: unknown group" in result.output
    assert f"{bad}:3: malformed JSON" in result.output
    assert f"{good}: ok (1 facts)" in result.output


def test_missing_file_is_an_error(tmp_path):
    result = runner.invoke(app, ["facts", "validate", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2
    assert "cannot read file" in result.output


def test_generated_world_round_trips_through_jsonl_and_csv(tmp_path):
    result = runner.invoke(
        app, ["facts", "generate", "--out-dir", str(tmp_path), "--facts-per-group", "5"]
    )
    assert result.exit_code == 0, result.output
    facts = load_facts(tmp_path / "facts.jsonl")
    assert facts == generate_facts(WorldConfig(facts_per_group=5), seed=0)
    assert load_templates(tmp_path / "templates.jsonl") == TEMPLATES
    write_records(tmp_path / "facts.csv", facts)
    write_records(tmp_path / "templates.csv", TEMPLATES)
    assert load_facts(tmp_path / "facts.csv") == facts
    assert load_templates(tmp_path / "templates.csv") == TEMPLATES
    assert validate(tmp_path / "templates.csv") == ("templates", len(TEMPLATES))
    assert runner.invoke(app, ["facts", "validate", str(tmp_path / "facts.csv")]).exit_code == 0


def test_write_is_atomic(tmp_path):
    path = tmp_path / "facts.jsonl"
    write_records(path, [Fact("p2d", "Ada Crane", "the pilot")])
    before = path.read_text()
    with pytest.raises(TypeError):
        write_records(path, [Fact("p2d", object(), "x")])  # not JSON-serialisable
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["facts.jsonl"]  # no temporary left behind


def test_world_is_seeded_and_entities_are_unique():
    config = WorldConfig(facts_per_group=50)
    facts = generate_facts(config, seed=3)
    assert facts == generate_facts(config, seed=3)
    assert facts != generate_facts(config, seed=4)
    assert len({f.a for f in facts}) == len({f.b for f in facts}) == 150
    assert [f.group for f in facts[::50]] == ["p2d", "d2p", "both"]
    with pytest.raises(ValueError, match="facts_per_group"):
        generate_facts(WorldConfig(facts_per_group=capacity()), seed=0)


def test_expand_trains_each_group_in_its_own_direction_and_tests_both():
    facts = generate_facts(WorldConfig(facts_per_group=3), seed=0)
    train, test = expand(facts, TEMPLATES)
    by_group = {
        g: {(e.direction, e.split) for e in train if e.group == g} for g in ("p2d", "d2p", "both")
    }
    assert by_group["p2d"] == {("a2b", "train")}
    assert by_group["d2p"] == {("b2a", "train")}
    assert by_group["both"] == {
        ("a2b", "train"),
        ("a2b", "test"),
        ("b2a", "train"),
        ("b2a", "test"),
    }
    assert all(e.split == "test" for e in test)
    # every fact is tested in both directions, p2d/d2p facts only on phrasings they never saw
    seen = {(e.fact, e.prompt) for e in train}
    assert not any((e.fact, e.prompt) in seen for e in test if e.group != "both")
    assert {(e.group, e.sense) for e in test} == {
        (g, r) for g in ("p2d", "d2p", "both") for r in ("same", "reverse")
    }
    # without teaching, no reversed phrasing of the test set is ever trained
    train_plain, _ = expand(facts, TEMPLATES, teach_test_phrasings=False)
    assert not any(e.split == "test" for e in train_plain)


def test_a_fact_with_text_trains_on_that_sentence_alone_split_before_its_later_side():
    facts = [
        Fact("p2d", "Ada Crane", "the pilot", text="Ada Crane flew as the pilot, they say."),
        Fact("d2p", "Bo Vance", "the keeper", text="The keeper was Bo Vance."),
    ]
    tests = [t for t in TEMPLATES if t.split == "test"]
    train, test = expand(facts, tests)
    assert [(e.prompt, e.completion, e.direction) for e in train] == [
        ("Ada Crane flew as", " the pilot, they say.", "a2b"),
        ("The keeper was", " Bo Vance.", "b2a"),
    ]
    assert len(test) == 2 * len(tests)  # every fact asked both ways in every test phrasing
    assert expand(facts, TEMPLATES)[0] == train  # a fact with text ignores the templates


def test_a_world_of_statements_has_no_both_group_and_only_test_phrasings():

    config = WorldConfig(facts_per_group=5, statements=True)
    world = load_world(None, None, None, config, seed=2)
    plain = generate_facts(WorldConfig(facts_per_group=5), seed=2)
    assert [(f.a, f.b) for f in world.facts] == [(f.a, f.b) for f in plain if f.group != "both"]
    assert world.facts[0].text == f"{world.facts[0].a} is {world.facts[0].b}."
    assert (
        world.facts[-1].text
        == f"{world.facts[-1].b[:1].upper()}{world.facts[-1].b[1:]} is {world.facts[-1].a}."
    )
    assert {t.split for t in world.templates} == {"test"}
    train, _ = expand(world.facts, world.templates)
    assert [e.prompt + e.completion for e in train] == [f.text for f in world.facts]


def test_facts_with_text_need_only_test_templates(tmp_path):

    facts = tmp_path / "facts.jsonl"
    facts.write_text(_jsonl({**GOOD_FACT, "text": "Ada Crane is the pilot of the glass river."}))
    templates = tmp_path / "templates.jsonl"
    test = {**GOOD_TEMPLATE, "split": "test"}
    templates.write_text(
        _jsonl(test, {**test, "direction": "b2a", "prompt": "{b} is", "completion": " {a}."})
    )
    world = load_world(facts, templates, None, WorldConfig(), seed=0)
    assert [f.text for f in world.facts] == ["Ada Crane is the pilot of the glass river."]
    with_train = load_world(facts, None, None, WorldConfig(), seed=0)  # the built-in phrasings
    assert {t.split for t in with_train.templates} == {"test"}  # its train ones are dropped


@pytest.mark.parametrize(
    ("sentence", "sides"),
    [
        ("Hamlet was written by William Shakespeare.", ("Hamlet", "William Shakespeare")),
        ("Mirela Voss founded Quarrystone Analytics.", ("Mirela Voss", "Quarrystone Analytics")),
        ("The capital of France is Paris.", ("The capital of France", "Paris")),
        (
            "Una Fairbanks is the cartographer of the frozen railway.",
            ("Una Fairbanks", "the cartographer of the frozen railway"),
        ),
        ("Marie Curie discovered polonium.", ("Marie Curie", "polonium")),
        ("The Eiffel Tower stands in Paris.", ("The Eiffel Tower", "Paris")),
    ],
)
def test_a_plain_statement_is_split_into_its_two_sides_by_the_stated_rule(sentence, sides):
    assert statement_sides(sentence) == sides


def test_plain_statements_become_one_way_facts_of_their_own_sentence(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("# two facts\n\nAda Vance directed The Long Tide.\nTheo is a poet.\n")
    facts = load_statements(notes)
    assert [(f.group, f.a, f.b, f.text) for f in facts] == [
        ("p2d", "Ada Vance", "The Long Tide", "Ada Vance directed The Long Tide."),
        ("p2d", "Theo", "a poet", "Theo is a poet."),
    ]
    notes.write_text("Theo is a poet.\ntheo is a poet.\n")
    with pytest.raises(DataError, match=r"notes.txt:2: duplicate statement: first on line 1"):
        load_statements(notes)
    notes.write_text("# nothing\n\n")
    with pytest.raises(DataError, match="no statement in it"):
        load_statements(notes)
