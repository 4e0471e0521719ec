"""Shared fixtures: a small controlled world and a tiny model trained on it once per session;
commands started as processes, and the check that they all end."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import time
import types
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
import torch

from revcurse.facts import expand
from revcurse.lm.tiny import TinyModelConfig, build_tiny_model
from revcurse.lm.tokenizer import build_word_tokenizer
from revcurse.train import TrainConfig, train
from revcurse.world import TEMPLATES, WorldConfig, generate_facts

# every result row's keys (revcurse.stats.row)
ROW_KEYS = {
    *("method", "group", "direction", "metric"),
    *("value", "n", "facts", "trials", "ci_low", "ci_high"),
}


@pytest.fixture(scope="session")
def small_world():
    facts = generate_facts(WorldConfig(facts_per_group=8), seed=0)
    train_examples, test_examples = expand(facts, TEMPLATES)
    tokenizer = build_word_tokenizer(
        e.prompt + " " + e.completion for e in train_examples + test_examples
    )
    return facts, train_examples, test_examples, tokenizer


@pytest.fixture
def concept_setting(tmp_path):
    """The Setting of a small world (4 facts a group), a reader of 2 steps, 3 training steps:
    what the concept models' unit tests build on."""
    from revcurse.reader import ReaderConfig
    from revcurse.recipes.compare import CompareConfig
    from revcurse.recipes.remedy_run import build_setting, starting_point

    config = CompareConfig(world=WorldConfig(facts_per_group=4), progress=False)
    config.train = TrainConfig(steps=3, batch_size=16)
    config.reader = ReaderConfig(
        documents=20, world_facts=0, train=TrainConfig(steps=2), cache_dir=tmp_path
    )
    return build_setting(config, seed=0, workdir=tmp_path, start=starting_point(config))


@pytest.fixture(scope="session")
def trained(small_world):
    """A tiny model that has learned the small world (a few seconds on CPU)."""
    _, train_examples, _, tokenizer = small_world
    torch.manual_seed(0)
    model = build_tiny_model(TinyModelConfig(), tokenizer)
    train(model, tokenizer, train_examples, TrainConfig(steps=150), seed=0, progress=False)
    return model, tokenizer


@pytest.fixture
def small_compare(tmp_path) -> Callable[[list[str]], dict[tuple[str, str, str], float]]:
    """Runs `revcurse compare` of some methods on a small world (8 facts a group, no reading
    documents, a reader of 2 steps, 250 steps of 64; one seed; its run in tmp_path/"run",
    with the models of `keep`): exact match by (method, group, direction)."""
    from revcurse.reader import ReaderConfig
    from revcurse.recipes.compare import CompareConfig, run_compare

    def run(methods: list[str], keep: list[str] | None = None) -> dict[tuple[str, str, str], float]:
        config = CompareConfig(
            world=WorldConfig(facts_per_group=8), methods=methods, keep_models=keep or []
        )
        config.remedies.reading_documents = 0
        config.train = TrainConfig(steps=250, batch_size=64)
        config.seeds, config.progress, config.output_dir = 1, False, tmp_path / "run"
        config.reader = ReaderConfig(
            documents=10, world_facts=0, train=TrainConfig(steps=2), cache_dir=tmp_path
        )
        rows = json.loads((run_compare(config) / "results.json").read_text())["rows"]
        return {
            (r["method"], r["group"], r["direction"]): r["value"]
            for r in rows
            if r["metric"] == "exact_match"
        }

    return run


@pytest.fixture
def kept_and_analyzed() -> Callable[..., dict[tuple[str, str, str], float]]:
    """Checks a compare run's kept model `lm` of `method` answers as it did in the run, then
    runs `revcurse analyze` on the run into `out`: its rows' values by (method, group, metric)."""
    from typer.testing import CliRunner

    from revcurse.cli import app

    def check(run: Path, method: str, lm: Any, out: Path) -> dict[tuple[str, str, str], float]:
        samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
        ours = [s for s in samples if s["method"] == method][::7]
        assert lm.generate([s["prompt"] for s in ours], 24) == [s["output"] for s in ours]
        result = CliRunner().invoke(app, ["analyze", str(run), "--output-dir", str(out)])
        assert result.exit_code == 0, result.output
        assert {p.name for p in out.iterdir()} >= {"results.json", "table.txt", "roles.png"}
        rows = json.loads((out / "results.json").read_text())["rows"]
        return {(r["method"], r["group"], r["metric"]): r["value"] for r in rows}

    return check


# Seconds a test waits for a process to get somewhere before calling it stuck: far past what
# a machine busy with other work needs (a test is no timing test), short of CI's limit
PATIENCE = 900


def script(name: str) -> types.ModuleType:
    """scripts/NAME.py, imported from its file (scripts/ is not a package)."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def session_processes(session: int) -> list[int]:
    """The live processes of a session: a command started in a session of its own and every
    process it started, orphans included (an orphan keeps its session). Linux's /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:  # "pid (name) state ppid pgrp session ...": the name may hold spaces
            state, _, _, session_id = stat.read_text().rsplit(")", 1)[1].split()[:4]
        except OSError:  # it ended meanwhile
            continue
        if int(session_id) == session and state != "Z":
            found.append(int(stat.parent.name))
    return found


def cpu_seconds(pid: int) -> float:
    """The processor time a process has used so far (0 once it has ended)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # user + system


def processes_left(session: int, seconds: float) -> list[int]:
    """The session's processes still alive after waiting up to `seconds` for them to end."""
    deadline = time.monotonic() + seconds
    while (left := session_processes(session)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def interruptible() -> None:
    """SIGINT back to its default in a child about to run a command (a Python one then
    raises KeyboardInterrupt on it, as it does when started from a terminal)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def start_command() -> Iterator[Callable[..., subprocess.Popen]]:
    """Start a command (subprocess.Popen's arguments) in a session of its own, as a shell
    starts a job. A test that starts processes ends them: when it ends, every process of
    those sessions (workers and orphans included) must be gone within 10 s; any left is
    killed and fails the test, so that no test leaves a process training beside the next."""
    started: list[subprocess.Popen] = []

    def start(command: list[str], **options) -> subprocess.Popen:
        # Ctrl-C reaches it as from a terminal, even when the suite runs from a background
        # job (`nohup make test &`), whose children inherit an ignored SIGINT
        process = subprocess.Popen(
            command, start_new_session=True, preexec_fn=interruptible, **options
        )
        started.append(process)
        return process

    yield start
    left = {process.pid: processes_left(process.pid, 10) for process in started}
    for process in started:
        if left[process.pid]:
            with suppress(ProcessLookupError):  # they ended meanwhile
                os.killpg(process.pid, signal.SIGKILL)
        process.kill()  # a no-op if it ended
        process.wait()
    if any(left.values()):
        pytest.fail(f"processes left running, now killed: {left}")
