"""One training loop for every model: completion-only loss, seeded, resumable, accelerate-ready.

    accelerate launch -m revcurse.cli demo   # the same loop on several GPUs, unchanged

Prompt tokens are masked out of the loss (label -100), as in Berglund et al.: training
asks only for p(completion | prompt), which is what makes the stored map one-way.
Pretrained models are fine-tuned through LoRA adapters (peft) by default, merged back into
the model when training ends. Given a checkpoint folder, the whole training state is saved
there every `checkpoint_every` steps, and a killed run started again continues from it to
the very weights an uninterrupted run ends with (bitwise on CPU).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

import numpy as np
import torch
from torch.utils.data import DataLoader

from revcurse.config import check, choice
from revcurse.converge import Plateau
from revcurse.errors import UserError
from revcurse.facts import Example
from revcurse.lm.batching import Collate, collate, encode
from revcurse.lm.scoring import label_logits
from revcurse.progress import bar as progress_bar

if TYPE_CHECKING:
    from accelerate import Accelerator
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

Finetune = Literal["auto", "full", "lora"]
Budget = Literal["matched", "converged"]
Decay = Literal["none", "linear", "cosine"]
FINETUNE_MODES: tuple[Finetune, ...] = get_args(Finetune)
BUDGETS: tuple[Budget, ...] = get_args(Budget)
DECAYS: tuple[Decay, ...] = get_args(Decay)
CHECKPOINT = "train_state.pt"  # the file in the checkpoint folder


@dataclass
class TrainConfig:
    # enough for 100% recall of the trained facts at lr 3e-3
    steps: int = 400
    """optimizer steps"""
    lr: float = 3e-3  # tiny models from scratch tolerate (and need) a high rate
    """AdamW's peak learning rate"""
    batch_size: int = 256  # 8x cheaper than all, same recall
    """examples per step (0 = all)"""
    weight_decay: float = 0.0  # decay erodes memorised facts; the curse needs none
    """AdamW's weight decay"""
    warmup_steps: int = 20  # keeps the first high-lr steps stable
    """steps of linear warm-up from 0 to lr"""
    decay: Decay = "none"
    """lr after warm-up: none (constant), linear or cosine (to 0 at the end)"""
    finetune: Finetune = "auto"
    """auto (lora for pretrained models, full from scratch), full or lora"""
    lora_rank: int = 16
    """rank of the LoRA adapters"""
    lora_alpha: int = 32
    """LoRA updates are scaled by alpha / rank"""
    lora_targets: list[str] = field(default_factory=lambda: ["all-linear"])
    """modules given adapters: all-linear, or their names (q_proj,v_proj,...)"""
    checkpoint_every: int = 100
    """steps between resumable checkpoints (0 = none)"""
    # a third of a random batch is padding; LengthGroupedSampler draws 50 batches' worth,
    # sorts them by length and cuts them (1.3x faster SmolLM2 steps on 2 cores)
    group_by_length: bool = False
    """batches of like lengths (less padding)"""

    def __post_init__(self) -> None:
        check(self.steps >= 1, "steps", f"must be at least 1, got {self.steps}")
        check(self.lr > 0, "lr", f"must be positive, got {self.lr}")
        check(self.batch_size >= 0, "batch_size", f"must be 0 (all) or more, got {self.batch_size}")
        check(self.weight_decay >= 0, "weight_decay", f"must be 0 or more, got {self.weight_decay}")
        check(self.warmup_steps >= 0, "warmup_steps", f"must be 0 or more, got {self.warmup_steps}")
        choice(self.decay, "decay", DECAYS)
        choice(self.finetune, "finetune", FINETUNE_MODES)
        check(self.lora_rank >= 1, "lora_rank", f"must be at least 1, got {self.lora_rank}")
        check(self.lora_alpha >= 1, "lora_alpha", f"must be at least 1, got {self.lora_alpha}")
        check(
            self.checkpoint_every >= 0,
            "checkpoint_every",
            f"must be 0 (none) or more, got {self.checkpoint_every}",
        )


def lr_factor(step: int, config: TrainConfig) -> float:
    """The learning rate at `step` as a fraction of `config.lr`: warm-up, then the decay."""
    warm = min(1.0, (step + 1) / max(1, config.warmup_steps))
    done = max(0, step + 1 - config.warmup_steps) / max(1, config.steps + 1 - config.warmup_steps)
    if config.decay == "linear":
        return warm * (1.0 - min(1.0, done))
    if config.decay == "cosine":
        return warm * 0.5 * (1.0 + math.cos(math.pi * min(1.0, done)))
    return warm


def _uses_lora(config: TrainConfig, pretrained: bool) -> bool:
    """LoRA when asked for, and by default (`auto`) for pretrained models."""
    return config.finetune == "lora" or (config.finetune == "auto" and pretrained)


def with_lora(model: PreTrainedModel, config: TrainConfig) -> PeftModel:
    """`model` with trainable LoRA adapters and frozen weights (peft changes it in place)."""
    from peft import LoraConfig, get_peft_model

    targets = config.lora_targets
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=0.0,
        target_modules="all-linear" if targets == ["all-linear"] else targets,
    )
    with warnings.catch_warnings():  # peft reads an attribute transformers 5 deprecates
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
        return get_peft_model(model, lora)


def adamw(model: torch.nn.Module, lr: float, weight_decay: float, fused: bool) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; `fused` into one kernel where torch has one (CPU,
    CUDA): on 2 cores the per-parameter loop took 0.45-0.6 s a step of SmolLM2, fused 0.13.
    train() fuses for pretrained models only: a tiny model's step is milliseconds either way,
    and the loop keeps its published results exact (fusing changes float rounding)."""
    params = [p for p in model.parameters() if p.requires_grad]
    fused = fused and all(
        p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params
    )
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused)


def _grouped(
    features: Sequence[tuple[list[int], list[int]]], batch_size: int, order: torch.Generator
):
    """The examples' order for batches of like lengths, drawn afresh each epoch from `order`."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    return LengthGroupedSampler(
        batch_size, lengths=[len(ids) for ids, _ in features], generator=order
    )


@dataclass
class TrainResult:
    losses: list[float]  # one per step
    tokens: int  # real (non-padding) tokens processed
    seconds: float
    flops: float  # 6 x parameters x tokens (forward + backward; Kaplan et al. 2020)
    curve: list[tuple[int, float]] = field(default_factory=list)  # Plateau's measurements
    # Loaded from the cache (revcurse.trained): the seconds its training took when it was
    # trained; `seconds` is then the time it took to load
    cached_seconds: float | None = None


LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor]


def completion_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The causal LM loss (mean over labelled tokens, as `model(**batch).loss`), with the
    output layer run only at the positions that predict a label (lm.scoring.label_logits):
    only answers are labelled, and a reading document is mostly unlabelled context."""
    logits, labels, _ = label_logits(model, batch)
    return torch.nn.functional.cross_entropy(logits.float(), labels)


def _whole_batch(
    accelerator: Accelerator, loss: torch.Tensor, mask: torch.Tensor
) -> tuple[float, int]:
    """The step's loss and real tokens over the whole batch: on several processes, each
    holds a share of it (the mean of their losses, the sum of their tokens)."""
    if accelerator.num_processes == 1:
        return loss.item(), int(mask.sum())
    tokens = accelerator.reduce(mask.sum(), "sum")
    return accelerator.reduce(loss.detach(), "mean").item(), int(tokens)


@dataclass
class _Progress:
    """How far training got: what a checkpoint holds besides weights, optimizer and RNGs."""

    losses: list[float] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
    epoch_step: int = 0  # the step the current epoch began at
    epoch_order: torch.Tensor | None = None  # the shuffle generator's state when it began


def _rng_state() -> dict[str, Any]:
    """Every generator's state in types `torch.load(weights_only=True)` reads (no pickle)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    name, keys, position, has_gauss, gauss = cast(tuple, np.random.get_state(legacy=True))
    return {
        "python": random.getstate(),
        "numpy": (name, keys.tolist(), position, has_gauss, gauss),
        "torch": torch.get_rng_state(),
        "cuda": cuda,
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


def _trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}


def _save_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: Any, schedule: Any, progress: _Progress
) -> None:
    """The trained weights (LoRA: the adapters), optimizer, schedule, RNGs and progress,
    atomically: a kill while writing leaves the previous checkpoint whole."""
    state = {
        "model": _trainable(model),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "rng": _rng_state(),
        "progress": dataclasses.asdict(progress),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def _load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: Any, schedule: Any
) -> _Progress:
    try:  # weights_only: tensors and plain values, never code from a folder someone sent
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, corrupt or not ours: one line, the run kept
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{path}: cannot read the training checkpoint ({first[:200]})") from None
    if state["model"].keys() != _trainable(model).keys():
        raise UserError(f"{path}: a checkpoint of another model or fine-tuning mode")
    model.load_state_dict(state["model"], strict=False)
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    _set_rng_state(state["rng"])
    return _Progress(**state["progress"])


def train(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    config: TrainConfig,
    seed: int,
    progress: bool = True,
    collate_fn: Collate | None = None,
    pretrained: bool = False,
    checkpoint_dir: Path | None = None,
    loss_fn: LossFn | None = None,
    plateau: Plateau | None = None,
) -> TrainResult:
    """Train in place. `collate_fn` turns encoded examples into a batch with labels; the
    default is the causal LM's right-padded batch (other objectives, e.g. MLM-U, pass theirs).
    `pretrained` models get LoRA adapters under `finetune: auto`, merged into `model` at the
    end. With `checkpoint_dir`, training continues from the checkpoint found there, if any.
    `loss_fn(model, batch)` replaces the model's own loss (e.g. distillation's KL); pretrained
    models default to `completion_loss`, the same loss for a fraction of the output layer's
    cost (the tiny model keeps `model(**batch).loss`, and its published results exact). With
    `plateau`, training ends before `config.steps` once it says so."""
    # imported here: the CLI reads TrainConfig alone
    from accelerate import Accelerator, DataLoaderConfiguration
    from accelerate.utils import set_seed

    lora = _uses_lora(config, pretrained)
    loss_fn = loss_fn or (completion_loss if pretrained else None)
    # several processes (accelerate launch) share each batch out: the same steps of the
    # same batches as one process, the gradients averaged
    accelerator = Accelerator(dataloader_config=DataLoaderConfiguration(split_batches=True))
    set_seed(seed)
    trainee = with_lora(model, config) if lora else model
    features = encode(tokenizer, [(e.prompt, e.completion) for e in examples], eos=True)
    batch_size = config.batch_size or len(features)
    order = torch.Generator().manual_seed(seed)  # the shuffle: one permutation per epoch
    loader: DataLoader[Any] = DataLoader(
        features,  # type: ignore[arg-type]  # a list is a map-style dataset
        batch_size=batch_size,
        shuffle=not config.group_by_length,
        sampler=_grouped(features, batch_size, order) if config.group_by_length else None,
        generator=order,
        collate_fn=collate_fn or (lambda batch: collate(batch, tokenizer.pad_token_id)),
    )
    optimizer = adamw(trainee, config.lr, config.weight_decay, fused=pretrained)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))
    trainee, optimizer, loader, schedule = accelerator.prepare(trainee, optimizer, loader, schedule)
    unwrapped = accelerator.unwrap_model(trainee)
    checkpoint = checkpoint_dir / CHECKPOINT if checkpoint_dir and config.checkpoint_every else None
    done = _Progress()  # an epoch resumes from its shuffle's state, minus the batches used
    if checkpoint is not None and checkpoint.exists():
        done = _load_checkpoint(checkpoint, unwrapped, optimizer, schedule)
        if done.epoch_order is not None:  # a checkpoint always holds it
            order.set_state(done.epoch_order)
    start = time.perf_counter() - done.seconds
    trainee.train()
    bar = progress_bar(
        initial=len(done.losses),
        total=config.steps,
        desc="train",
        unit="step",
        disable=not progress or not accelerator.is_main_process,
    )
    stopped = False
    while len(done.losses) < config.steps and not stopped:
        done.epoch_order = order.get_state()
        for batch in itertools.islice(loader, len(done.losses) - done.epoch_step, None):
            loss = loss_fn(trainee, batch) if loss_fn else trainee(**batch).loss
            accelerator.backward(loss)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step_loss, tokens = _whole_batch(accelerator, loss, batch["attention_mask"])
            done.losses.append(step_loss)
            done.tokens += tokens
            bar.update()
            bar.set_postfix(loss=f"{done.losses[-1]:.3f}", refresh=False)
            step = len(done.losses)
            if checkpoint and (step % config.checkpoint_every == 0 or step == config.steps):
                done.seconds = time.perf_counter() - start
                if accelerator.is_main_process:
                    _save_checkpoint(checkpoint, unwrapped, optimizer, schedule, done)
            stopped = plateau is not None and plateau.reached(step, trainee)
            if step == config.steps or stopped:
                break
        done.epoch_step = len(done.losses)
    bar.close()
    trainee.eval()
    if lora:
        unwrapped.merge_and_unload()  # the adapters' update, into `model` itself
        model.requires_grad_(True)
    n_params = sum(p.numel() for p in model.parameters())
    seconds = time.perf_counter() - start
    curve = plateau.curve if plateau else []
    return TrainResult(done.losses, done.tokens, seconds, 6.0 * n_params * done.tokens, curve)
