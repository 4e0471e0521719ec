"""Trained models kept under a key of everything that determines them, so that a later run
asking for the same training loads the weights instead of training again.

    key = fingerprint(start, corpus, asdict(config), seed)
    model, result = trained_once(cache_dir / key, start, lambda: train_a_copy_of(start))

compare, teach and the sweeps keep their baseline this way (revcurse.remedies.setting): a
SmolLM2 baseline takes about 9 minutes on 2 cores, and every later experiment on the same
facts starts from it. The key hashes the start weights themselves (not a model's name), so
a changed checkpoint, corpus, option or library version can never load a stale model.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from revcurse.results import RunDirExists, run_directory
from revcurse.train import TrainResult

if TYPE_CHECKING:
    from transformers import PreTrainedModel

WEIGHTS, RESULT = "model.safetensors", "train.json"


def fingerprint(start: torch.nn.Module, *spec: object) -> str:
    """A key of the start weights (every tensor's bytes), `spec` (JSON-able: the corpus,
    options, seed) and the torch and transformers versions (their numerics)."""
    import transformers

    digest = hashlib.sha256()
    versions = [torch.__version__, transformers.__version__]
    digest.update(json.dumps([versions, *spec], sort_keys=True, default=str).encode())
    for name, tensor in sorted(start.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()[:20]


def trained_once(
    folder: Path | None,
    start: PreTrainedModel,
    train_fn: Callable[[], tuple[PreTrainedModel, TrainResult]],
) -> tuple[PreTrainedModel, TrainResult]:
    """`train_fn()`'s model and result, kept in `folder` (None: not kept); when `folder`
    holds them already, a copy of `start` with the kept weights, and the kept result with
    this run's loading time as its seconds and the original's as `cached_seconds`."""
    if folder is None:
        return train_fn()
    if (folder / WEIGHTS).exists():
        from safetensors.torch import load_model

        begun = time.perf_counter()
        model = copy.deepcopy(start)
        load_model(model, folder / WEIGHTS)
        kept = json.loads((folder / RESULT).read_text(encoding="utf-8"))
        result = TrainResult(**{**kept, "curve": [tuple(point) for point in kept["curve"]]})
        seconds = time.perf_counter() - begun
        return _on_training_device(model), replace(
            result, seconds=seconds, cached_seconds=result.seconds
        )
    model, result = train_fn()
    _keep(folder, model, result)
    return model, result


def _keep(folder: Path, model: PreTrainedModel, result: TrainResult) -> None:
    from safetensors.torch import save_model

    try:
        with run_directory(folder) as scratch:  # atomic: kept whole or not at all
            save_model(model, str(scratch / WEIGHTS))  # tied weights saved once
            (scratch / RESULT).write_text(json.dumps(asdict(result)), encoding="utf-8")
    except RunDirExists:  # another run kept the same model first
        pass


def _on_training_device(model: PreTrainedModel) -> PreTrainedModel:
    """The model where train() would have left it (a GPU where there is one), in eval mode."""
    from revcurse.lm.models import device

    return model.to(device()).eval()
