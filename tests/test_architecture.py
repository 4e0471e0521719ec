"""The layout's rules (docs/architecture.md), checked on the source: imports run one way,
modules stay small, the command line starts without the heavy libraries, help is readable."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PATIENCE
from typer.testing import CliRunner

from revcurse.cli import app
from revcurse.config import _leaves, option_name
from revcurse.recipes.analyze import AnalyzeConfig
from revcurse.recipes.berglund import BerglundConfig
from revcurse.recipes.compare import CompareConfig
from revcurse.recipes.demo import DemoConfig
from revcurse.recipes.pairs import PairsConfig
from revcurse.recipes.teach import TeachConfig
from revcurse.records import dumps_records
from revcurse.world import WorldConfig, generate_facts

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "revcurse"
MODULES = sorted(PACKAGE.rglob("*.py"))
HEAVY = ("transformers", "peft", "accelerate", "scipy", "matplotlib", "sentence_transformers")


def imported(path: Path) -> set[str]:
    """The revcurse modules a file imports, at any depth, those under TYPE_CHECKING too (a
    type is a dependency as well: the layers hold for it)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.split(".")[0] == "revcurse"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_imports_run_one_way():
    for path in MODULES:
        name, deps = module_name(path), imported(path)
        if name.startswith("revcurse.lm"):
            allowed = ("revcurse.lm", "revcurse.config", "revcurse.facts", "revcurse.progress")
            allowed += ("revcurse.errors",)  # usable from any layer
            assert all(d.startswith(allowed) for d in deps), (name, deps)
        if name.startswith("revcurse.remedies"):
            assert not any(d.startswith("revcurse.analysis") for d in deps), (name, deps)
        top = ("revcurse.recipes", "revcurse.cli", "revcurse.api")  # the commands, two ways
        if not name.startswith(top):
            assert not any(d.startswith(top) for d in deps), name
        # batching lives in revcurse.lm: nobody imports the training loop for it
        if "revcurse.train" in deps:
            tree = ast.parse(path.read_text(encoding="utf-8"))
            names = {
                alias.name
                for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module == "revcurse.train"
                for alias in node.names
            }
            assert not names & {"IGNORE", "encode", "collate", "Collate"}, (name, names)


def test_only_the_command_line_and_the_api_import_compare():
    """compare's options and run are compare's own: the setup every recipe shares is in
    recipes.remedy_run, and teach needs nothing of compare's."""
    for path in MODULES:
        name, deps = module_name(path), imported(path)
        if name not in ("revcurse.cli", "revcurse.api"):
            assert "revcurse.recipes.compare" not in deps, name
        if name == "revcurse.recipes.teach":
            assert not any(d.startswith("revcurse.recipes.compare") for d in deps), deps


def test_no_module_is_over_400_lines():
    long = {module_name(p): n for p in MODULES if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


def test_the_command_line_imports_no_heavy_library():
    code = f"import sys, revcurse.cli; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("command", "config"),
    [
        ("demo", DemoConfig),
        ("berglund", BerglundConfig),
        ("pairs", PairsConfig),
        ("compare", CompareConfig),
        ("analyze", AnalyzeConfig),
        ("teach", TeachConfig),
    ],
)
def test_help_shows_every_option_whole_in_80_columns(command, config):
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    for path, *_ in _leaves(config()):
        flag = option_name(path)
        assert any(line.lstrip().startswith(flag) for line in lines), flag


def test_nothing_a_user_gives_is_unpickled():
    """Checkpoints load with weights_only=True; no module unpickles anything."""
    for path in MODULES:
        text = path.read_text(encoding="utf-8")
        assert "weights_only=False" not in text, path
        assert "import pickle" not in text and "pickle.load" not in text, path


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    """`revcurse ARGS` in a fresh process whose stderr is a pipe, not a terminal."""
    command = [sys.executable, "-c", "from revcurse.cli import main; main()", *args]
    return subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **env}, timeout=PATIENCE
    )


def test_facts_commands_load_no_torch_and_need_no_writable_home(tmp_path):
    (tmp_path / "facts.jsonl").write_text(dumps_records(generate_facts(WorldConfig(2), 0)))
    code = (
        "import sys; from revcurse.cli import main\n"
        "try:\n    main()\nexcept SystemExit as done:\n"
        "    print(sorted(m for m in ('torch', 'transformers', 'matplotlib') if m in sys.modules),"
        " done.code)"
    )
    home = str(tmp_path / "facts.jsonl" / "home")  # inside a file: nothing can be made there
    done = subprocess.run(
        [sys.executable, "-c", code, "facts", "validate", str(tmp_path / "facts.jsonl")],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": home, "MPLCONFIGDIR": home, "XDG_CACHE_HOME": home},
    )
    assert done.stdout.splitlines() == [f"{tmp_path / 'facts.jsonl'}: ok (6 facts)", "[] 0"]
    assert done.stderr == ""


def test_an_unexpected_error_is_one_line_and_a_log(tmp_path, monkeypatch, capsys):
    import revcurse.cli
    import revcurse.recipes.facts

    def broken(path):
        raise KeyError("a bug")

    monkeypatch.setattr(revcurse.recipes.facts, "validate", broken)
    monkeypatch.setattr(revcurse.cli, "LOGS", tmp_path / "logs")
    monkeypatch.setattr(sys, "argv", ["revcurse", "facts", "validate", "x.jsonl"])
    with pytest.raises(SystemExit) as done:
        revcurse.cli.main()
    assert done.value.code == 1
    [line] = capsys.readouterr().err.splitlines()
    [log] = (tmp_path / "logs").iterdir()
    assert line == (
        "revcurse: internal error (KeyError: 'a bug'), not your input: the traceback is in "
        f"{log}; please report it"
    )
    assert "Traceback" in log.read_text() and "a bug" in log.read_text()


def test_a_remedys_own_value_error_is_an_internal_error_not_bad_input(
    tmp_path, monkeypatch, capsys
):
    """A ValueError that is no user's mistake (a zip(strict=True) of unequal lists, say)
    is reported as ours: exit 1, never the one line of bad input."""
    import dataclasses

    import revcurse.cli
    from revcurse.remedies import REMEDIES

    def broken(setting, method):
        zip([1], [], strict=True).__next__()

    monkeypatch.setitem(
        REMEDIES, "in_context", dataclasses.replace(REMEDIES["in_context"], apply=broken)
    )
    monkeypatch.setattr(revcurse.cli, "LOGS", tmp_path / "logs")
    tiny = ["--seeds", "1", "--world.facts-per-group", "2", "--train.steps", "2", "--no-progress"]
    tiny += ["--remedies.reading-documents", "10", "--reader.documents", "10"]
    tiny += ["--reader.world-facts", "0"]
    tiny += ["--reader.train.steps", "1", "--reader.cache-dir", str(tmp_path / "reader")]
    command = [
        "revcurse",
        "compare",
        "--methods",
        "in_context",
        "--output-dir",
        str(tmp_path / "r"),
    ]
    monkeypatch.setattr(sys, "argv", [*command, *tiny])
    with pytest.raises(SystemExit) as done:
        revcurse.cli.main()
    assert done.value.code == 1
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("revcurse: internal error (ValueError: zip() argument 2 is shorter")
    assert "the traceback is in" in last and not (tmp_path / "r").exists()


def test_usage_errors_are_clicks_own_lines_not_internal_errors():
    bare = run_cli()
    assert bare.returncode == 2 and "Commands:" in bare.stdout + bare.stderr
    unknown = run_cli("nosuch")
    assert unknown.returncode == 2 and "No such command 'nosuch'" in unknown.stderr
    assert "internal error" not in bare.stderr + unknown.stderr


def test_progress_in_a_log_is_a_line_every_few_percent(tmp_path):
    done = run_cli(
        "demo",
        "--output-dir",
        str(tmp_path / "run"),
        "--world.facts-per-group",
        "4",
        "--train.steps",
        "200",
        "--train.batch-size",
        "16",
    )
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr
    train = [line for line in done.stderr.splitlines() if line.startswith("train:")]
    assert 15 <= len(train) <= 25, train  # a line per 5% of 200 steps, not one per step
    assert train[-1].startswith("train: 100%")
