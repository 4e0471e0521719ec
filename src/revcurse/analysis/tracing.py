"""Causal tracing (Meng et al. 2022): which hidden state carries the answer?

    revcurse analyze runs/demo-20261126-093000 --trace.facts-per-group 20   # trace_*, trace.png

Gaussian noise on the subject's input embeddings destroys the answer; then one clean state
(a layer's residual output, its MLP output or its attention output) is restored at one
position, and the share of p(answer) that comes back is that state's indirect effect.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from revcurse.analysis.queries import Query, cells
from revcurse.analysis.rows import Peaks, average_row, point_row
from revcurse.config import check
from revcurse.lm.batching import spans
from revcurse.lm.hooks import (
    KINDS,
    Edit,
    captured_outputs,
    decoder_layers,
    edit_outputs,
    final_logits,
    module_of,
)
from revcurse.progress import bar as progress_bar

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# Token positions binned as in ROME's figures, so prompts of different lengths average.
POSITIONS = (
    "before subject",
    "subject first",
    "subject middle",
    "subject last",
    "after subject",
    "further tokens",
    "last token",
)

Site = tuple[str, int]  # (kind, layer)


@dataclass
class TraceConfig:
    facts_per_group: int = 20
    """20 prompts per group and direction (one per fact): ~4 s"""
    noise_samples: int = 10
    """noise draws per prompt, as ROME; fewer make the means noisy"""
    noise_scale: float = 3.0
    """noise std in units of the embedding matrix's std (ROME: 3)"""
    batch_size: int = 1024
    """patched sequences per forward pass; results do not depend on it"""

    def __post_init__(self) -> None:
        for name in ("facts_per_group", "noise_samples", "batch_size"):
            value = getattr(self, name)
            check(value >= 1, name, f"must be at least 1, got {value}")


def restorer(clean: torch.Tensor, rows: list[int], positions: list[int]) -> Edit:
    """Put the clean output (positions x d) back at (row, position) pairs."""
    source = clean[positions]

    def restore(x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[rows, positions] = source.to(x.dtype)
        return x

    return restore


@torch.no_grad()
def patched_probs(
    model: PreTrainedModel,
    query: Query,
    noise: torch.Tensor,
    restores: Sequence[Sequence[tuple[str, int, int]]],
    clean: dict[Site, torch.Tensor],
    batch_size: int = 1024,  # patched runs per forward pass; results do not depend on it
) -> torch.Tensor:
    """p(target) for a batch of runs of one query: run r adds noise[r] (subject tokens x d)
    to the subject's input embeddings and restores the clean output of every
    (kind, layer, position) in restores[r]."""
    ids = torch.tensor([query.input_ids], device=model.device)
    subject = slice(query.subject_start, query.subject_end)
    out = []
    for part in spans(len(restores), batch_size):
        part_noise = noise[part].to(model.device, model.dtype)

        def corrupt(x: torch.Tensor, part_noise: torch.Tensor = part_noise) -> torch.Tensor:
            x = x.expand(len(part_noise), -1, -1).clone()
            x[:, subject] += part_noise
            return x

        sites: dict[Site, tuple[list[int], list[int]]] = {}
        for row, restore in enumerate(restores[part]):
            for kind, layer, position in restore:
                rows, positions = sites.setdefault((kind, layer), ([], []))
                rows.append(row)
                positions.append(position)

        edits: dict[torch.nn.Module, Edit] = {model.get_input_embeddings(): corrupt}
        for site, (rows, positions) in sites.items():
            edits[module_of(model, *site)] = restorer(clean[site], rows, positions)
        with edit_outputs(edits):
            logits = final_logits(model, ids)
        out.append(torch.softmax(logits, -1)[:, query.target].cpu())
    return torch.cat(out)


@torch.no_grad()
def clean_run(model: PreTrainedModel, query: Query) -> tuple[float, dict[Site, torch.Tensor]]:
    """p(target) and every module's output (positions x d) on the uncorrupted prompt."""
    layers = range(len(decoder_layers(model)))
    modules = {(kind, layer): module_of(model, kind, layer) for kind in KINDS for layer in layers}
    with captured_outputs(modules) as states:
        logits = final_logits(model, torch.tensor([query.input_ids], device=model.device))
    p = torch.softmax(logits, -1)[0, query.target].item()
    return p, {site: state[0].detach() for site, state in states.items()}


@dataclass
class Trace:
    """One query's tracing: p(target) clean, corrupted (mean over noise draws) and with one
    clean state restored, restored[kind][layer, position] (mean over noise draws)."""

    clean: float
    corrupted: float
    restored: dict[str, np.ndarray]


def embedding_std(model: PreTrainedModel) -> float:
    return model.get_input_embeddings().weight.float().std().item()


@torch.no_grad()
def trace(
    model: PreTrainedModel,
    query: Query,
    noise_samples: int = TraceConfig.noise_samples,
    noise_scale: float = TraceConfig.noise_scale,
    seed: int = 0,  # seeds the noise draws
    batch_size: int = TraceConfig.batch_size,
    noise_std: float | None = None,  # None = the embedding matrix's std (computed here)
) -> Trace:
    """Causal tracing of one query: noise of std noise_scale x noise_std on the subject
    tokens, the same draws for every restored site."""
    std = embedding_std(model) if noise_std is None else noise_std
    n_layers, width = len(decoder_layers(model)), len(query.input_ids)
    d = model.get_input_embeddings().embedding_dim
    generator = torch.Generator().manual_seed(seed)
    span = query.subject_end - query.subject_start
    draws = torch.randn(noise_samples, span, d, generator=generator) * (noise_scale * std)
    p_clean, states = clean_run(model, query)
    # States before the subject are the same clean or corrupted (the model is causal), so
    # restoring them is a no-op: they get the corrupted probability without a run.
    first = query.subject_start
    sites = [(k, layer, t) for k in KINDS for layer in range(n_layers) for t in range(first, width)]
    # row 0 of each draw: corrupted only
    restores: list[list[tuple[str, int, int]]] = [[], *([site] for site in sites)]
    noise = draws.repeat_interleave(len(restores), dim=0)
    probs = patched_probs(model, query, noise, restores * noise_samples, states, batch_size)
    mean = probs.view(noise_samples, len(restores)).mean(0).numpy()
    grid = np.full((len(KINDS), n_layers, width), mean[0])
    grid[:, :, first:] = mean[1:].reshape(len(KINDS), n_layers, width - first)
    return Trace(p_clean, float(mean[0]), {k: grid[i] for i, k in enumerate(KINDS)})


def position_bins(width: int, subject_start: int, subject_end: int) -> list[int]:
    """The POSITIONS bin of every token; the last token and the subject's last token win
    when a token is several things at once."""
    bins = []
    for t in range(width):
        if t == width - 1:
            name = "last token"
        elif t == subject_end - 1:
            name = "subject last"
        elif t == subject_start:
            name = "subject first"
        elif subject_start < t < subject_end:
            name = "subject middle"
        elif t < subject_start:
            name = "before subject"
        else:
            name = "after subject" if t == subject_end else "further tokens"
        bins.append(POSITIONS.index(name))
    return bins


def binned_effects(query: Query, result: Trace) -> dict[str, np.ndarray]:
    """Indirect effect (restored - corrupted) per kind, (layers, POSITIONS), NaN where the
    prompt has no token of that bin."""
    bins = np.array(position_bins(len(query.input_ids), query.subject_start, query.subject_end))
    out = {}
    for kind, grid in result.restored.items():
        binned = np.full((grid.shape[0], len(POSITIONS)), np.nan)
        for b in set(bins.tolist()):
            binned[:, b] = grid[:, bins == b].mean(1) - result.corrupted
        out[kind] = binned
    return out


def trace_rows(
    model: PreTrainedModel, queries: Sequence[Query], config: TraceConfig, seed: int, progress: bool
) -> tuple[list[dict], dict[tuple[str, str, str], np.ndarray], Peaks]:
    """Rows per cell: clean and corrupted p(target), every (kind, layer, position bin)
    effect, and each kind's peak; the mean effect grids for the figure; the peaks."""
    std = embedding_std(model)  # once, not once per prompt
    rows, grids, peaks = [], {}, {}
    bar = progress_bar(total=len(queries), desc="trace", unit="prompt", disable=not progress)
    for (group, rel), cell in cells(queries).items():
        clean, corrupted = [], []
        effects: dict[str, list[np.ndarray]] = {k: [] for k in KINDS}
        for q in cell:
            result = trace(
                model,
                q,
                config.noise_samples,
                config.noise_scale,
                seed=seed * 1_000_003 + q.fact * 101 + q.template,  # own draws per prompt
                batch_size=config.batch_size,
                noise_std=std,
            )
            clean.append(result.clean)
            corrupted.append(result.corrupted)
            for kind, grid in binned_effects(q, result).items():
                effects[kind].append(grid)
            bar.update()
        rows.append(average_row(group, rel, "trace_clean_prob", clean))
        rows.append(average_row(group, rel, "trace_corrupted_prob", corrupted))
        for kind in KINDS:
            stack = np.stack(effects[kind])  # (prompts, layers, bins)
            with warnings.catch_warnings():  # a bin no prompt has stays NaN, on purpose
                warnings.simplefilter("ignore", RuntimeWarning)
                grid = np.nanmean(stack, axis=0)
            grids[(group, rel, kind)] = grid
            for layer in range(stack.shape[1]):
                for b, name in enumerate(POSITIONS):
                    values = stack[:, layer, b]
                    values = values[~np.isnan(values)]
                    if len(values):
                        metric = f"trace_{kind}_layer{layer}_{name.replace(' ', '_')}"
                        rows.append(average_row(group, rel, metric, values.tolist()))
            peak, b = (int(i) for i in np.unravel_index(np.nanargmax(grid), grid.shape))
            peaks[(group, rel, kind)] = (peak, POSITIONS[b], float(grid[peak, b]))
            n = len(cell)
            rows.append(point_row(group, rel, f"trace_{kind}_peak_effect", grid[peak, b], n))
            rows.append(point_row(group, rel, f"trace_{kind}_peak_layer", float(peak), n))
            # The peak's position bin, as an index into results.json's "positions".
            rows.append(point_row(group, rel, f"trace_{kind}_peak_position", float(b), n))
    bar.close()
    return rows, grids, peaks
