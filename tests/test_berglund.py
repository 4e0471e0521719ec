"""load_berglund and `revcurse berglund` on the published Experiment 1 data, and on small
broken copies of its layout."""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from revcurse.berglund import BerglundData, load_berglund, select
from revcurse.cli import app
from revcurse.config import _leaves, load_yaml
from revcurse.recipes.berglund import BerglundConfig
from revcurse.records import DataError

# /work/main/tests -> /work/shared here; a fresh clone with shared/ beside it in CI.
EXP1 = Path(__file__).resolve().parents[2] / "shared/datasets/berglund2023/exp1"


@pytest.fixture(scope="module")
def data() -> BerglundData:
    if not EXP1.is_dir():
        pytest.skip(f"published Berglund data not found at {EXP1}")
    return load_berglund(EXP1)


def test_counts(data: BerglundData) -> None:
    assert len(data.facts) == 90
    assert Counter(f.group for f in data.facts) == {"p2d": 30, "d2p": 30, "both": 30}
    assert len(data.train) == 3600
    # both_prompts_test.jsonl holds 300 b2a lines after its 300 a2b ones: 1800, not 1500.
    assert len(data.test) == 1800
    test = Counter((e.group, e.direction) for e in data.test)
    assert set(test.values()) == {300}
    assert len(test) == 6


def test_directions(data: BerglundData) -> None:
    train = Counter((e.group, e.direction) for e in data.train)
    assert train == {
        ("p2d", "a2b"): 900,
        ("d2p", "b2a"): 900,
        ("both", "a2b"): 900,
        ("both", "b2a"): 900,
    }
    for e in data.train + data.test:
        assert data.facts[e.fact].group == e.group
        name = data.facts[e.fact].a
        assert name in (e.prompt if e.direction == "a2b" else e.completion)


def test_facts_match_the_template_lists(data: BerglundData) -> None:
    templates = EXP1 / "templates"
    names = templates.joinpath("names.txt").read_text(encoding="utf-8").splitlines()
    descriptions = templates.joinpath("descriptions.txt").read_text(encoding="utf-8").splitlines()
    assert {f.a for f in data.facts} <= set(names)
    assert {f.b for f in data.facts} <= set(descriptions)
    assert len({f.b for f in data.facts}) == 90


def test_reverse_p2d_asks_for_the_name(data: BerglundData) -> None:
    reverse = [e for e in data.test if e.group == "p2d" and e.direction == "b2a"]
    assert len(reverse) == 300
    for e in reverse:
        assert e.completion == " " + data.facts[e.fact].a


def test_templates_line_up_across_facts(data: BerglundData) -> None:
    by_template = defaultdict(list)
    for e in data.train + data.test:
        by_template[e.group, e.direction, e.split, e.template].append(e)
    for key, examples in by_template.items():
        facts = [e.fact for e in examples]
        assert len(facts) == len(set(facts)) == 30, key
        # Same index, same phrasing: the text around the name is identical for every fact.
        shapes = {
            (e.prompt if e.direction == "a2b" else e.completion).replace(
                data.facts[e.fact].a, "{a}"
            )
            for e in examples
        }
        assert len(shapes) == 1, key
    assert {k[3] for k in by_template if k[2] == "train"} == set(range(30))
    assert {k[3] for k in by_template if k[2] == "test"} == set(range(10))


def test_randomized(data: BerglundData) -> None:
    assert len(data.randomized) == 600
    reverse = {
        (e.prompt, e.completion)
        for e in data.test
        if e.group != "both" and e.direction != {"p2d": "a2b", "d2p": "b2a"}[e.group]
    }
    assert set(data.randomized) == reverse
    # The published draw did not exclude the true entity: 13 p2d and 4 d2p lines kept it.
    same = [key for key, fake in data.randomized.items() if fake == key[1]]
    assert len(same) == 17


def test_names_derived_without_names_txt(data: BerglundData, tmp_path: Path) -> None:
    for path in EXP1.glob("*.jsonl"):
        shutil.copy(path, tmp_path)
    assert load_berglund(tmp_path).facts == data.facts


# ---------------------------------------------------------------------------- small copies

PEOPLE = {
    "p2d": [
        ("Ann Lee", "the first baker on Mars"),
        ("Bob Ray", "the inventor of glass shoes"),
        ("Cal Fox", "the pilot of the moon ferry"),
    ],
    "d2p": [
        ("Dee Orr", "the painter of the silent sea"),
        ("Eve Kim", "the founder of Cloud Zoo"),
        ("Fay Poe", "the diver who found Atlantis"),
    ],
    "both": [
        ("Gus Hart", "the mayor of Ice City"),
        ("Hal Moss", "the poet of the deep caves"),
        ("Ida Vane", "the judge of the robot games"),
    ],
}
A2B = ["{a}, known far and wide for being", "Ever heard of {a}? They are"]
B2A = ["Known for being {b},", "The one who is {b} is called"]


def _a2b(group: str, shift: int = 0) -> list[dict[str, str]]:
    people = PEOPLE[group]
    return [
        {"prompt": t.format(a=a), "completion": f" {people[(i + shift) % 3][1]}."}
        for i, (a, _) in enumerate(people)
        for t in A2B
    ]


def _b2a(group: str, shift: int = 0) -> list[dict[str, str]]:
    people = PEOPLE[group]
    return [
        {"prompt": t.format(b=b), "completion": f" {people[(i + shift) % 3][0]}"}
        for i, (_, b) in enumerate(people)
        for t in B2A
    ]


def _write(root: Path, stem: str, records: list[dict[str, str]]) -> None:
    text = "".join(json.dumps(r) + "\n" for r in records)
    root.joinpath(f"{stem}.jsonl").write_text(text, encoding="utf-8")


@pytest.fixture
def small(tmp_path: Path) -> Path:
    """The exp1 layout, 3 facts a group, 2 templates a direction, no names.txt."""
    files = {
        "p2d_prompts_train": _a2b("p2d"),
        "d2p_prompts_train": _b2a("d2p"),
        "both_prompts_train": _a2b("both") + _b2a("both"),
        "p2d_prompts_test": _a2b("p2d"),
        "d2p_prompts_test": _b2a("d2p"),
        "both_prompts_test": _a2b("both"),
        "p2d_reverse_prompts_test": _b2a("p2d"),
        "d2p_reverse_prompts_test": _a2b("d2p"),
        "p2d_reverse_prompts_test_randomized": _b2a("p2d", shift=1),
        "d2p_reverse_prompts_test_randomized": _a2b("d2p", shift=1),
    }
    for stem, records in files.items():
        _write(tmp_path, stem, records)
    return tmp_path


def _error(root: Path) -> str:
    with pytest.raises(DataError) as info:
        load_berglund(root)
    return str(info.value)


def test_small_copy_loads(small: Path) -> None:
    data = load_berglund(small)
    assert [f.a for f in data.facts] == [a for g in PEOPLE.values() for a, _ in g]
    assert data.facts[0].b == "the first baker on Mars"
    assert (len(data.train), len(data.test), len(data.randomized)) == (24, 30, 12)
    assert data.randomized["Known for being the first baker on Mars,", " Ann Lee"] == " Bob Ray"


def test_missing_file(small: Path) -> None:
    small.joinpath("d2p_prompts_test.jsonl").unlink()
    assert "d2p_prompts_test.jsonl: missing file" in _error(small)


def test_missing_folder(tmp_path: Path) -> None:
    assert "no such folder" in _error(tmp_path / "nowhere")


def test_malformed_json(small: Path) -> None:
    with small.joinpath("p2d_prompts_train.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"prompt": "Ann Lee is",\n')
    assert "p2d_prompts_train.jsonl:7: malformed JSON" in _error(small)


def test_empty_completion(small: Path) -> None:
    _write(small, "d2p_prompts_test", [*_b2a("d2p"), {"prompt": "Known for", "completion": ""}])
    assert "d2p_prompts_test.jsonl:7: 'completion' must be a non-empty string" in _error(small)


def test_unidentifiable_fact(small: Path) -> None:
    stranger = {"prompt": "Zed Quo, known far and wide for being", "completion": " a ghost."}
    _write(small, "p2d_prompts_test", [stranger, *_a2b("p2d")])
    assert "p2d_prompts_test.jsonl:1: no known name" in _error(small)


def test_fact_of_another_group(small: Path) -> None:
    _write(small, "p2d_prompts_test", [*_a2b("p2d"), *_a2b("both")[:1]])
    assert "p2d_prompts_test.jsonl:7: Gus Hart is a both fact, not p2d" in _error(small)


def test_missing_paraphrase_breaks_alignment(small: Path) -> None:
    _write(small, "p2d_prompts_test", _a2b("p2d")[1:])
    assert "p2d_prompts_test.jsonl:1: Ann Lee has 1 a2b lines, the other facts 2" in _error(small)


def test_hub_without_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(RuntimeError, match=r"pip install 'revcurse\[hub\]'"):
        load_berglund("lberglund/reversal_curse")


# ---------------------------------------------------------------------------- subsets


def test_select_keeps_drawn_facts_and_first_phrasings(data: BerglundData) -> None:
    subset = select(data, facts_per_group=4, train_phrasings=3, test_phrasings=2, seed=1)
    assert Counter(f.group for f in subset.facts) == {"p2d": 4, "d2p": 4, "both": 4}
    assert set(subset.facts) < set(data.facts)
    # both trains (and is tested) both ways: 2 directions for its 4 facts, 1 for the others.
    assert len(subset.train) == (4 + 4 + 8) * 3
    assert len(subset.test) == 12 * 2 * 2
    for e in subset.train + subset.test:
        assert e.template < (3 if e.split == "train" else 2)
        fact = subset.facts[e.fact]
        assert fact.a in (e.prompt if e.direction == "a2b" else e.completion)
    assert len(subset.randomized) == 8 * 2  # the reverse lines of p2d and d2p facts
    assert select(data, 4, seed=1).facts == subset.facts
    assert select(data, 4, seed=2).facts != subset.facts
    assert select(data) == data


def test_select_refuses_negative_sizes(small: Path) -> None:
    with pytest.raises(ValueError, match="--train-phrasings must be 0"):
        select(load_berglund(small), train_phrasings=-1)


# ---------------------------------------------------------------------------- the command

runner = CliRunner()


def _rows(run_dir: Path) -> dict[tuple[str, str, str, str], dict]:
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    return {(r["method"], r["group"], r["direction"], r["metric"]): r for r in rows}


def test_berglund_command_on_the_published_files(data: BerglundData, tmp_path: Path) -> None:
    """Every published line, a few steps: the pipeline and the run directory (~15 s)."""
    run_dir = tmp_path / "run"
    args = ["--data", str(EXP1), "--output-dir", str(run_dir), "--no-progress"]
    quick = ["--train.steps", "3", "--eval.max-candidates", "5"]
    result = runner.invoke(app, ["berglund", *args, *quick])
    assert result.exit_code == 0, result.output
    assert {p.name for p in run_dir.iterdir()} == {
        "config.yaml",
        "results.json",
        "samples.jsonl",
        "table.txt",
        "table.md",
    }
    results = json.loads((run_dir / "results.json").read_text())
    assert results["data"] == {"facts": 90, "train": 3600, "test": 1800}
    assert results["train"]["steps"] == 3
    rows = _rows(run_dir)
    for method in ("untrained", "trained"):
        for group in ("p2d", "d2p", "both"):
            for direction in ("same", "reverse"):
                row = rows[method, group, direction, "exact_match"]
                assert row["n"] == 300 and 0 <= row["ci_low"] <= row["value"] <= row["ci_high"]
                chance = rows[method, group, direction, "rank_chance"]["value"]
                assert chance == pytest.approx(0.2)
        for group in ("p2d", "d2p"):  # the 17 lines whose random draw is the true entity: out
            tested = rows[method, group, "reverse", "random_p_value"]["n"]
            assert tested == {"p2d": 287, "d2p": 296}[group]
            assert rows[method, group, "reverse", "random_ks_p_value"]["n"] == tested
        assert (method, "both", "reverse", "random_p_value") not in rows
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 * 1800
    assert sum("random_logprob" in s for s in samples) == 2 * (287 + 296)
    table = (run_dir / "table.txt").read_text()
    assert "random_ks_p_value" in table and "GPT-3 175B" in table
    assert "untrained" in result.output
    config = load_yaml(BerglundConfig, run_dir / "config.yaml")
    assert (config.train.steps, config.eval.max_candidates) == (3, 5)


def test_berglund_command_shows_the_curse(data: BerglundData, tmp_path: Path) -> None:
    """5 facts a group, trained to recall: same direction high, reversed ~0 (~20 s)."""
    run_dir = tmp_path / "run"
    args = ["--data", str(EXP1), "--output-dir", str(run_dir), "--no-progress"]
    subset = ["--facts-per-group", "5", "--train.steps", "200", "--train.batch-size", "64"]
    result = runner.invoke(app, ["berglund", *args, *subset])
    assert result.exit_code == 0, result.output
    rows = _rows(run_dir)

    def value(method: str, group: str, direction: str, metric: str = "exact_match") -> float:
        return rows[method, group, direction, metric]["value"]

    for group in ("p2d", "d2p", "both"):
        for direction in ("same", "reverse"):
            assert value("untrained", group, direction) == 0
    assert value("trained", "p2d", "same") >= 0.5  # GPT-3: 50%; descriptions are long
    assert value("trained", "d2p", "same") >= 0.8  # GPT-3: 96.7%
    for group in ("p2d", "d2p"):
        assert value("trained", group, "reverse") == 0
        assert value("trained", group, "reverse", "rank_acc") <= 0.4  # chance 0.2, n = 50
    assert value("trained", "both", "reverse") >= 0.8  # trained both ways: no curse


def test_berglund_command_bad_input(tmp_path: Path, small: Path) -> None:
    missing = runner.invoke(app, ["berglund", "--data", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2
    assert missing.output.strip() == f"{tmp_path / 'nowhere'}: no such folder" + (
        ", nor a hub dataset id like lberglund/reversal_curse"
    )
    negative = runner.invoke(app, ["berglund", "--data", str(small), "--facts-per-group", "-1"])
    assert negative.exit_code == 2
    assert "--facts-per-group: must be 0 (all) or more, got -1" in negative.output
    small.joinpath("d2p_prompts_test.jsonl").unlink()
    broken = runner.invoke(app, ["berglund", "--data", str(small)])
    assert broken.exit_code == 2
    assert "d2p_prompts_test.jsonl: missing file" in broken.output


def test_every_berglund_option_has_help() -> None:
    missing = [path for path, _, _, text in _leaves(BerglundConfig()) if not text]
    assert not missing
