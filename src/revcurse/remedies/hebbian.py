"""Remedy 4b, Hebbian edit: strengthen the weights between units a reverse question
activates and the units that should answer it. No optimizer, no gradient.

    revcurse compare --methods baseline,hebbian --remedies.hebbian.rate 0.03

For each treated fact, the reverse question in every training phrasing is run teacher-
forced with its answer (the pair B -> A). At each position that predicts an answer token
(`positions`: all of them, or only the prompt's last), in each chosen FFN layer:
- pre-synaptic activity x: down_proj's input (the FFN's hidden units), minus its mean over
  generic text (the covariance form of Hebb's rule, so that units active everywhere, e.g.
  on the template's words, do not pick up every fact);
- post-synaptic activity y (`source`):
  - context: what the model itself does when the fact is in its context: the residual
             stream after the layer, reading the fact, minus the same without it;
  - pair:    the output unit of the answer's next token: its unembedding direction, as
             long as the residual stream at that position.
Then, by `rule`:
- plain: W_down += rate * sum over positions of y x^T / |x|^2 (divided by the number of
         layers), so a key seen again adds `rate` times its value;
- whitened: the same with decorrelated keys (anti-Hebbian lateral inhibition, in closed
         form): W_down += rate * sum of y u^T / (u . k), u = C^-1 k for the raw key k, C the
         keys' second moment over generic text and the treated questions, so that a stored
         key recalls rate x its value and keys C calls alike share less of it
         (`revcurse compare --methods baseline,hebbian_whitened`);
- contrastive: the plain rule on x = k minus the mean key of the same phrasing, at the same
         answer token, of the other treated facts: only what is specific to the fact is
         written (`revcurse compare --methods baseline,hebbian_contrastive`);
- delta: the error-correcting (delta / least-squares) rule over all treated facts at once,
         on the raw keys: the change D minimising |D X - Y|^2 + ridge n tr(D C D^T), where C
         is the keys' second moment over what must stay as it is (generic text and the
         model's own training sentences, teacher-forced): D = Y X^T (X X^T + ridge n C)^-1.
         Correlated keys (the template's words) no longer pile up: each key gets what is
         missing, not one more copy (`revcurse compare --methods baseline,hebbian_delta`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, get_args

import torch

from revcurse.config import check, choice
from revcurse.context import posed_in_context
from revcurse.facts import Example
from revcurse.lm.hooks import decoder_layers
from revcurse.remedies.ffn import (
    Layers,
    TeacherForced,
    activity,
    add_to_weight,
    check_layers,
    delta_rule,
    kept_keys,
    keys,
    moment_of,
    parse_layers,
)
from revcurse.remedies.setting import Setting, Treatment
from revcurse.remedies.targets import controls, edited, generic_texts, reverse_to_write

if TYPE_CHECKING:
    from transformers import PreTrainedModel

Source = Literal["context", "pair"]
Positions = Literal["answer", "last"]
SOURCES: tuple[Source, ...] = get_args(Source)
POSITIONS: tuple[Positions, ...] = get_args(Positions)
RULES = ("plain", "whitened", "contrastive", "delta")


@dataclass
class HebbianConfig:
    source: Source = "context"
    """post-synaptic activity: context (fact read) or pair"""
    positions: Positions = "answer"
    """answer (every answer token) or last"""
    layers: Layers = "all"
    """all, middle or indices, e.g. 0,1"""
    # scripts/sweep_edits.py: no rate installs the reverse; above 0.03 locality collapses
    rate: float = 0.03
    """plain, whitened, contrastive: a stored key recalls rate x its value"""
    # scripts/sweep_edits.py: reverse and locality trade against each other; 0.3 is between
    ridge: float = 0.3
    """delta rule: weight of keeping the outputs of the keys that must stay"""
    # The sweep: on every layer the delta rule installs far less than on the last alone
    delta_layers: Layers = field(default_factory=lambda: [-1])
    """delta rule: its layers (the last: where tracing finds the lookup)"""

    def __post_init__(self) -> None:
        check(self.ridge > 0, "ridge", f"must be positive, got {self.ridge}")
        check_layers(self.delta_layers, "delta_layers")
        choice(self.source, "source", SOURCES)
        choice(self.positions, "positions", POSITIONS)
        check_layers(self.layers, "layers")
        check(math.isfinite(self.rate), "rate", f"must be a finite number, got {self.rate}")


def answer_mask(forced: TeacherForced, positions: str) -> torch.Tensor:
    if positions == "answer":
        return forced.answer
    mask = torch.zeros_like(forced.answer)
    mask[torch.arange(len(mask)), forced.last_prompt_position()] = True
    return mask


def context_shift(
    setting: Setting,
    model: PreTrainedModel,
    asked: list[Example],
    closed: TeacherForced,
    without: dict[int, torch.Tensor],
) -> dict[int, torch.Tensor]:
    """Per layer, (n, width, d): residual stream with the fact in context minus `without` it
    (the closed-book run `closed` of `asked`), aligned at the closed-book sequence's positions
    (the question and answer end both)."""
    posed = posed_in_context(asked, setting.facts, setting.remedies.distractors, setting.seed)
    opened = TeacherForced.of(setting.tokenizer, setting.ask(posed))
    _, with_fact = activity(model, opened, list(without))
    lengths = closed.batch["attention_mask"].sum(1)
    offsets = opened.batch["attention_mask"].sum(1) - lengths  # the context's length
    shift = {}
    for layer in without:
        out = torch.zeros_like(without[layer])
        for row, (n, k) in enumerate(zip(lengths.tolist(), offsets.tolist(), strict=True)):
            out[row, :n] = with_fact[layer][row, k : k + n] - without[layer][row, :n]
        shift[layer] = out
    return shift


def whitened(keys: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """(n, d_ff): C^-1 k for each key, C the second moment of `kept` (generic text and the
    treated questions), a thousandth of its mean variance added so it always inverts."""
    return torch.linalg.solve(moment_of(kept, 1e-3), keys.T).T


def contrasted(keys: torch.Tensor, asked: list[Example], mask: torch.Tensor) -> torch.Tensor:
    """(n, d_ff): each key (rows of `mask`'s positions, in order) minus the mean key of the
    other facts' questions in the same phrasing at the same answer token."""
    slot = [
        (asked[row].template, int(mask[row, :col].sum())) for row, col in mask.nonzero().tolist()
    ]
    groups: dict[tuple[str, int], list[int]] = {}
    for i, key in enumerate(slot):
        groups.setdefault(key, []).append(i)
    out = keys.clone()
    for members in groups.values():
        if len(members) < 2:  # no other fact asked this way: nothing to contrast against
            continue
        total = keys[members].sum(dim=0)
        out[members] = keys[members] - (total - keys[members]) / (len(members) - 1)
    return out


def hebbian_edit(
    setting: Setting, model: PreTrainedModel, treated: list[int], rule: str = "plain"
) -> None:
    config = setting.remedies.hebbian
    choice(rule, "rule", RULES)
    asked = reverse_to_write(setting, treated)
    chosen = config.delta_layers if rule == "delta" else config.layers
    layers = parse_layers(chosen, len(decoder_layers(model)))
    forced = TeacherForced.of(setting.tokenizer, setting.ask(asked))
    pre, post = activity(model, forced, layers)
    mask = answer_mask(forced, config.positions)
    if config.source == "context":
        target = context_shift(setting, model, asked, forced, post)
    else:
        unembed = model.get_output_embeddings().weight.float()
        direction = torch.nn.functional.normalize(unembed[forced.next_token.clamp(min=0)], dim=-1)
    generic = keys(model, setting.tokenizer, generic_texts(setting), layers)
    kept = kept_keys(setting, model, generic, leave=controls(setting)) if rule == "delta" else {}
    for layer in layers:
        if config.source == "context":
            y = target[layer][mask]
        else:
            y = direction[mask] * post[layer][mask].norm(dim=-1, keepdim=True)
        if rule == "delta":
            delta = delta_rule(pre[layer][mask], y, kept[layer], config.ridge)
            add_to_weight(model, layer, delta / len(layers))
            continue
        k = pre[layer][mask]
        if rule == "whitened":
            u = whitened(k, torch.cat([generic[layer], k]))
            delta = (y.T / (u * k).sum(-1).clamp(min=1e-6)) @ u
        else:
            if rule == "contrastive":
                x = contrasted(k, asked, mask)
            else:
                x = k - generic[layer].mean(dim=0)
            delta = (y.T / x.pow(2).sum(-1).clamp(min=1e-6)) @ x
        add_to_weight(model, layer, config.rate / len(layers) * delta)


def apply(setting: Setting, method: str, rule: str = "plain") -> Treatment:
    return edited(
        method, setting, lambda model, treated: hebbian_edit(setting, model, treated, rule)
    )
