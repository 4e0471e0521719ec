"""A parallel `compare` ends whole, whatever ends it: Ctrl-C at any moment, or its main
process killed outright. No worker outlives its run, and no test leaves one behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from conftest import PATIENCE, cpu_seconds, processes_left, session_processes
from typer.testing import CliRunner

from revcurse.cli import app
from revcurse.recipes.compare_units import worker_pool

runner = CliRunner()

SEEDS, METHODS = 2, ["baseline", "bidirectional"]
RUNS = SEEDS * len(METHODS)  # method runs, each one summary line; 4 units on 2 workers


@pytest.fixture(scope="module")
def reader_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("reader-cache")  # the tiny reader, trained by the first run


def compare_command(out: Path, cache: Path, steps: int) -> list[str]:
    args = ["--seeds", str(SEEDS), "--workers", "2", "--world.facts-per-group", "4"]
    args += ["--train.steps", str(steps), "--methods", ",".join(METHODS), "--no-progress"]
    args += ["--remedies.reading-documents", "40", "--reader.documents", "20"]
    args += ["--reader.world-facts", "0"]
    args += ["--reader.train.steps", "2", "--reader.cache-dir", str(cache)]
    return [sys.executable, "-m", "revcurse.cli", "compare", "--output-dir", str(out), *args]


def read_until(process: subprocess.Popen, done, what: str) -> list[str]:
    """Its stderr lines up to the first for which `done(lines so far)` holds."""
    lines: list[str] = []
    deadline = time.monotonic() + PATIENCE
    while not lines or not done(lines):
        line = process.stderr.readline()
        assert line or process.poll() is None, f"compare ended before {what}: {lines}"
        assert time.monotonic() < deadline, f"no {what} in {PATIENCE} s: {lines}"
        lines.append(line)
    return lines


def summaries(lines: list[str]) -> int:
    """How many method runs have finished: "  seed 0 baseline  p2d same 0.95, ..." lines."""
    return sum(bool(re.match(r"\s+seed \d+ \w", line)) for line in lines)


# Moments of a parallel compare, each a condition on its stderr so far, and a pause after it
MOMENTS = {
    # the main process alone: worlds built, no worker yet
    "before the workers": (lambda lines: "seed 0:" in lines[-1], 0.0),
    # the workers are being started and import torch and revcurse
    "as the workers start": (lambda lines: "worker processes" in lines[-1], 0.0),
    "while they import": (lambda lines: "worker processes" in lines[-1], 2.0),
    # one unit done, the others training or evaluating
    "while they train (a summary)": (lambda lines: summaries(lines) == 1, 0.0),
    # every unit done: the table, charts and results being written
    "while results are written (every summary)": (lambda lines: summaries(lines) == RUNS, 0.0),
}


@pytest.mark.parametrize("moment", MOMENTS)
def test_ctrl_c_ends_a_parallel_compare_at_any_moment(
    tmp_path, reader_cache, start_command, moment
):
    """Ctrl-C reaches the whole process group, as a terminal sends it: every process of the
    run ends within 5 s, with no traceback and no run folder; the partial one is kept for
    --resume once a method's run is finished in it, and said so."""
    out = tmp_path / "run"
    steps = 60 if "summary" in moment else 100_000  # the last two: units that finish
    compare = start_command(
        compare_command(out, reader_cache, steps), stderr=subprocess.PIPE, text=True
    )
    done, pause = MOMENTS[moment]
    read_until(compare, done, moment)
    time.sleep(pause)
    os.killpg(compare.pid, signal.SIGINT)
    sent = time.monotonic()
    _, stderr = compare.communicate(timeout=30)
    assert processes_left(compare.pid, 5 - (time.monotonic() - sent)) == []
    assert compare.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    assert not out.exists()
    kept = list(tmp_path.glob(".run.partial-*"))
    assert len(kept) == ("summary" in moment), kept
    assert all(f"partial run kept: revcurse compare --resume {p}\n" in stderr for p in kept)


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """This process raises KeyboardInterrupt on SIGINT, as from a terminal, even when the
    suite runs from a background job (`nohup make test &`), which ignores SIGINT."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_ctrl_c_as_the_workers_pool_shuts_down_waits_for_its_end(monkeypatch, ctrl_c_raises):
    """Ctrl-C as the pool shuts down (every unit done, the results being written) is raised
    once the shutdown is over, not in its midst, whichever thread it reached: cut short,
    the shutdown leaves the pool's thread closing its pipe while Python exits, and CPython
    3.11 may write to the closed pipe (a traceback at exit; seen in CI)."""
    shutdown = ProcessPoolExecutor.shutdown
    ended: list[bool] = []

    def interrupted(pool: ProcessPoolExecutor, *args, **kwargs) -> None:
        threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGINT)).start()
        time.sleep(0.5)  # the signal is in; the shutdown has not begun
        shutdown(pool, *args, **kwargs)
        ended.append(pool._executor_manager_thread is None)  # its thread joined

    monkeypatch.setattr(ProcessPoolExecutor, "shutdown", interrupted)
    with pytest.raises(KeyboardInterrupt), worker_pool(1, int, ()) as pool:
        assert pool.submit(abs, -1).result() == 1
    assert ended == [True]


def test_workers_end_when_the_main_process_is_killed(tmp_path, reader_cache, start_command):
    """`kill -9` of the main process (or the kernel's out-of-memory kill) runs no clean-up;
    its workers notice that their parent is gone and end within seconds."""
    compare = start_command(
        compare_command(tmp_path / "run", reader_cache, 100_000),
        stderr=subprocess.PIPE,
        text=True,
    )
    read_until(compare, lambda lines: "worker processes" in lines[-1], "workers")
    deadline = time.monotonic() + PATIENCE

    def training() -> int:
        """Workers past their imports (~5 s of processor time), however busy the machine."""
        others = [p for p in session_processes(compare.pid) if p != compare.pid]
        return sum(cpu_seconds(p) > 10 for p in others)

    while training() < 2:
        assert time.monotonic() < deadline, "the workers never started training"
        time.sleep(0.2)
    compare.kill()
    compare.wait()
    assert processes_left(compare.pid, 10) == []


def test_two_processes_train_one_demo_with_the_results_of_one(tmp_path, start_command):
    """A distributed launch on CPU (torchrun, which accelerate reads; `accelerate launch
    --cpu` starts one process only): each process trains on half of every batch with the
    gradients averaged, only the first writes, and the run is the one-process run's (to
    float rounding and the last batch, which accelerate completes from the epoch's start)."""
    args = ["demo", "--world.facts-per-group", "10", "--train.steps", "200", "--no-progress"]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
    out = tmp_path / "two"
    two = start_command(
        [*launch, "2", "-m", "revcurse.cli", *args, "--output-dir", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    stdout, stderr = two.communicate(timeout=PATIENCE)
    assert two.returncode == 0, stderr
    assert stdout.count("Reversal curse") == 1  # the table, told once
    assert [p.name for p in tmp_path.iterdir()] == ["two"]  # one run folder, nothing else
    one = runner.invoke(app, [*args, "--output-dir", str(tmp_path / "one")])
    assert one.exit_code == 0, one.output
    rows = {}
    for name in ("one", "two"):
        results = json.loads((tmp_path / name / "results.json").read_text())
        rows[name] = {
            (r["group"], r["direction"]): r["value"]
            for r in results["rows"]
            if r["metric"] == "exact_match"
        }
    assert rows["two"] == pytest.approx(rows["one"], abs=0.1)
    assert rows["two"][("p2d", "same")] >= 0.9 and rows["two"][("p2d", "reverse")] <= 0.1
    assert rows["two"][("d2p", "same")] >= 0.9 and rows["two"][("d2p", "reverse")] <= 0.1


def test_a_killed_compare_resumes_with_the_results_of_an_uninterrupted_one(
    tmp_path, reader_cache, start_command
):
    """`kill -9` during the second unit keeps the partial run with the first unit's results;
    --resume runs only the second and ends as an uninterrupted run does."""

    def compare(out: Path, *more: str) -> subprocess.Popen:
        command = compare_command(out, reader_cache, 60)
        command[command.index("--seeds") + 1] = "1"
        command[command.index("--workers") + 1] = "1"  # one unit after the other
        return start_command([*command, *more], stderr=subprocess.PIPE, text=True)

    whole = compare(tmp_path / "whole")
    assert whole.wait(PATIENCE) == 0, whole.stderr.read()
    killed = compare(tmp_path / "run")
    read_until(killed, lambda lines: summaries(lines) == 1, "the first unit's summary")
    killed.kill()
    killed.wait()
    (partial,) = tmp_path.glob(".run.partial-*")
    assert [p.name for p in (partial / "units").iterdir()] == ["seed0-baseline.json"]

    resumed = start_command(
        [
            *compare_command(Path("-"), reader_cache, 60)[:4],
            "--resume",
            str(partial),
            "--no-progress",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    _, stderr = resumed.communicate(timeout=PATIENCE)
    assert resumed.returncode == 0, stderr
    assert [line.split()[2] for line in stderr.splitlines() if summaries([line])] == [
        "bidirectional"
    ]
    assert not partial.exists()
    results = [json.loads((tmp_path / n / "results.json").read_text()) for n in ("whole", "run")]
    for key in ("rows", "seed_rows"):
        assert results[0][key] == results[1][key]
    samples = [(tmp_path / n / "samples.jsonl").read_text() for n in ("whole", "run")]
    assert samples[0] == samples[1]
