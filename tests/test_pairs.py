"""`revcurse pairs` (Berglund's Experiment 2): reading the pairs, the questions, the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from revcurse.cli import app
from revcurse.config import _leaves
from revcurse.recipes.pairs import (
    DIRECTIONS,
    FEW_SHOT,
    Pair,
    PairsConfig,
    draw_candidates,
    load_pairs,
    questions,
)
from revcurse.records import DataError

# /work/main/tests -> /work/shared here; a fresh clone with shared/ beside it in CI.
EXP2 = Path(__file__).resolve().parents[2] / "shared/datasets/berglund2023/exp2"
CSV = EXP2 / "parent_child_pairs.csv"
runner = CliRunner()


@pytest.fixture(scope="module")
def pairs() -> list[Pair]:
    if not CSV.is_file():
        pytest.skip(f"published Berglund data not found at {CSV}")
    return load_pairs(CSV)


def test_published_pairs(pairs: list[Pair]) -> None:
    assert len(pairs) == 1511  # 1513 rows, 2 of them repeated
    assert pairs[0] == Pair("Sasha Calle", "Samira Calle", "mother")
    assert {p.parent_type for p in pairs} == {"mother", "father"}


def test_worked_examples_are_not_in_the_file(pairs: list[Pair]) -> None:
    people = {name for p in pairs for name in (p.child, p.parent)}
    named = {line[3:] for line in FEW_SHOT.splitlines() if line.startswith("A: ")}
    assert named and not named & people
    assert "Barack Obama" not in people and "Ozzy Osbourne" not in people


def test_questions_and_candidates(pairs: list[Pair]) -> None:
    asked = questions(pairs, pairs[:50])
    assert [q.direction for q in asked[:2]] == list(DIRECTIONS)
    assert asked[0].text == "Who is Sasha Calle's mother?" and asked[0].target == "Samira Calle"
    assert asked[1].text == "Name a child of Samira Calle." and asked[1].target == "Sasha Calle"
    mothers = {p.parent for p in pairs if p.parent_type == "mother"}
    candidates = draw_candidates(asked, 10, seed=0)
    for q, names in zip(asked, candidates, strict=True):
        assert names[0] == " " + q.target and len(set(names)) == 10
        assert not {n.strip() for n in names[1:]} & q.answers
        if q.text.endswith("mother?"):
            assert {n.strip() for n in names} <= mothers
    assert draw_candidates(asked, 10, seed=0) == candidates
    assert draw_candidates(asked, 10, seed=1) != candidates
    # A parent of several children in the file: each of them answers "Name a child of ...".
    asked_all = questions(pairs, pairs)
    several = next(q for q in asked_all if q.text == "Name a child of Tell Schreiber.")
    assert len(several.answers) >= 2


def test_pairs_command_on_the_published_file(pairs: list[Pair], tmp_path: Path) -> None:
    """The untrained tiny model on 5 pairs: the pipeline and the run directory."""
    run_dir = tmp_path / "run"
    args = ["pairs", "--data", str(CSV), "--limit", "5", "--output-dir", str(run_dir)]
    result = runner.invoke(app, [*args, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert {p.name for p in run_dir.iterdir()} == {
        "config.yaml",
        "results.json",
        "samples.jsonl",
        "table.txt",
        "table.md",
    }
    results = json.loads((run_dir / "results.json").read_text())
    assert results["pairs"] == {"asked": 5, "in_file": 1511}
    rows = {(r["direction"], r["metric"]): r for r in results["rows"]}
    for direction in DIRECTIONS:
        assert rows[direction, "exact_match"]["n"] == 5
        assert rows[direction, "rank_chance"]["value"] == pytest.approx(0.1)
        assert 0 <= rows[direction, "answer_prob"]["value"] <= 1
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 10
    assert {"question", "target", "output", "correct", "rank"} <= set(samples[0])
    assert "GPT-4" in (run_dir / "table.txt").read_text()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("child,mother\nAda Crane,Eve Crane\n", ":1: no column parent, parent_type"),
        ("child,parent,parent_type\nAda Crane,Eve Crane,aunt\n", ":2: parent_type 'aunt'"),
        ("child,parent,parent_type\nAda Crane,,mother\n", ":2: empty parent"),
        ("child,parent,parent_type\nAda Crane,Eve Crane\n", ":2: 2 columns, header has 3"),
    ],
)
def test_bad_files_fail_in_one_line(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=problem):
        load_pairs(path)
    result = runner.invoke(app, ["pairs", "--data", str(path), "--output-dir", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert result.output.startswith(f"{path}{problem}")
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_missing_file_and_bad_limit(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["pairs", "--data", str(tmp_path / "none.csv")])
    assert missing.exit_code == 2
    assert "none.csv: cannot read file" in missing.output
    negative = runner.invoke(app, ["pairs", "--limit", "-1"])
    assert negative.exit_code == 2
    assert "--limit: must be 0 (all) or more, got -1" in negative.output


def test_every_pairs_option_has_help() -> None:
    assert not [path for path, _, _, text in _leaves(PairsConfig()) if not text]
