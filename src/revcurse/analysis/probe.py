"""Linear probe: does a description's hidden state carry the name it belongs to?

    revcurse analyze runs/demo-20261126-093000   # metrics probe_*, figure probe.png

Logistic probes trained on the b2a prompts of `both` facts (whose B -> A map is trained)
and tested on those of one-way facts: d2p (B -> A trained, other facts) and p2d (only
A -> B trained). A probe fitted to shuffled labels is the control.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from revcurse.analysis.queries import Query
from revcurse.analysis.rows import average_row, point_row
from revcurse.facts import ONE_WAY, sense
from revcurse.lm.hooks import residual_stream

if TYPE_CHECKING:
    from transformers import PreTrainedModel


@dataclass
class ProbeConfig:
    bits: int = 8
    """random balanced splits of the names' first tokens, one probe each"""
    l2: float = 1e-2
    """ridge penalty on standardized features: 600 examples, 64+ features"""
    max_iter: int = 200
    """L-BFGS iterations; the convex fit converges well before"""


@dataclass
class LinearProbe:
    """Independent logistic regressions (one output per label column) on standardized
    features."""

    mean: torch.Tensor
    scale: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.scale) @ self.weight + self.bias > 0


def fit_probe(
    x: torch.Tensor,
    y: torch.Tensor,
    l2: float = ProbeConfig.l2,
    max_iter: int = ProbeConfig.max_iter,
) -> LinearProbe:
    """Fit (n, d) features to (n, m) 0/1 labels by L-BFGS on the mean logistic loss plus
    l2 * |W|^2 (convex, so the seed does not matter)."""
    x, y = x.double(), y.double()
    mean, scale = x.mean(0), x.std(0).clamp(min=1e-6)  # constant features stay 0, not NaN
    z = (x - mean) / scale
    weight = torch.zeros(x.shape[1], y.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(y.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-9
    )

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = torch.nn.functional.binary_cross_entropy_with_logits(z @ weight + bias, y)
        value = value + l2 * weight.pow(2).sum()
        value.backward()
        return value

    with torch.enable_grad():  # callers run under no_grad
        optimizer.step(loss)
    return LinearProbe(mean, scale, weight.detach(), bias.detach())


def label_bits(labels: Sequence[int], bits: int, seed: int) -> dict[int, list[int]]:
    """For each distinct label, `bits` 0/1 values: each bit a random split of the distinct
    labels into halves. Bits are shared by every fact with that label, so a probe trained on
    some facts can be tested on others (the labels themselves rarely repeat)."""
    distinct = sorted(set(labels))
    rng = random.Random(seed)
    columns = []
    for _ in range(bits):
        ones = set(rng.sample(distinct, len(distinct) // 2))
        columns.append([int(label in ones) for label in distinct])
    return {label: [c[i] for c in columns] for i, label in enumerate(distinct)}


def majority_rate(y: torch.Tensor) -> float:
    """Accuracy of the best constant guess per bit, averaged over bits (chance)."""
    share = y.float().mean(0)
    return torch.maximum(share, 1 - share).mean().item()


def by_fact(queries: Sequence[Query], values: Sequence[float]) -> list[float]:
    """Mean per fact: a fact's phrasings are not independent samples."""
    per: dict[int, list[float]] = {}
    for q, v in zip(queries, values, strict=True):
        per.setdefault(q.fact, []).append(v)
    return [float(np.mean(v)) for v in per.values()]


# Where the features are read: the description's last token (metrics probe_*), and the
# prompt's last token, where the name is predicted (probe_*_prompt_end).
READ_AT = (("subject", ""), ("prompt_end", "_prompt_end"))


def probe_rows(
    model: PreTrainedModel, queries: Sequence[Query], config: ProbeConfig, seed: int
) -> tuple[list[dict], dict[tuple[str, str, str], np.ndarray], dict[str, float]]:
    """Rows per tested group and layer: probe accuracy, the shuffled-label control and, on
    the training facts, the fit; probe_chance is the best constant guess on the test labels.
    Labels: label_bits of the name's first token, so only test facts whose first token
    occurs in training count. Also, for the figure, each group's accuracy by layer and its
    chance level."""
    b2a = [q for q in queries if q.direction == "b2a"]
    bits = label_bits([q.target for q in b2a], config.bits, seed)
    train = [q for q in b2a if q.group == "both"]
    if not train:
        return [], {}, {}
    seen = {q.target for q in train}
    tests = {g: [q for q in b2a if q.group == g and q.target in seen] for g in ONE_WAY}
    tests = {g: test for g, test in tests.items() if test}
    labels = {g: torch.tensor([bits[q.target] for q in test]) for g, test in tests.items()}
    index = {id(q): i for i, q in enumerate(b2a)}
    y_train = torch.tensor([bits[q.target] for q in train])
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    controls = {"probe_acc": y_train, "probe_shuffled_acc": y_train[order]}
    rel = {g: sense(g, "b2a") for g in ("both", *tests)}  # the probe reads b2a prompts
    chance = {g: majority_rate(y) for g, y in labels.items()}
    rows = [
        point_row(g, rel[g], "probe_chance", chance[g], len({q.fact for q in test}))
        for g, test in tests.items()
    ]
    curves = {}
    for where, suffix in READ_AT:
        positions = [q.subject_end - 1 if where == "subject" else len(q.input_ids) - 1 for q in b2a]
        features = residual_stream(model, [q.input_ids for q in b2a], positions)
        x_train = features[[index[id(q)] for q in train]]
        accs: dict[str, list[float]] = {g: [] for g in tests}
        for layer in range(features.shape[1]):
            for name, y in controls.items():
                probe = fit_probe(x_train[:, layer], y, config.l2, config.max_iter)
                if name == "probe_acc":
                    fit = (probe.predict(x_train[:, layer]) == y.bool()).float().mean().item()
                    metric = f"probe_train_acc{suffix}_layer{layer}"
                    rows.append(point_row("both", rel["both"], metric, fit, len(train)))
                for group, test in tests.items():
                    x_test = features[[index[id(q)] for q in test], layer]
                    hits = (probe.predict(x_test) == labels[group].bool()).float().mean(1)
                    per_fact = by_fact(test, hits.tolist())
                    metric = f"{name}{suffix}_layer{layer}"
                    rows.append(average_row(group, rel[group], metric, per_fact))
                    if name == "probe_acc":
                        accs[group].append(float(np.mean(per_fact)))
        for group in tests:
            curves[(group, rel[group], where)] = np.array(accs[group])
    return rows, curves, chance
