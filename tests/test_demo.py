"""`revcurse demo` end to end on CPU: the curse itself, the run directory, reproducibility."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from revcurse.cli import app
from revcurse.config import load_yaml
from revcurse.recipes.demo import DemoConfig

runner = CliRunner()
QUICK = ["--no-progress", "--world.facts-per-group", "6", "--train.steps", "30"]


def _rows(run_dir):
    return json.loads((run_dir / "results.json").read_text())["rows"]


def _value(rows, group, direction, metric):
    [row] = [
        r for r in rows if (r["group"], r["direction"], r["metric"]) == (group, direction, metric)
    ]
    return row["value"]


def test_demo_reproduces_the_reversal_curse(tmp_path):
    """A small world, trained to convergence: forward recall, reverse at chance."""
    run_dir = tmp_path / "run"
    args = ["demo", "--output-dir", str(run_dir), "--no-progress", "--world.facts-per-group", "20"]
    result = runner.invoke(app, [*args, "--train.steps", "300"])
    assert result.exit_code == 0, result.output
    assert {p.name for p in run_dir.iterdir()} == {
        "config.yaml",
        "results.json",
        "samples.jsonl",
        "table.txt",
        "table.md",
        "model",
        "world",
    }
    rows = _rows(run_dir)
    assert {r["method"] for r in rows} == {"baseline"}
    for group in ("p2d", "d2p"):
        assert _value(rows, group, "same", "exact_match") >= 0.9
        assert _value(rows, group, "reverse", "exact_match") <= 0.1
        assert _value(rows, group, "reverse", "rank_acc") <= 0.25  # chance is 0.05; n = 40
    assert _value(rows, "both", "reverse", "exact_match") >= 0.9
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 20 * 3 * 4  # 2 held-out phrasings per direction per fact
    table = (run_dir / "table.txt").read_text()
    assert "exact match" in table and "p2d" in result.output
    for text in (table, result.stdout):  # what a pipe or a file gets: no line over 100
        lines = text.splitlines()
        assert max(map(len, lines)) <= 100 and all(
            line.count("[") == line.count("]") for line in lines
        )
    markdown = (run_dir / "table.md").read_text().splitlines()
    assert markdown[0].startswith(
        "| method | group | direction | n | facts | exact_match | anywhere"
    )
    assert len(markdown) == 2 + 6 + 2  # header, rule, 3 groups x 2 directions, legend


def test_same_seed_same_rows_and_config_replays(tmp_path):
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert (
        runner.invoke(app, ["demo", "--output-dir", str(first), "--seed", "3", *QUICK]).exit_code
        == 0
    )
    config = load_yaml(DemoConfig, first / "config.yaml")
    assert (config.seed, config.world.facts_per_group, config.train.steps) == (3, 6, 30)
    replay = ["demo", "--config", str(first / "config.yaml"), "--output-dir", str(second)]
    assert runner.invoke(app, replay).exit_code == 0
    assert _rows(first) == _rows(second)
    assert (
        runner.invoke(app, ["demo", "--output-dir", str(other), "--seed", "4", *QUICK]).exit_code
        == 0
    )
    assert _rows(first) != _rows(other)


def test_runs_are_never_overwritten(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["demo", "--output-dir", str(run_dir), *QUICK])
    assert result.exit_code == 2
    assert "never overwritten" in result.output
    assert [p.name for p in run_dir.iterdir()] == ["keep.txt"]


def test_bad_facts_file_fails_cleanly_and_writes_nothing(tmp_path):
    facts = tmp_path / "facts.jsonl"
    facts.write_text('{"group": "p2d", "a": "Ada Crane", "b": "the pilot"}\n{"group": "p3d"}\n')
    run_dir = tmp_path / "run"
    result = runner.invoke(
        app, ["demo", "--facts", str(facts), "--output-dir", str(run_dir), *QUICK]
    )
    assert result.exit_code == 2
    assert f"{facts}:2: missing field 'a'" in result.output
    assert not run_dir.exists()
    assert list(tmp_path.iterdir()) == [facts]  # no partial run directory either


def test_own_facts_and_templates(tmp_path):
    assert (
        runner.invoke(
            app,
            ["facts", "generate", "--out-dir", str(tmp_path), "--facts-per-group", "4", "--csv"],
        ).exit_code
        == 0
    )
    run_dir = tmp_path / "run"
    args = [
        "demo",
        "--facts",
        str(tmp_path / "facts.csv"),
        "--templates",
        str(tmp_path / "templates.csv"),
    ]
    result = runner.invoke(
        app, [*args, "--output-dir", str(run_dir), "--no-progress", "--train.steps", "5"]
    )
    assert result.exit_code == 0, result.output
    assert len((run_dir / "samples.jsonl").read_text().splitlines()) == 4 * 3 * 4


def test_unknown_config_key_is_reported(tmp_path):
    bad = tmp_path / "config.yaml"
    bad.write_text(yaml.safe_dump({"seed": 1, "trian": {"steps": 3}}))
    result = runner.invoke(
        app, ["demo", "--config", str(bad), "--output-dir", str(tmp_path / "run")]
    )
    assert result.exit_code == 2
    assert "unknown key(s) trian" in result.output


def test_choices_are_shown_and_checked_and_lists_are_lists_in_the_yaml():
    """A Literal field lists its values in --help and refuses others by name; a list field
    takes comma-separated words (the command line, configs saved before it was a list) and
    is saved as a YAML list that reads back the same."""
    from revcurse.config import from_dict, to_yaml
    from revcurse.recipes.compare import CompareConfig

    shown = " ".join(runner.invoke(app, ["compare", "--help"]).output.split())
    assert "[one of: none, linear, cosine; default: none" in shown
    assert "[one of: bm25, dense; default: bm25]" in shown
    result = runner.invoke(app, ["compare", "--train.decay", "step"])
    assert result.exit_code == 2
    assert "--train.decay: must be one of none, linear, cosine, got 'step'" in result.output
    given = {
        "methods": "baseline,in_context",
        "train": {"lora_targets": "q_proj, v_proj"},
        "remedies": {"memit": {"layers": "-2,-1"}, "hebbian": {"layers": "middle"}},
    }
    config = from_dict(CompareConfig, given)
    assert config.methods == ["baseline", "in_context"]
    assert config.train.lora_targets == ["q_proj", "v_proj"]
    assert config.remedies.memit.layers == [-2, -1]
    assert config.remedies.hebbian.layers == "middle"  # a keyword stays a keyword
    saved = yaml.safe_load(to_yaml(config))
    assert saved["methods"] == ["baseline", "in_context"]
    assert saved["remedies"]["memit"]["layers"] == [-2, -1]
    assert from_dict(CompareConfig, saved) == config
    one = from_dict(CompareConfig, {"remedies": {"memit": {"layers": -3}}})  # YAML `layers: -3`
    assert one.remedies.memit.layers == [-3]


def test_every_option_has_help():
    """An option's help is its field's attribute docstring (the string under the field)."""
    from revcurse.config import _leaves
    from revcurse.recipes.analyze import AnalyzeConfig
    from revcurse.recipes.compare import CompareConfig
    from revcurse.recipes.teach import TeachConfig

    for cls in (DemoConfig, CompareConfig, AnalyzeConfig, TeachConfig):
        missing = ["--" + ".".join(path) for path, _, _, text in _leaves(cls()) if not text]
        assert not missing, f"{cls.__name__}: no help for {missing}"


def test_tables_say_what_each_edit_metric_measures():
    """A table showing locality, kept, ... has one line saying what each measures; a table
    without them has none."""
    from revcurse.results import METRIC_LEGEND, markdown_table, measurements_table, render
    from revcurse.stats import row

    rows = [row("rome", "p2d", "reverse", "generalization", 0.5, 10, None)]
    rows += [row("rome", "untouched", "all", "locality", 0.9, 10, None)]
    for text in (render(measurements_table(rows, "t")), markdown_table(rows)):
        for metric in ("generalization", "locality"):
            assert f"{metric}: {METRIC_LEGEND[metric]}" in text
        assert "kept:" not in text and "p2d = trained" in text
    plain = [dict(r, metric="exact_match") for r in rows]
    assert not any(m in markdown_table(plain) for m in METRIC_LEGEND)
