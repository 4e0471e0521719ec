"""A killed run, resumed, ends exactly where an uninterrupted one does: train() and the demo."""

from __future__ import annotations

import errno
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import PATIENCE, script
from typer.testing import CliRunner

from revcurse.cli import app
from revcurse.lm.tiny import TinyModelConfig, build_tiny_model
from revcurse.memory import out_of_memory
from revcurse.recipes.run import out_of_memory_line
from revcurse.results import run_directory
from revcurse.train import CHECKPOINT, TrainConfig, train

runner = CliRunner()


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_training_resumed_mid_epoch_matches_an_uninterrupted_run(small_world, tmp_path, finetune):
    _, train_examples, _, tokenizer = small_world  # 160 examples: 4 batches of 40 an epoch

    def run(steps, checkpoint_dir=None):
        torch.manual_seed(0)
        model = build_tiny_model(TinyModelConfig(), tokenizer)
        config = TrainConfig(steps=steps, batch_size=40, checkpoint_every=3, finetune=finetune)
        kwargs = {"progress": False, "checkpoint_dir": checkpoint_dir}
        return model, train(model, tokenizer, train_examples, config, 0, **kwargs)

    whole_model, whole = run(12)
    run(6, tmp_path)  # as if killed after its step-6 checkpoint, halfway through an epoch
    saved = torch.load(tmp_path / CHECKPOINT, weights_only=True)  # no pickle in a checkpoint
    assert saved["progress"]["losses"] == whole.losses[:6]
    resumed_model, resumed = run(12, tmp_path)
    assert resumed.losses == whole.losses and resumed.tokens == whole.tokens
    for (name, a), b in zip(
        whole_model.state_dict().items(), resumed_model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def _results(run_dir):
    results = json.loads((run_dir / "results.json").read_text())
    return results["rows"], {k: results["train"][k] for k in ("final_loss", "steps", "tokens")}


QUICK = ["--no-progress", "--world.facts-per-group", "8", "--train.batch-size", "32"]
ARGS = [*QUICK, "--train.steps", "200", "--train.checkpoint-every", "20"]


# Run in the demo's process first: writing samples.jsonl then takes a minute, so that a kill
# lands in the middle of writing the results (table.txt and samples.jsonl written, not yet
# results.json)
SLOW_WRITES = (
    "import time, revcurse.results as r; write = r.write_jsonl\n"
    "r.write_jsonl = lambda *a: (write(*a), time.sleep(60))\n"
)


@pytest.fixture
def killed_demo(tmp_path: Path, start_command):
    """`kill(name, when, prelude)`: a demo run killed with SIGKILL once `when` (a glob in its
    partial folder) exists; returns its partial folder."""

    def kill(name: str, when: str, prelude: str = "") -> Path:
        main = prelude + "from revcurse.cli import main; main()"
        command = [sys.executable, "-c", main, "demo", "--output-dir", str(tmp_path / name)]
        env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}  # same numerics
        demo = start_command(
            [*command, *ARGS], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
        )
        try:
            deadline = time.monotonic() + PATIENCE
            while not list(tmp_path.glob(f".{name}.partial-*/{when}")):
                assert demo.poll() is None, f"the demo ended before {when} appeared"
                assert time.monotonic() < deadline, f"no {when} written"
                time.sleep(0.005)
        finally:
            demo.kill()  # SIGKILL: nothing is cleaned up
            _, stderr = demo.communicate()
        [partial] = re.findall(r"revcurse demo --resume (\S+)\)", stderr)
        assert not (tmp_path / name).exists()
        return Path(partial)

    return kill


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    assert runner.invoke(app, ["demo", "--output-dir", str(run_dir), *ARGS]).exit_code == 0
    return run_dir


@pytest.mark.parametrize("point", ["training", "evaluation", "writing"])
def test_demo_killed_by_sigkill_resumes_to_identical_results(tmp_path, whole, point, killed_demo):
    """Killed while training (a checkpoint is there), while evaluating (the model is saved)
    or while writing its results (samples.jsonl written, results.json not yet)."""
    when = {
        "training": f"checkpoint/{CHECKPOINT}",
        "evaluation": "model/model.safetensors",
        "writing": "samples.jsonl",
    }[point]
    partial = killed_demo("killed", when, SLOW_WRITES if point == "writing" else "")
    saved = torch.load(partial / "checkpoint" / CHECKPOINT, weights_only=True)
    if point == "training":
        assert 20 <= len(saved["progress"]["losses"]) < 200  # killed mid-training
    if point == "writing":
        assert (partial / "table.txt").exists() and not (partial / "results.json").exists()
    result = runner.invoke(app, ["demo", "--resume", str(partial)])
    assert result.exit_code == 0, result.output
    killed = tmp_path / "killed"
    assert _results(killed) == _results(whole)
    assert {p.name for p in killed.iterdir()} == {p.name for p in whole.iterdir()}
    assert set(tmp_path.iterdir()) == {killed}  # the partial folder became the run


def test_a_corrupt_checkpoint_leaves_the_partial_run_as_it_was(tmp_path, killed_demo):
    partial = killed_demo("run", f"checkpoint/{CHECKPOINT}")
    checkpoint = partial / "checkpoint" / CHECKPOINT
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # truncated
    before = {p: p.read_bytes() for p in partial.rglob("*") if p.is_file()}
    result = runner.invoke(app, ["demo", "--resume", str(partial)])
    assert result.exit_code == 2
    assert f"{checkpoint}: cannot read the training checkpoint" in result.output
    assert f"retry: revcurse demo --resume {partial}" in result.output
    assert {p: p.read_bytes() for p in partial.rglob("*") if p.is_file()} == before


def test_resume_refuses_options_that_contradict_the_saved_config(tmp_path, killed_demo):
    partial = killed_demo("run", f"checkpoint/{CHECKPOINT}")
    result = runner.invoke(app, ["demo", "--resume", str(partial), "--train.steps", "45"])
    assert result.exit_code == 2
    assert "--train.steps: --resume finishes a run with its saved config (there 200" in (
        result.output
    )
    assert partial.is_dir()


def test_a_pickle_in_a_checkpoint_is_refused_not_run(tmp_path, killed_demo):
    """A run folder from someone else cannot execute code through its checkpoint."""
    partial = killed_demo("run", f"checkpoint/{CHECKPOINT}")
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"model": Payload()}, partial / "checkpoint" / CHECKPOINT)
    result = runner.invoke(app, ["demo", "--resume", str(partial)])
    assert result.exit_code == 2 and "cannot read the training checkpoint" in result.output
    assert not marker.exists()


def test_a_full_disk_leaves_no_half_written_run(tmp_path, monkeypatch):
    import revcurse.results

    def full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(revcurse.results, "write_json", full)
    run_dir = tmp_path / "run"
    result = runner.invoke(
        app, ["demo", "--output-dir", str(run_dir), *QUICK, "--train.steps", "3"]
    )
    assert result.exit_code == 2
    assert "No space left on device" in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []  # neither the run nor a partial folder


def test_two_kb_add_processes_at_once_lose_no_fact(tmp_path, start_command):
    from revcurse.records import write_records
    from revcurse.world import WorldConfig, generate_facts

    facts = generate_facts(WorldConfig(facts_per_group=100), 0)
    write_records(tmp_path / "one.jsonl", facts[:150])
    write_records(tmp_path / "two.jsonl", facts[150:])
    db = tmp_path / "kb.sqlite"
    adds = [
        start_command(
            [sys.executable, "-m", "revcurse.cli", "kb", "add", str(tmp_path / f), "--db", str(db)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for f in ("one.jsonl", "two.jsonl")
    ]
    outputs = [add.communicate(timeout=PATIENCE) for add in adds]
    assert [add.returncode for add in adds] == [0, 0], outputs
    assert sum(int(re.search(r"added (\d+) new", out).group(1)) for out, _ in outputs) == 300
    with sqlite3.connect(db) as check:
        assert check.execute("SELECT count(*) FROM facts").fetchone()[0] == 300


def test_resume_of_a_folder_without_config_exits_2(tmp_path):
    result = runner.invoke(app, ["demo", "--resume", str(tmp_path / "nothing")])
    assert result.exit_code == 2
    assert "config.yaml: cannot read config" in result.output


@pytest.mark.parametrize("resumable", [True, False])
def test_ctrl_c_keeps_a_resumable_partial_run_only(tmp_path, resumable):
    with pytest.raises(KeyboardInterrupt), run_directory(tmp_path / "run", resumable) as scratch:
        (scratch / "train_state.pt").write_text("checkpoint")
        raise KeyboardInterrupt
    assert scratch.exists() == resumable and not (tmp_path / "run").exists()
    with pytest.raises(RuntimeError), run_directory(tmp_path / "other", resumable=True) as failed:
        raise RuntimeError("a bug, not an interruption")
    assert not failed.exists()


def test_a_demo_past_max_memory_ends_in_one_line_with_status_3_and_resumes(tmp_path, start_command):
    """--max-memory: past it the run ends as it would on Ctrl-C (no kernel kill, no
    traceback): one line saying what ran out and what to lower, exit status 3, and the
    partial run kept for --resume."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "revcurse.cli", "demo", "--output-dir", str(out), *ARGS]
    demo = start_command([*command, "--max-memory", "0.3"], stderr=subprocess.PIPE, text=True)
    _, stderr = demo.communicate(timeout=PATIENCE)
    assert demo.returncode == 3, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("revcurse demo: out of memory") and "--train.batch-size" in last
    [partial] = re.findall(r"revcurse demo --resume (\S+)$", last)
    result = runner.invoke(app, ["demo", "--resume", partial])
    assert result.exit_code == 0, result.output
    assert (out / "results.json").exists()


def test_out_of_memory_is_told_from_other_errors():
    assert out_of_memory(MemoryError())
    assert out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried"))
    assert out_of_memory(OSError(errno.ENOMEM, "Cannot allocate memory"))
    try:
        try:
            raise MemoryError
        except MemoryError as error:
            raise ValueError("while handling it") from error
    except ValueError as chained:
        assert out_of_memory(chained)
    assert out_of_memory_line("demo", object(), MemoryError()) == (
        "revcurse demo: out of memory (MemoryError)"  # no message, no batch sizes, no run
    )
    assert not out_of_memory(ValueError("a bad value"))
    assert not out_of_memory(OSError(errno.ENOSPC, "No space left on device"))


def test_a_make_target_finishes_its_own_stopped_compare(tmp_path):
    """scripts/compare_or_resume.py: the newest partial run of its prefix, none of another."""
    compare_or_resume = script("compare_or_resume")
    prefix = tmp_path / "readme-edits"
    assert compare_or_resume.stopped_run(prefix) is None
    old, new = (tmp_path / f".readme-edits-2026010{d}-000000.partial-ab" for d in (1, 2))
    old.mkdir()
    new.mkdir()
    os.utime(old, (1, 1))
    (tmp_path / ".readme-edits-extra-20260103-000000.partial-zz").mkdir()  # another prefix's
    assert compare_or_resume.stopped_run(prefix) == new
    assert compare_or_resume.output_dir(new) == tmp_path / "readme-edits-20260102-000000"
