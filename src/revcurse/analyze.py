"""Where the one-way map lives: logit lens, causal tracing, probes and weight asymmetry.

    revcurse analyze runs/demo-20261126-093000 --output-dir runs/analyze-seed0

Reads a trained run of `revcurse demo` (RUN_DIR/model, RUN_DIR/world) and asks four
questions of its facts, each in the direction the fact was trained (`same`) and the other
(`reverse`):

1. Logit lens: decode the residual stream at the last prompt position, after every layer,
   through the final norm and the unembedding: at which layer does the answer appear?
2. Causal tracing (Meng et al. 2022): add Gaussian noise to the subject's input embeddings,
   then restore one clean state (a layer's residual output, its MLP output or its attention
   output) at one position; how much of the answer's probability comes back?
3. Probe: does the hidden state of a description carry anything about the name it belongs
   to? Logistic probes trained on `both` facts, tested on one-way facts.
4. Association: the logit of B's token given only A's token as input (a function of the
   weights alone, after Zhu et al. 2024), against B given A the other way and random pairs.

The *target* of a prompt is the first completion token that tells this fact's answer from
the others': completions that start alike (" the inventor of ...") are fed up to where
they differ, so the answer is not a word every description shares. Hooks go through the
standard transformers modules (`model.model.layers[i]`, `.mlp`, `.self_attn`,
`model.model.norm`, `model.lm_head`), so the same code runs on the tiny Llama and on
SmolLM2. Everything lands in a new run directory: config.yaml, results.json (tidy rows,
method "analysis"), table.txt and the figures lens.png, trace.png, probe.png, assoc.png.
"""

from __future__ import annotations

import inspect
import platform
import random
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
import typer
import yaml
from rich.console import Console
from rich.table import Table
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

import revcurse
from revcurse.config import to_dict, to_yaml
from revcurse.facts import DIRECTIONS, GROUPS, Fact, Template, load_facts, load_templates, relation
from revcurse.model import load_checkpoint
from revcurse.results import (
    default_run_dir,
    mean_row,
    render,
    run_directory,
    write_json,
)

METHOD = "analysis"
KINDS = ("hidden", "mlp", "attn")  # residual output of a decoder layer, its MLP, its attention
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
RELATIONS = ("same", "reverse")


@dataclass
class TraceConfig:
    facts_per_group: int = 20  # 20 prompts per group and direction (one per fact): ~4 s
    noise_samples: int = 10  # noise draws per prompt, as ROME; fewer make the means noisy
    noise_scale: float = 3.0  # noise std in units of the embedding matrix's std (ROME: 3)
    batch_size: int = 1024  # patched sequences per forward pass; results do not depend on it


@dataclass
class ProbeConfig:
    bits: int = 8  # random balanced splits of the names' first tokens, one probe each
    l2: float = 1e-2  # ridge penalty on standardized features: 600 examples, 64+ features
    max_iter: int = 200  # L-BFGS iterations; the convex fit converges well before


@dataclass
class AnalyzeConfig:
    run_dir: Path | None = None  # the trained run to analyse (or give it as RUN_DIR)
    output_dir: Path | None = None  # default runs/analyze-<timestamp>; never overwritten
    seed: int = 0  # seeds the traced facts, the noise and the probe's label splits
    progress: bool = True  # progress bars on stderr
    # Tracing runs thousands of tiny forward passes: split over threads they gain nothing and
    # stall (30x measured) whenever another process holds a core. 0 = torch's default.
    cpu_threads: int = 1  # torch CPU threads for this command
    trace: TraceConfig = field(default_factory=TraceConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)


# ---------------------------------------------------------------------------- queries


@dataclass(frozen=True)
class Query:
    """One prompt to analyse: `input_ids` (BOS + prompt + the completion tokens every fact
    shares in this phrasing), the token span [subject_start, subject_end) of the entity the
    prompt gives, and the `target` token that the model should predict next."""

    input_ids: tuple[int, ...]
    subject_start: int
    subject_end: int
    target: int
    group: str = ""
    direction: str = ""  # a2b or b2a
    fact: int = -1
    template: int = -1

    @property
    def relation(self) -> str:
        return relation(self.group, self.direction)


def subject_span(tokenizer: PreTrainedTokenizerBase, prompt: str, subject: str) -> tuple[int, int]:
    """Token positions of `subject` in tokenizer(prompt) (with its BOS), from the character
    offsets, so BPE tokens that carry the leading space (" Daphne") still count."""
    start = prompt.rfind(subject)  # the last mention: the one a question asks about
    if start < 0:
        raise ValueError(f"subject {subject!r} not in prompt {prompt!r}")
    end = start + len(subject)
    offsets = tokenizer(prompt, return_offsets_mapping=True)["offset_mapping"]
    inside = [i for i, (s, e) in enumerate(offsets) if e > s and s < end and e > start]
    if not inside:
        raise ValueError(f"no token of {subject!r} found in {prompt!r}")
    return inside[0], inside[-1] + 1


def make_query(
    tokenizer: PreTrainedTokenizerBase,
    prompt: str,
    subject: str,
    completion: str,
    shared: int = 0,
    **labels: Any,
) -> Query:
    """Prompt and completion tokenized as training does (revcurse.train.encode): the prompt
    with its special tokens, the completion without; the first `shared` completion tokens
    join the input and the next one is the target."""
    prompt_ids = tokenizer(prompt).input_ids
    completion_ids = tokenizer(completion, add_special_tokens=False).input_ids
    shared = min(shared, len(completion_ids) - 1)
    start, end = subject_span(tokenizer, prompt, subject)
    return Query(
        tuple(prompt_ids + completion_ids[:shared]), start, end, completion_ids[shared], **labels
    )


def _shared_prefix(sequences: Sequence[Sequence[int]]) -> int:
    n = 0
    while all(len(s) > n for s in sequences) and len({s[n] for s in sequences}) == 1:
        n += 1
    return n


def build_queries(
    facts: Sequence[Fact],
    templates: Sequence[Template],
    tokenizer: PreTrainedTokenizerBase,
    splits: Sequence[str] = ("test",),
) -> list[Query]:
    """A query for every fact and template of the given splits."""
    queries = []
    for template_id, template in enumerate(templates):
        if template.split not in splits:
            continue
        completions = [template.completion.format(a=f.a, b=f.b) for f in facts]
        ids = tokenizer(completions, add_special_tokens=False).input_ids
        shared = _shared_prefix(ids) if len(facts) > 1 else 0
        for fact_id, (fact, completion) in enumerate(zip(facts, completions, strict=True)):
            subject = fact.a if template.direction == "a2b" else fact.b
            queries.append(
                make_query(
                    tokenizer,
                    template.prompt.format(a=fact.a, b=fact.b),
                    subject,
                    completion,
                    shared,
                    group=fact.group,
                    direction=template.direction,
                    fact=fact_id,
                    template=template_id,
                )
            )
    return queries


# ---------------------------------------------------------------------------- hooks


def decoder_layers(model: PreTrainedModel) -> list[torch.nn.Module]:
    return list(model.model.layers)


def module_of(model: PreTrainedModel, kind: str, layer: int) -> torch.nn.Module:
    block = decoder_layers(model)[layer]
    return {"hidden": block, "mlp": block.mlp, "attn": block.self_attn}[kind]


@contextmanager
def edit_outputs(
    edits: dict[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor]],
) -> Iterator[None]:
    """Pass each module's output (the first element when it returns a tuple, as attention
    does) through its function for the duration of the block."""

    def hook(edit: Callable[[torch.Tensor], torch.Tensor]) -> Callable[..., Any]:
        def run(_module: torch.nn.Module, _inputs: Any, output: Any) -> Any:
            if isinstance(output, tuple):
                return (edit(output[0]), *output[1:])
            return edit(output)

        return run

    handles = [module.register_forward_hook(hook(edit)) for module, edit in edits.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _final_logits(model: PreTrainedModel, input_ids: torch.Tensor) -> torch.Tensor:
    """Logits at the last position only (the unembedding of every position is the costly
    part for a 49k vocabulary)."""
    hidden = model.model(input_ids=input_ids, use_cache=False).last_hidden_state
    return model.lm_head(hidden[:, -1]).float()


# ---------------------------------------------------------------------------- logit lens


@torch.no_grad()
def residual_stream(
    model: PreTrainedModel,
    sequences: Sequence[Sequence[int]],
    positions: Sequence[int],
    batch_size: int = 256,
) -> torch.Tensor:
    """(n, layers + 1, d): the residual stream at one position of each sequence: the input
    embedding (0), then the output of every decoder layer. Right-padded batches: positions
    start at 0 in every row, so padding changes nothing before it."""
    layers = decoder_layers(model)
    out = []
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start : start + batch_size]
        width = max(len(s) for s in chunk)
        ids = torch.zeros((len(chunk), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, seq in enumerate(chunk):
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        captured: list[torch.Tensor] = []

        def keep(x: torch.Tensor, captured: list[torch.Tensor] = captured) -> torch.Tensor:
            captured.append(x)
            return x

        modules = [model.get_input_embeddings(), *layers]
        with edit_outputs(dict.fromkeys(modules, keep)):
            model.model(
                input_ids=ids.to(model.device),
                attention_mask=mask.to(model.device),
                use_cache=False,
            )
        rows = torch.arange(len(chunk))
        where = torch.tensor(positions[start : start + batch_size])
        out.append(torch.stack([h[rows, where].float().cpu() for h in captured], dim=1))
    return torch.cat(out)


@torch.no_grad()
def logit_lens(
    model: PreTrainedModel, residuals: torch.Tensor, targets: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(probability, rank) of each target at every layer, (n, layers + 1) each: the residual
    decoded through the final norm and the unembedding (rank 1 = the top token)."""
    target = torch.tensor(targets)
    probs, ranks = [], []
    for layer in range(residuals.shape[1]):  # one layer at a time: n x vocab fits in memory
        hidden = residuals[:, layer].to(model.device, model.dtype)
        logits = model.lm_head(model.model.norm(hidden)).float().cpu()
        picked = logits.gather(1, target[:, None])
        probs.append(torch.softmax(logits, -1).gather(1, target[:, None])[:, 0])
        ranks.append(1 + (logits > picked).sum(-1))
    return torch.stack(probs, 1), torch.stack(ranks, 1)


# ---------------------------------------------------------------------------- tracing


def _restorer(
    clean: torch.Tensor, rows: list[int], positions: list[int]
) -> Callable[[torch.Tensor], torch.Tensor]:
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
    clean: dict[tuple[str, int], torch.Tensor],
    batch_size: int = 1024,
) -> torch.Tensor:
    """p(target) for a batch of runs of one query: row r adds noise[r] (subject tokens x d)
    to the subject's input embeddings and restores the clean output of every
    (kind, layer, position) in restores[r]."""
    ids = torch.tensor([query.input_ids], device=model.device)
    subject = slice(query.subject_start, query.subject_end)
    out = []
    for start in range(0, len(restores), batch_size):
        chunk = restores[start : start + batch_size]
        chunk_noise = noise[start : start + batch_size].to(model.device, model.dtype)

        def corrupt(x: torch.Tensor, chunk_noise: torch.Tensor = chunk_noise) -> torch.Tensor:
            x = x.expand(len(chunk_noise), -1, -1).clone()
            x[:, subject] += chunk_noise
            return x

        sites: dict[tuple[str, int], tuple[list[int], list[int]]] = {}
        for row, restore in enumerate(chunk):
            for kind, layer, position in restore:
                rows, positions = sites.setdefault((kind, layer), ([], []))
                rows.append(row)
                positions.append(position)

        edits = {model.get_input_embeddings(): corrupt}
        for site, (rows, positions) in sites.items():
            edits[module_of(model, *site)] = _restorer(clean[site], rows, positions)
        with edit_outputs(edits):
            logits = _final_logits(model, ids)
        out.append(torch.softmax(logits, -1)[:, query.target].cpu())
    return torch.cat(out)


@torch.no_grad()
def clean_run(model: PreTrainedModel, query: Query) -> tuple[float, dict[tuple[str, int], Any]]:
    """p(target) and every module's output (positions x d) on the uncorrupted prompt."""
    states: dict[tuple[str, int], torch.Tensor] = {}

    def keep(site: tuple[str, int]) -> Callable[[torch.Tensor], torch.Tensor]:
        def run(x: torch.Tensor) -> torch.Tensor:
            states[site] = x[0].detach()
            return x

        return run

    sites = [(k, layer) for k in KINDS for layer in range(len(decoder_layers(model)))]
    with edit_outputs({module_of(model, *site): keep(site) for site in sites}):
        logits = _final_logits(model, torch.tensor([query.input_ids], device=model.device))
    return torch.softmax(logits, -1)[0, query.target].item(), states


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
    noise_samples: int = 10,
    noise_scale: float = 3.0,
    seed: int = 0,
    kinds: Sequence[str] = KINDS,
    batch_size: int = 1024,
    noise_std: float | None = None,
) -> Trace:
    """Causal tracing of one query: noise of std noise_scale x (the embedding matrix's std,
    or noise_std) on the subject tokens, the same draws for every restored site."""
    std = embedding_std(model) if noise_std is None else noise_std
    n_layers, width = len(decoder_layers(model)), len(query.input_ids)
    d = model.get_input_embeddings().embedding_dim
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randn(
        noise_samples, query.subject_end - query.subject_start, d, generator=generator
    )
    draws *= noise_scale * std
    p_clean, states = clean_run(model, query)
    # States before the subject are the same clean or corrupted (the model is causal), so
    # restoring them is a no-op: they get the corrupted probability without a run.
    first = query.subject_start
    sites = [(k, layer, t) for k in kinds for layer in range(n_layers) for t in range(first, width)]
    restores = [[]] + [[site] for site in sites]  # row 0 of each draw: corrupted only
    noise = draws.repeat_interleave(len(restores), dim=0)
    probs = patched_probs(model, query, noise, restores * noise_samples, states, batch_size)
    probs = probs.view(noise_samples, len(restores)).mean(0).numpy()
    grid = np.full((len(kinds), n_layers, width), probs[0])
    grid[:, :, first:] = probs[1:].reshape(len(kinds), n_layers, width - first)
    return Trace(p_clean, float(probs[0]), {k: grid[i] for i, k in enumerate(kinds)})


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


# ---------------------------------------------------------------------------- probe


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
    x: torch.Tensor, y: torch.Tensor, l2: float = 1e-2, max_iter: int = 200
) -> LinearProbe:
    """Fit (n, d) features to (n, m) 0/1 labels by L-BFGS on the mean logistic loss plus
    l2 * |W|^2 (convex, so the seed does not matter)."""
    x, y = x.double(), y.double()
    mean, scale = x.mean(0), x.std(0).clamp(min=1e-6)
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

    with torch.enable_grad():
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


# ---------------------------------------------------------------------------- association


@torch.no_grad()
def single_token_logits(model: PreTrainedModel, tokens: Sequence[int]) -> torch.Tensor:
    """(n, vocab): the logits after one token alone, at position 0 with no BOS. Attention
    then only sees the token itself (softmax over one key is 1), so this is a function of
    the weights: embedding -> every layer's attention value/output map and MLP -> norm ->
    unembedding."""
    ids = torch.tensor(tokens, device=model.device)[:, None]
    return _final_logits(model, ids).cpu()


def association_scores(
    model: PreTrainedModel,
    sources: Sequence[int],
    targets: Sequence[int],
    candidates: Sequence[int],
    pairs: Sequence[tuple[int, int]],
) -> list[float]:
    """For each (i, j) in pairs: logit of targets[j] given sources[i] alone, minus the mean
    logit of the candidate targets (so a uniformly raised output does not count)."""
    logits = single_token_logits(model, sources)
    centre = logits[:, list(candidates)].mean(1)
    return [(logits[i, targets[j]] - centre[i]).item() for i, j in pairs]


# ---------------------------------------------------------------------------- the command


def _check_run_dir(run_dir: Path | None) -> Path:
    if run_dir is None:
        raise ValueError("RUN_DIR: missing; give a run directory of `revcurse demo`")
    needed = ("model/config.json", "world/facts.jsonl", "world/templates.jsonl")
    if not run_dir.exists():
        raise ValueError(f"{run_dir}: no such run directory")
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: not a directory; give a run directory of `revcurse demo`")
    missing = [name for name in needed if not (run_dir / name).is_file()]
    if missing:
        raise ValueError(f"{run_dir}: not a revcurse run directory (missing {', '.join(missing)})")
    return run_dir


def _cells(queries: Sequence[Query]) -> dict[tuple[str, str], list[Query]]:
    cells: dict[tuple[str, str], list[Query]] = {}
    for group in GROUPS:
        for rel in RELATIONS:
            chosen = [q for q in queries if q.group == group and q.relation == rel]
            if chosen:
                cells[(group, rel)] = chosen
    return cells


def _row(group: str, rel: str, metric: str, value: float | None, n: int) -> dict[str, Any]:
    return {
        "method": METHOD,
        "group": group,
        "direction": rel,
        "metric": metric,
        "value": None if value is None or not np.isfinite(value) else float(value),
        "n": n,
        "ci_low": None,
        "ci_high": None,
    }


def _mean(group: str, rel: str, metric: str, values: Sequence[float]) -> dict[str, Any]:
    values = [float(v) for v in values]
    if len(values) > 1 and np.ptp(values) == 0:  # a t interval of constant values is NaN
        return {
            **_row(group, rel, metric, values[0], len(values)),
            "ci_low": values[0],
            "ci_high": values[0],
        }
    return mean_row(METHOD, group, rel, metric, values)


def lens_rows(model: PreTrainedModel, queries: Sequence[Query]) -> tuple[list[dict], dict]:
    """Rows per cell and layer: mean p(target), top-1 share and median rank; plus the
    per-cell mean curves for the figure."""
    residuals = residual_stream(
        model, [q.input_ids for q in queries], [len(q.input_ids) - 1 for q in queries]
    )
    probs, ranks = logit_lens(model, residuals, [q.target for q in queries])
    index = {id(q): i for i, q in enumerate(queries)}
    rows, curves = [], {}
    for (group, rel), cell in _cells(queries).items():
        at = [index[id(q)] for q in cell]
        p, r = probs[at], ranks[at]
        for layer in range(p.shape[1]):
            rows.append(_mean(group, rel, f"lens_target_prob_layer{layer}", p[:, layer].tolist()))
            top1 = (r[:, layer] == 1).float().tolist()
            rows.append(_mean(group, rel, f"lens_top1_layer{layer}", top1))
            median = r[:, layer].float().median().item()
            rows.append(_row(group, rel, f"lens_target_rank_median_layer{layer}", median, len(at)))
        rows.append(_mean(group, rel, "lens_max_prob", p.max(1).values.tolist()))
        curves[(group, rel)] = p.mean(0).numpy()
    return rows, curves


def trace_rows(
    model: PreTrainedModel, queries: Sequence[Query], config: TraceConfig, seed: int, progress: bool
) -> tuple[list[dict], dict, dict]:
    """Rows per cell: clean and corrupted p(target), every (kind, layer, position bin)
    effect, and each kind's peak; the mean effect grids for the figure; the peaks."""
    std = embedding_std(model)
    rows, grids, peaks = [], {}, {}
    cells = _cells(queries)
    bar = tqdm(total=len(queries), desc="trace", unit="prompt", disable=not progress)
    for (group, rel), cell in cells.items():
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
        rows.append(_mean(group, rel, "trace_clean_prob", clean))
        rows.append(_mean(group, rel, "trace_corrupted_prob", corrupted))
        for kind in KINDS:
            stack = np.stack(effects[kind])  # (prompts, layers, bins)
            with warnings.catch_warnings():  # a bin no prompt has stays NaN, on purpose
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(stack, axis=0)
            grids[(group, rel, kind)] = mean
            for layer in range(stack.shape[1]):
                for b, name in enumerate(POSITIONS):
                    values = stack[:, layer, b]
                    values = values[~np.isnan(values)]
                    if len(values):
                        metric = f"trace_{kind}_layer{layer}_{name.replace(' ', '_')}"
                        rows.append(_mean(group, rel, metric, values.tolist()))
            layer, b = np.unravel_index(np.nanargmax(mean), mean.shape)
            peaks[(group, rel, kind)] = (int(layer), POSITIONS[b], float(mean[layer, b]))
            rows.append(_row(group, rel, f"trace_{kind}_peak_effect", mean[layer, b], len(cell)))
            rows.append(_row(group, rel, f"trace_{kind}_peak_layer", float(layer), len(cell)))
            # The peak's position bin, as an index into results.json's "positions".
            rows.append(_row(group, rel, f"trace_{kind}_peak_position", float(b), len(cell)))
    bar.close()
    return rows, grids, peaks


def probe_rows(
    model: PreTrainedModel, queries: Sequence[Query], config: ProbeConfig, seed: int
) -> tuple[list[dict], dict]:
    """Train on the b2a prompts of `both` facts (B -> A trained), test on those of d2p
    facts (B -> A trained, other facts) and p2d facts (only A -> B trained) whose name's
    first token occurs in training. Labels: label_bits of that token. Features: the residual
    at the description's last token (metrics probe_*) and at the prompt's last token, where
    the name is predicted (probe_*_prompt_end), at every layer. A probe trained on shuffled
    labels is the control; probe_chance is the best constant guess on the test labels."""
    b2a = [q for q in queries if q.direction == "b2a"]
    bits = label_bits([q.target for q in b2a], config.bits, seed)
    train = [q for q in b2a if q.group == "both"]
    if not train:
        return [], {}
    seen = {q.target for q in train}
    tests = {g: [q for q in b2a if q.group == g and q.target in seen] for g in ("p2d", "d2p")}
    tests = {g: test for g, test in tests.items() if test}
    index = {id(q): i for i, q in enumerate(b2a)}
    y_train = torch.tensor([bits[q.target] for q in train])
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    controls = {"probe_acc": y_train, "probe_shuffled_acc": y_train[order]}
    rows, curves = [], {}
    for group, test in tests.items():
        y_test = torch.tensor([bits[q.target] for q in test])
        n_facts = len({q.fact for q in test})
        rows.append(
            _row(group, relation(group, "b2a"), "probe_chance", majority_rate(y_test), n_facts)
        )
    for where, suffix in (("subject", ""), ("prompt_end", "_prompt_end")):
        positions = [q.subject_end - 1 if where == "subject" else len(q.input_ids) - 1 for q in b2a]
        features = residual_stream(model, [q.input_ids for q in b2a], positions)
        x_train = features[[index[id(q)] for q in train]]
        accs: dict[str, list[float]] = {g: [] for g in tests}
        for layer in range(features.shape[1]):
            for name, labels in controls.items():
                probe = fit_probe(x_train[:, layer], labels, config.l2, config.max_iter)
                if name == "probe_acc":
                    fit = (probe.predict(x_train[:, layer]) == labels.bool()).float().mean()
                    metric = f"probe_train_acc{suffix}_layer{layer}"
                    rows.append(
                        _row("both", relation("both", "b2a"), metric, fit.item(), len(train))
                    )
                for group, test in tests.items():
                    x_test = features[[index[id(q)] for q in test], layer]
                    y_test = torch.tensor([bits[q.target] for q in test]).bool()
                    hits = (probe.predict(x_test) == y_test).float().mean(1)
                    per_fact = _by_fact(test, hits.tolist())
                    metric = f"{name}{suffix}_layer{layer}"
                    rows.append(_mean(group, relation(group, "b2a"), metric, per_fact))
                    if name == "probe_acc":
                        accs[group].append(float(np.mean(per_fact)))
        for group in tests:
            curves[(group, relation(group, "b2a"), where)] = np.array(accs[group])
    return rows, curves


def _by_fact(queries: Sequence[Query], values: Sequence[float]) -> list[float]:
    """Mean per fact: a fact's phrasings are not independent samples."""
    per: dict[int, list[float]] = {}
    for q, v in zip(queries, values, strict=True):
        per.setdefault(q.fact, []).append(v)
    return [float(np.mean(v)) for v in per.values()]


def assoc_rows(model: PreTrainedModel, queries: Sequence[Query], seed: int) -> tuple[list, dict]:
    """Weight-level association, after Zhu et al. 2024's effective weights, per cell.

    For a fact and a direction, the source token s is the last token of the entity the
    prompt gives (A's last name for a2b, the description's last word for b2a) and the
    target token t is that direction's target (the role word of B, the first name of A).
    With the model fed s alone (single_token_logits: no BOS, no phrasing, so attention is
    each layer's value/output map),

        score(s -> t) = logit(t | s) - mean over c in C of logit(c | s)

    where C is the set of targets of every fact in that direction. Rows: `assoc_score`, the
    fact's own pair; `assoc_random`, s with the target of a random other fact of the same
    group whose target token differs; `assoc_margin`, their paired difference. A stored
    one-way map scores above random in the trained direction and not in the other."""
    rng = random.Random(seed)
    rows, bars = [], {}
    for direction in ("a2b", "b2a"):
        first = {}  # one query per fact: the tokens do not depend on the phrasing
        for q in queries:
            if q.direction == direction:
                first.setdefault(q.fact, q)
        chosen = list(first.values())
        sources = [q.input_ids[q.subject_end - 1] for q in chosen]
        targets = [q.target for q in chosen]
        candidates = sorted(set(targets))
        pairs, randoms = [], []
        for i, q in enumerate(chosen):
            others = [
                j for j, o in enumerate(chosen) if o.group == q.group and targets[j] != targets[i]
            ]
            pairs.append((i, i))
            randoms.append((i, rng.choice(others) if others else i))
        own = association_scores(model, sources, targets, candidates, pairs)
        other = association_scores(model, sources, targets, candidates, randoms)
        for group in GROUPS:
            at = [i for i, q in enumerate(chosen) if q.group == group]
            if not at:
                continue
            rel = relation(group, direction)
            rows.append(_mean(group, rel, "assoc_score", [own[i] for i in at]))
            rows.append(_mean(group, rel, "assoc_random", [other[i] for i in at]))
            rows.append(_mean(group, rel, "assoc_margin", [own[i] - other[i] for i in at]))
            bars[(group, rel)] = (
                float(np.mean([own[i] for i in at])),
                float(np.mean([other[i] for i in at])),
            )
    return rows, bars


# ---------------------------------------------------------------------------- figures

CELL_COLORS = {"p2d": "tab:blue", "d2p": "tab:orange", "both": "tab:green"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and in tests
    import matplotlib.pyplot as plt

    return plt


def plot_lens(curves: dict, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for (group, rel), curve in curves.items():
        style = "-" if rel == "same" else "--"
        ax.plot(curve, style, marker="o", color=CELL_COLORS[group], label=f"{group} {rel}")
    ax.set_xticks(range(len(next(iter(curves.values())))))
    ax.set_xlabel("residual stream after layer (0 = embeddings)")
    ax.set_ylabel("p(target), last prompt position")
    ax.set_ylim(0, 1)
    ax.set_title("Logit lens")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_trace(grids: dict, cells: Sequence[tuple[str, str]], title: str, path: Path) -> None:
    """Kinds down, cells across; one colour scale for all panels, so a missing site shows
    as a blank panel rather than as noise stretched to fill the scale."""
    plt = _pyplot()
    top = max(float(np.nanmax(g)) for g in grids.values())
    top = top if top > 0 else 1.0
    layers = next(iter(grids.values())).shape[0]
    fig, axes = plt.subplots(
        len(KINDS),
        len(cells),
        figsize=(1.6 * len(cells) + 1.2, 1.0 + 0.9 * len(KINDS) * max(1.0, layers / 6)),
        squeeze=False,
        sharex=True,
    )
    image = None
    for row, kind in enumerate(KINDS):
        for col, (group, rel) in enumerate(cells):
            ax = axes[row][col]
            image = ax.imshow(
                grids[(group, rel, kind)],
                aspect="auto",
                origin="lower",
                vmin=0,
                vmax=top,
                cmap="Purples",
            )
            if row == 0:
                ax.set_title(f"{group} {rel}", fontsize=8)
            if col == 0:
                ax.set_ylabel(f"{kind}\nlayer", fontsize=8)
            ax.set_yticks(range(layers) if layers <= 6 else range(0, layers, max(1, layers // 5)))
            ax.tick_params(labelsize=6)
            ax.set_xticks(range(len(POSITIONS)))
            ax.set_xticklabels(POSITIONS if row == len(KINDS) - 1 else [], rotation=90)
    fig.suptitle(title, fontsize=9)
    fig.colorbar(image, ax=axes, shrink=0.8, label="p(target) restored - corrupted")
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def plot_probe(curves: dict, chance: dict, path: Path) -> None:
    if not curves:  # no `both` facts to train on
        return
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for (group, rel, where), curve in curves.items():
        style = "-" if where == "subject" else ":"
        label = f"{group} ({rel}), {'description end' if where == 'subject' else 'prompt end'}"
        ax.plot(curve, style, marker="o", color=CELL_COLORS[group], label=label)
    for group, value in chance.items():
        ax.axhline(value, color=CELL_COLORS[group], lw=0.8, alpha=0.5)
    ax.set_xticks(range(len(next(iter(curves.values())))))
    ax.set_xlabel("residual stream after layer (0 = embeddings)")
    ax.set_ylabel("name-bit accuracy (lines: chance)")
    ax.set_title("Probe: does B's representation carry A?")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_assoc(bars: dict, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    names = [f"{g}\n{r}" for g, r in bars]
    x = np.arange(len(bars))
    ax.bar(x - 0.2, [own for own, _ in bars.values()], 0.4, label="own pair")
    ax.bar(x + 0.2, [other for _, other in bars.values()], 0.4, label="random pair")
    ax.set_xticks(x, names, fontsize=7)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_ylabel("centred logit, one-token input")
    ax.set_title("Weight-level association")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------------------- table


def _value(rows: Sequence[dict], group: str, rel: str, metric: str) -> float | None:
    for r in rows:
        if (r["group"], r["direction"], r["metric"]) == (group, rel, metric):
            return r["value"]
    return None


def summary_table(rows: Sequence[dict], peaks: dict, layers: int, title: str) -> Table:
    """One line per group and direction: the numbers that say where the map lives (lens and
    probe series run from layer 0 = embeddings to the last layer)."""
    table = Table(title=title, title_justify="left")
    columns = (
        "group",
        "direction",
        "lens p by layer",
        "clean p",
        "noised p",
        "mlp peak",
        "attn peak",
        "probe B end",
        "probe prompt end",
        "chance",
        "assoc own / rand",
    )
    for name in columns:
        table.add_column(name, justify="left" if name in ("group", "direction") else "right")

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    def series(group: str, rel: str, prefix: str) -> str:
        values = [_value(rows, group, rel, f"{prefix}{layer}") for layer in range(layers + 1)]
        return "-" if all(v is None for v in values) else " ".join(fmt(v) for v in values)

    def peak(group: str, rel: str, kind: str) -> str:
        if (group, rel, kind) not in peaks:
            return "-"
        layer, where, effect = peaks[(group, rel, kind)]
        return f"L{layer} {where} {effect:+.2f}"

    for group in GROUPS:
        for rel in RELATIONS:
            if _value(rows, group, rel, "lens_max_prob") is None:
                continue
            own, other = (_value(rows, group, rel, m) for m in ("assoc_score", "assoc_random"))
            table.add_row(
                group,
                rel,
                series(group, rel, "lens_target_prob_layer"),
                fmt(_value(rows, group, rel, "trace_clean_prob")),
                fmt(_value(rows, group, rel, "trace_corrupted_prob")),
                peak(group, rel, "mlp"),
                peak(group, rel, "attn"),
                series(group, rel, "probe_acc_layer"),
                series(group, rel, "probe_acc_prompt_end_layer"),
                fmt(_value(rows, group, rel, "probe_chance")),
                "-" if own is None else f"{own:+.2f} / {other:+.2f}",
            )
    return table


# ---------------------------------------------------------------------------- run


def _run_label(run_dir: Path) -> str:
    """The run's folder name, with the demo's seed when its config.yaml tells it."""
    try:
        seed = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")).get("seed")
    except (OSError, yaml.YAMLError, AttributeError):  # no or odd config: the name will do
        seed = None
    return run_dir.name if seed is None else f"{run_dir.name}, demo seed {seed}"


def sample_queries(queries: Sequence[Query], per_group: int, seed: int) -> list[Query]:
    """`per_group` facts of each group, each with one phrasing per direction drawn at
    random: `per_group` prompts per group and direction, one per fact (independent)."""
    rng = random.Random(seed)
    chosen = []
    for group in GROUPS:
        facts = sorted({q.fact for q in queries if q.group == group})
        for fact in sorted(rng.sample(facts, min(per_group, len(facts)))):
            for direction in DIRECTIONS:
                options = [q for q in queries if q.fact == fact and q.direction == direction]
                if options:
                    chosen.append(rng.choice(options))
    return chosen


def run_analyze(config: AnalyzeConfig, console: Console | None = None) -> Path:
    """Analyse a trained run; returns the finished analysis run directory."""
    console = console or Console(stderr=True)
    for name in ("facts_per_group", "noise_samples", "batch_size"):
        if getattr(config.trace, name) < 1:
            raise ValueError(f"--trace.{name.replace('_', '-')}: must be at least 1")
    run_dir = _check_run_dir(config.run_dir)
    facts = load_facts(run_dir / "world" / "facts.jsonl")
    templates = load_templates(run_dir / "world" / "templates.jsonl")
    output_dir = config.output_dir or default_run_dir("analyze")
    hf_logging.disable_progress_bar()  # the weight-loading bar is noise here
    try:
        model, tokenizer = load_checkpoint(run_dir / "model")
    finally:
        hf_logging.enable_progress_bar()
    threads = torch.get_num_threads()
    if config.cpu_threads:
        torch.set_num_threads(config.cpu_threads)
    try:
        return _analyze(config, run_dir, output_dir, model, tokenizer, facts, templates, console)
    finally:
        torch.set_num_threads(threads)


def _analyze(
    config: AnalyzeConfig,
    run_dir: Path,
    output_dir: Path,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    facts: list[Fact],
    templates: list[Template],
    console: Console,
) -> Path:
    start = time.perf_counter()
    test = build_queries(facts, templates, tokenizer, ("test",))
    every = build_queries(facts, templates, tokenizer, ("train", "test"))
    layers = len(decoder_layers(model))
    console.print(
        f"[bold]revcurse analyze[/]: {run_dir}, {len(facts)} facts, {len(test)} test prompts, "
        f"{layers} layers"
    )
    seconds: dict[str, float] = {}
    with run_directory(output_dir) as scratch:
        (scratch / "config.yaml").write_text(to_yaml(config), encoding="utf-8")
        tick = time.perf_counter()
        lens, lens_curves = lens_rows(model, test)
        seconds["lens"] = time.perf_counter() - tick

        tick = time.perf_counter()
        traced = sample_queries(test, config.trace.facts_per_group, config.seed)
        traces, grids, peaks = trace_rows(model, traced, config.trace, config.seed, config.progress)
        seconds["trace"] = time.perf_counter() - tick

        tick = time.perf_counter()
        probes, probe_curves = probe_rows(model, every, config.probe, config.seed)
        seconds["probe"] = time.perf_counter() - tick

        tick = time.perf_counter()
        assoc, bars = assoc_rows(model, test, config.seed)
        seconds["assoc"] = time.perf_counter() - tick

        rows = lens + traces + probes + assoc
        tick = time.perf_counter()
        name = _run_label(run_dir)
        plot_lens(lens_curves, scratch / "lens.png")
        cells = list(_cells(traced))
        plot_trace(
            grids,
            cells,
            f"Causal tracing, {name} (analysis seed {config.seed})",
            scratch / "trace.png",
        )
        chance = {g: _value(rows, g, relation(g, "b2a"), "probe_chance") for g in ("p2d", "d2p")}
        plot_probe(
            probe_curves, {g: v for g, v in chance.items() if v is not None}, scratch / "probe.png"
        )
        plot_assoc(bars, scratch / "assoc.png")
        seconds["figures"] = time.perf_counter() - tick

        title = f"Where the one-way map lives: {name} (analysis seed {config.seed})"
        table = render(summary_table(rows, peaks, layers, title), width=180)
        (scratch / "table.txt").write_text(table, encoding="utf-8")
        seconds["total"] = time.perf_counter() - start
        write_json(
            scratch / "results.json",
            {
                "rows": rows,
                "config": to_dict(config),
                "positions": list(POSITIONS),
                "traced": [[q.fact, q.template] for q in traced],
                "seconds": seconds,
                "versions": {
                    "revcurse": revcurse.__version__,
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "python": platform.python_version(),
                },
            },
        )
    print(table, end="")
    console.print(f"results: {output_dir}/results.json ({seconds['total']:.0f} s)")
    return output_dir


def with_run_dir_argument(command: Callable[..., None]) -> Callable[..., None]:
    """`command` (from revcurse.config.command_from_config) with an optional positional
    RUN_DIR that sets --run-dir, so `revcurse analyze RUN_DIR` reads naturally and
    `--config saved.yaml` still replays a run on its own."""
    signature = inspect.signature(command)
    positional = inspect.Parameter(
        "run_dir_argument",
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default=typer.Argument(None, metavar="RUN_DIR", help="A run directory of revcurse demo."),
        annotation=Path | None,
    )

    def wrapped(run_dir_argument: Path | None = None, **kwargs: Any) -> None:
        if run_dir_argument is not None:
            kwargs["run_dir"] = run_dir_argument
        command(**kwargs)

    wrapped.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[positional, *signature.parameters.values()]
    )
    wrapped.__doc__ = command.__doc__
    return wrapped
