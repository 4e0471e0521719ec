"""Logit lens: at which layer does the answer appear?

    revcurse analyze runs/demo-20261126-093000   # metrics lens_*, figure lens.png

The residual stream at the last prompt position, after every layer, is decoded through the
final norm and the unembedding, as if the model stopped there (nostalgebraist 2020).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from revcurse.analysis.queries import Query, cells
from revcurse.analysis.rows import average_row, point_row
from revcurse.lm.hooks import residual_stream

if TYPE_CHECKING:
    from transformers import PreTrainedModel


@torch.no_grad()
def logit_lens(
    model: PreTrainedModel, residuals: torch.Tensor, targets: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(probability, rank) of each target at every layer, (n, layers + 1) each: the residual
    decoded through the final norm and the unembedding (rank 1 = the top token)."""
    target = torch.tensor(targets)[:, None]
    probs, ranks = [], []
    for layer in range(residuals.shape[1]):  # one layer at a time: n x vocab fits in memory
        hidden = residuals[:, layer].to(model.device, model.dtype)
        logits = model.lm_head(model.model.norm(hidden)).float().cpu()
        probs.append(torch.softmax(logits, -1).gather(1, target)[:, 0])
        ranks.append(1 + (logits > logits.gather(1, target)).sum(-1))
    return torch.stack(probs, 1), torch.stack(ranks, 1)


def lens_rows(
    model: PreTrainedModel, queries: Sequence[Query]
) -> tuple[list[dict], dict[tuple[str, str], np.ndarray]]:
    """Rows per cell and layer: mean p(target), top-1 share and median rank; plus each
    cell's mean p(target) by layer for the figure."""
    last = [len(q.input_ids) - 1 for q in queries]
    residuals = residual_stream(model, [q.input_ids for q in queries], last)
    probs, ranks = logit_lens(model, residuals, [q.target for q in queries])
    index = {id(q): i for i, q in enumerate(queries)}
    rows, curves = [], {}
    for (group, rel), cell in cells(queries).items():
        at = [index[id(q)] for q in cell]
        p, r = probs[at], ranks[at]
        for layer in range(p.shape[1]):
            rows.append(
                average_row(group, rel, f"lens_target_prob_layer{layer}", p[:, layer].tolist())
            )
            top1 = (r[:, layer] == 1).float().tolist()
            rows.append(average_row(group, rel, f"lens_top1_layer{layer}", top1))
            median = r[:, layer].float().median().item()
            metric = f"lens_target_rank_median_layer{layer}"
            rows.append(point_row(group, rel, metric, median, len(at)))
        rows.append(average_row(group, rel, "lens_max_prob", p.max(1).values.tolist()))
        curves[(group, rel)] = p.mean(0).numpy()
    return rows, curves
