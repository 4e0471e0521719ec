"""A killed run, resumed, ends exactly where an uninterrupted one does: train() and the demo."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from revcurse.cli import app
from revcurse.lm.tiny import TinyModelConfig, build_tiny_model
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
    saved = torch.load(tmp_path / CHECKPOINT, weights_only=False)
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


def test_demo_killed_by_sigkill_resumes_to_identical_results(tmp_path):
    quick = ["--no-progress", "--world.facts-per-group", "8", "--train.batch-size", "32"]
    args = [*quick, "--train.steps", "200", "--train.checkpoint-every", "20"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert runner.invoke(app, ["demo", "--output-dir", str(whole), *args]).exit_code == 0

    command = [sys.executable, "-m", "revcurse.cli", "demo", "--output-dir", str(killed), *args]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}  # same numerics
    demo = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(f".{killed.name}*/checkpoint/{CHECKPOINT}")):
            assert demo.poll() is None, "the demo ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint written"
            time.sleep(0.01)
    finally:
        demo.kill()  # SIGKILL: nothing is cleaned up
        _, stderr = demo.communicate()
    [partial] = re.findall(r"revcurse demo --resume (\S+)\)", stderr)
    saved = torch.load(Path(partial) / "checkpoint" / CHECKPOINT, weights_only=False)
    assert 20 <= len(saved["progress"]["losses"]) < 200  # killed mid-training
    assert not killed.exists()

    result = runner.invoke(app, ["demo", "--resume", partial])
    assert result.exit_code == 0, result.output
    assert _results(killed) == _results(whole)
    assert {p.name for p in killed.iterdir()} == {p.name for p in whole.iterdir()}
    assert set(tmp_path.iterdir()) == {whole, killed}  # the partial folder became the run


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
