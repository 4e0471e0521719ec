"""`--budget converged`: train until the trained direction stops improving, not for a
fixed number of steps (train() asks a Plateau after every step).

    plateau = Plateau(score, ConvergeConfig(), floor=300)   # score(model) -> 0..1
    train(model, tokenizer, examples, config, seed, plateau=plateau)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from revcurse.config import check


@dataclass
class ConvergeConfig:
    """`--budget converged`: each method trains until its trained direction stops improving."""

    max_steps: int = 4000
    """the cap (its lr schedule spans it): ten times compare's budget"""
    every: int = 100
    """steps between measurements of the trained direction's exact match"""
    patience: int = 2
    """measurements without a gain of `tolerance` before training stops"""
    tolerance: float = 0.01
    """a smaller gain is no gain"""

    def __post_init__(self) -> None:
        for name in ("max_steps", "every", "patience"):
            value = getattr(self, name)
            check(value >= 1, name, f"must be at least 1, got {value}")
        check(0 <= self.tolerance < 1, "tolerance", f"must be in [0, 1), got {self.tolerance}")


@dataclass
class Plateau:
    """Ends training once `score(model)`, measured every `config.every` steps, reaches 1 or,
    from step `floor` on, has not risen by `config.tolerance` over `config.patience`
    measurements; `curve` holds (step, score) of every measurement."""

    score: Callable[[torch.nn.Module], float]
    config: ConvergeConfig
    # A score still at 0 early on has not plateaued, it has not started (MLM-U learns late)
    floor: int = 0  # no stall ends training before this step
    curve: list[tuple[int, float]] = field(default_factory=list)

    def reached(self, step: int, model: torch.nn.Module) -> bool:
        if step % self.config.every:
            return False
        model.eval()
        self.curve.append((step, self.score(model)))
        model.train()
        values = [v for _, v in self.curve]
        before, recent = values[: -self.config.patience], values[-self.config.patience :]
        stalled = (
            step >= self.floor
            and bool(before)
            and max(recent) < max(before) + self.config.tolerance
        )
        return values[-1] >= 1.0 or stalled
