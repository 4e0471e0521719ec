"""A world of your own: relations, group names by direction, the file formats, and the
remedies on your facts and on Berglund's (revcurse.facts, revcurse.records, revcurse.sources)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from revcurse.berglund import PUBLISHED, TEST_TEMPLATES, TRAIN_TEMPLATES, load_templates
from revcurse.cli import app
from revcurse.context import (
    fresh_entities,
    fresh_facts,
    reading_documents,
    statement_forms,
    worked_examples,
)
from revcurse.evaluate import alternatives, summarize
from revcurse.fact_files import load_facts
from revcurse.facts import Example, expand, phrasings
from revcurse.records import DataError, read_records
from revcurse.sources import load_world
from revcurse.world import WorldConfig

runner = CliRunner()
EXP1 = PUBLISHED / "exp1"

CITIES = ["Port Amber", "Lake Cobalt", "North Linden", "Fort Marrow", "Saint Rowan", "Port Sable"]
COUNTRIES = ["Velaria", "Morovia", "Tashica", "Zanesh", "Quenuth", "Orilandia"]
PEOPLE = ["Ada Quill", "Bram Rook", "Cleo Stroud", "Dov Tarn", "Elio Vale", "Faye Quill"]
GADGETS = ["the brass loom", "the glass kite", "the steam lamp", "the clock drum", "the wind sled"]
GADGETS.append("the brass pump")
GROUPS = ["a2b", "a2b", "b2a", "b2a", "both", "both"]  # the group names that say the direction

TEMPLATES = [
    ("capital", "a2b", "train", "The capital of {a} is", " {b}."),
    ("capital", "a2b", "test", "The seat of government of {a} is", " {b}."),
    ("capital", "b2a", "train", "{b} is the capital of", " {a}."),
    ("capital", "b2a", "test", "{b} is the seat of government of", " {a}."),
    ("inventor", "a2b", "train", "{a} invented", " {b}."),
    ("inventor", "a2b", "test", "The creator {a} is known for", " {b}."),
    ("inventor", "b2a", "train", "{b} was invented by", " {a}."),
    ("inventor", "b2a", "test", "The creator known for {b} is", " {a}."),
]


def two_relations(folder: Path) -> tuple[Path, Path]:
    facts = [
        {"group": g, "a": a, "b": b, "relation": "capital"}
        for g, a, b in zip(GROUPS, COUNTRIES, CITIES, strict=True)
    ] + [
        {"group": g, "a": a, "b": b, "relation": "inventor"}
        for g, a, b in zip(GROUPS, PEOPLE, GADGETS, strict=True)
    ]
    templates = [
        {"relation": r, "direction": d, "split": s, "prompt": p, "completion": c}
        for r, d, s, p, c in TEMPLATES
    ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "facts.jsonl").write_text("".join(json.dumps(f) + "\n" for f in facts))
    (folder / "templates.json").write_text(json.dumps(templates, indent=2))  # a JSON array
    return folder / "facts.jsonl", folder / "templates.json"


def test_each_relation_is_phrased_by_its_own_templates(tmp_path):
    world = load_world(*two_relations(tmp_path), None, WorldConfig(), 0)
    assert [f.group for f in world.facts[:6]] == ["p2d", "p2d", "d2p", "d2p", "both", "both"]
    assert {t.relation for t in world.templates} == {"capital", "inventor"}
    train, test = expand(world.facts, world.templates)
    for example in [*train, *test]:
        fact = world.facts[example.fact]
        assert example.relation == fact.relation
        assert example.template in {t for t, _ in phrasings(world.templates, fact)}
    # a capital is ranked against capitals only: chance is 1/2 within a group and relation
    for example, candidates in zip(test, alternatives(test, 0, 0), strict=True):
        kind = {f.b for f in world.facts if f.relation == example.relation}
        kind |= {f.a for f in world.facts if f.relation == example.relation}
        assert all(c.strip(" .") in kind for c in candidates) and len(candidates) == 2


def test_rows_per_relation_beside_the_pooled_ones():
    samples = [
        {"group": "p2d", "relation": rel, "direction": "same", "correct": hit, "anywhere": hit}
        | {"rank": 1, "n_candidates": 1}
        for rel, hit in [("capital", True), ("capital", True), ("inventor", False)]
    ]
    rows = {(r["group"], r["metric"]): r for r in summarize(samples, "baseline")}
    assert rows["p2d", "exact_match"]["value"] == pytest.approx(2 / 3)
    assert rows["p2d/capital", "exact_match"]["value"] == 1.0
    assert rows["p2d/inventor", "exact_match"]["value"] == 0.0
    one = [{**s, "relation": ""} for s in samples]
    assert {r["group"] for r in summarize(one, "baseline")} == {"p2d"}  # one relation: as before


def test_a_relation_without_templates_is_one_line(tmp_path):
    facts, templates = two_relations(tmp_path)
    kept = [t for t in json.loads(templates.read_text()) if t["relation"] == "capital"]
    templates.write_text(json.dumps(kept))
    with pytest.raises(DataError, match="no test or train templates for relation 'inventor'"):
        load_world(facts, templates, None, WorldConfig(), 0)


def test_a_json_array_reports_the_line_each_record_opens_on(tmp_path):
    path = tmp_path / "facts.json"
    path.write_text('[\n  {"group": "p2d", "a": "A B", "b": "C D"},\n  {"group": "up"}\n]\n')
    assert [n for n, _ in read_records(path)] == [2, 3]
    with pytest.raises(DataError) as error:
        load_facts(path)
    assert str(error.value).startswith(f"{path}:3: missing field 'a'")


def test_pretty_printed_json_is_one_line_that_says_what_to_write(tmp_path):
    path = tmp_path / "facts.jsonl"
    record = {"group": "p2d", "a": "A B", "b": "C D"}
    path.write_text(json.dumps(record, indent=2) + "\n" + json.dumps(record, indent=2) + "\n")
    with pytest.raises(DataError) as error:
        load_facts(path)
    hint = "pretty-printed JSON: write JSON Lines (one object a line) or a JSON array"
    assert str(error.value) == f"{path}:1: {hint}"


def test_one_entity_in_two_relations_is_no_duplicate(tmp_path):
    path = tmp_path / "f.jsonl"
    rows = [
        {"group": "p2d", "a": "France", "b": "Paris", "relation": "capital"},
        {"group": "p2d", "a": "France", "b": "French", "relation": "language"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [f.relation for f in load_facts(path)] == ["capital", "language"]
    path.write_text("".join(json.dumps({**r, "relation": "capital"}) + "\n" for r in rows))
    with pytest.raises(DataError, match="duplicate a='France'"):
        load_facts(path)


def test_fresh_entities_of_your_world_are_its_own_kind_and_never_true(tmp_path):
    world = load_world(*two_relations(tmp_path), None, WorldConfig(), 0)
    pools = fresh_entities(world.facts, recombine=True)
    words = {w for f in world.facts for w in f.b.split()}
    assert all(set(b.split()) <= words for b in pools["capital"].b)  # "Port Cobalt", ...
    assert not set(pools["capital"].b) & {f.b for f in world.facts}
    true = {(f.a, f.b) for f in world.facts}
    rng = random.Random(0)
    for _ in range(200):
        assert not {(f.a, f.b) for f in fresh_facts(3, pools["capital"], rng)} & true
    documents = reading_documents(50, 1, world.templates, world.facts, 0, recombine=True)
    assert {d.relation for d in documents} == {"capital", "inventor"}


@pytest.mark.skipif(not EXP1.is_dir(), reason="the published Experiment 1 copy is not here")
def test_berglund_templates_split_as_the_published_files():
    templates = load_templates(EXP1)
    for direction in ("a2b", "b2a"):
        mine = [t for t in templates if t.direction == direction]
        assert [t.split for t in mine] == ["train"] * TRAIN_TEMPLATES + ["test"] * TEST_TEMPLATES
    first_test = next(t for t in templates if t.split == "test" and t.direction == "a2b")
    assert first_test.prompt == "The trailblazer known as {a} was once"
    assert first_test.completion == " {b}"  # the entity alone, as the published test lines
    world = load_world(None, None, "berglund", WorldConfig(facts_per_group=2), 0)
    assert len(world.facts) == 6 and not world.generated


def compare_args(tmp_path: Path) -> list[str]:
    return [
        "compare",
        "--seeds",
        "1",
        "--methods",
        "baseline,in_context,bidirectional",
        "--train.steps",
        "2",
        "--remedies.reading-documents",
        "10",
        "--reader.documents",
        "10",
        "--reader.train.steps",
        "2",
        "--reader.cache-dir",
        str(tmp_path / "cache"),
        "--output-dir",
        str(tmp_path / "run"),
        "--no-progress",
    ]


def test_compare_runs_the_remedies_on_your_relations(tmp_path):
    facts, templates = two_relations(tmp_path / "data")
    args = [*compare_args(tmp_path), "--facts", str(facts), "--templates", str(templates)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["rows"]
    groups = {r["group"] for r in rows if r["method"] == "in_context"}
    assert {"p2d", "p2d/capital", "d2p/inventor", "both/capital"} <= groups
    saved = (tmp_path / "run" / "world" / "templates.jsonl").read_text()
    assert saved.count('"relation": "inventor"') == 4
    assert "p2d = trained a first (a2b)" in (tmp_path / "run" / "table.txt").read_text()


def test_data_and_facts_together_are_refused(tmp_path):
    facts, _ = two_relations(tmp_path / "data")
    result = runner.invoke(
        app, [*compare_args(tmp_path), "--data", "berglund", "--facts", str(facts)]
    )
    assert result.exit_code == 2 and "--data: give it, or --facts/--templates" in result.output
    assert not (tmp_path / "run").exists()


def test_teach_writes_a_model_transformers_loads_that_ask_answers_from(tmp_path):
    facts, templates = two_relations(tmp_path / "data")
    args = teach_args(tmp_path)
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [*args, "--method", "bidirectional", "--facts", str(facts), "--templates", str(templates)],
    )
    assert result.exit_code == 0, result.output
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out)
    AutoTokenizer.from_pretrained(out)
    assert model.num_parameters() > 0 and (out / "model.safetensors").is_file()
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {r["method"] for r in rows} == {"before", "bidirectional"}
    assert any(r["metric"] == "ppl_drift" for r in rows)
    answered = runner.invoke(app, ["ask", str(out), "Port Amber is the capital of"])
    assert answered.exit_code == 0 and answered.output.strip()
    refused = runner.invoke(app, ["ask", str(tmp_path), "x"])
    assert refused.exit_code == 2 and "not a model folder" in refused.output


def test_teach_refuses_a_method_that_keeps_controls(tmp_path):
    result = runner.invoke(app, ["teach", "--method", "rome", "--output-dir", str(tmp_path / "r")])
    assert result.exit_code == 2 and "--method: must be one of auto, bidirectional" in result.output
    assert not (tmp_path / "r").exists()


def teach_args(tmp_path: Path) -> list[str]:
    args = compare_args(tmp_path)
    args[0] = "teach"
    del args[1:5]  # teach takes one --method, and no --seeds
    return args


def test_teach_takes_plain_statements_and_ends_with_a_verdict(tmp_path):
    """No a/b, no template: the model writes its own questions and statements (self_distill,
    source own), and the verdict asks it its own held-out questions (the tiny reader writes
    none worth keeping: a verdict on nothing, and its warning)."""
    out = tmp_path / "run"
    args = [*teach_args(tmp_path), "--remedies.self-distill.steps", "2"]
    result = runner.invoke(app, [*args, "--statements", "examples/statements.txt"])
    assert result.exit_code == 0, result.output
    assert "Verdict: the taught model answers" in result.output
    assert "Warning: fewer than 80% of the facts" in result.output
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["method"] == "self_distill"
    assert saved["remedies"]["self_distill"]["source"] == "own"
    assert saved["remedies"]["self_distill"]["base"] == "start"  # no full fine-tune first
    assert saved["remedies"]["reading_share"] == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {r["direction"] for r in rows if r["metric"] == "both_ways"} == {"before", "after"}
    assert (out / "model.safetensors").is_file()
    facts = [json.loads(line) for line in (out / "world" / "facts.jsonl").read_text().splitlines()]
    assert facts[0] == {
        "group": "p2d",
        "a": "Mirela Voss",
        "b": "Quarrystone Analytics",
        "text": "Mirela Voss founded Quarrystone Analytics.",
    }


def test_plain_statements_with_a_bad_line_are_refused_by_file_and_line(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("# mine\nAda Vance directed The Long Tide.\n\nwho knows?\nthe cat sat.\n")
    result = runner.invoke(app, [*teach_args(tmp_path), "--statements", str(notes)])
    assert result.exit_code == 2
    assert f"{notes}:4: a question, not a statement" in result.output
    assert f"{notes}:5: cannot tell its sides" in result.output
    assert not (tmp_path / "run").exists()
    measured = runner.invoke(app, [*compare_args(tmp_path), "--statements", str(notes)])
    assert measured.exit_code == 2 and "--statements: compare measures on test" in measured.output


def test_the_api_teaches_plain_sentences_given_as_strings(tmp_path):
    from revcurse import api

    taught = api.teach(
        statements=["Ada Vance directed The Long Tide.", "Theo Marsh is a poet of the hills."],
        train__steps=2,
        remedies__self_distill__steps=2,
        remedies__reading_documents=10,
        reader__documents=10,
        reader__train__steps=2,
        reader__cache_dir=tmp_path / "cache",
        output_dir=tmp_path / "run",
    )
    facts = (tmp_path / "run" / "world" / "facts.jsonl").read_text()
    assert "Ada Vance directed The Long Tide." in facts and "a poet of the hills" in facts
    assert {r["direction"] for r in taught.rows if r["metric"] == "both_ways"} == {
        "before",
        "after",
    }


def test_worked_examples_state_fresh_facts_as_their_user_states_theirs():
    world = load_world(
        "examples/statements/facts.jsonl",
        "examples/statements/templates.jsonl",
        None,
        WorldConfig(),
        0,
    )
    forms = statement_forms(world.facts)
    assert "{a} wrote {b}." in forms["wrote"] and "{b} was founded by {a}." in forms["founded"]
    wrote = [t for t in world.templates if t.relation == "wrote"]
    asked = [Example(-1, "p2d", t.direction, "test", k, t.prompt, "") for k, t in enumerate(wrote)]
    for example in worked_examples(asked, wrote, 3, world.facts, 0, recombine=True):
        stated = [line for line in example.prompt.splitlines() if line.startswith("Fact:")]
        assert len(stated) == 3 and all(" wrote " in s or " written by " in s for s in stated)
