"""The layout's rules (docs/architecture.md), checked on the source: imports run one way,
modules stay small, the command line starts without the heavy libraries, help is readable."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from revcurse.cli import app
from revcurse.config import _leaves, option_name
from revcurse.recipes.analyze import AnalyzeConfig
from revcurse.recipes.berglund import BerglundConfig
from revcurse.recipes.compare import CompareConfig
from revcurse.recipes.demo import DemoConfig
from revcurse.recipes.pairs import PairsConfig

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "revcurse"
MODULES = sorted(PACKAGE.rglob("*.py"))
HEAVY = ("transformers", "peft", "accelerate", "scipy", "matplotlib", "sentence_transformers")


def imported(path: Path) -> set[str]:
    """The revcurse modules a file imports, at any depth (type-checking imports aside)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    checking = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"
    ]
    skipped = {id(n) for block in checking for n in ast.walk(block)}
    names = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
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
            allowed = ("revcurse.lm", "revcurse.config", "revcurse.facts")
            assert all(d.startswith(allowed) for d in deps), (name, deps)
        if name.startswith("revcurse.remedies"):
            assert not any(d.startswith("revcurse.analysis") for d in deps), (name, deps)
        if not name.startswith(("revcurse.recipes", "revcurse.cli")):
            assert not any(d.startswith(("revcurse.recipes", "revcurse.cli")) for d in deps), name
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
