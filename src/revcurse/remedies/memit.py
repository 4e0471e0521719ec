"""Remedy 4d, MEMIT (Meng et al. 2023): ROME's edit for every treated fact at once, by least
squares, spread over one or more layers; and `hebbian_memit`, the same writing with the
model's own activity as the target, no gradient at all.

    revcurse compare --methods baseline,memit   # tiny: the last layer, at the answer's tokens
    revcurse compare --model smollm2-135m --methods baseline,hebbian_memit

Sequential rank-one edits (rome) overwrite one another where the keys of different facts'
questions nearly coincide: at the prompt's last token, where causal tracing finds the tiny
model's lookup, the key is mostly the phrasing's last word, the same for every fact. MEMIT
writes them all in one solve:
1. the target, at the edit sites of each treated fact's reverse question in every training
   phrasing (`position`: by default every token that predicts an answer token; `subject`,
   the subject's last token, is MEMIT's own), in the residual stream after the last edited
   layer:
   - memit: the closed-book hidden state plus ROME's value change (ffn.optimised_value,
     one change per answer token: the last layer at the prompt's last token reaches only
     the first), optimised until the model gives the answer;
   - hebbian_memit: the hidden state there when the model reads the fact first (after the
     worked examples, as in_context poses the question): what the context makes the
     units do is what the weights learn to do without it (the thesis's cure 3, Hebbian);
2. for each edited layer, lowest first: the part of the target still missing at the last
   edited layer, shared equally among the layers still to edit, is written into the layer's
   FFN output matrix by the delta rule over all the questions' keys at once, keeping the
   outputs of generic text's and the training sentences' keys (ffn.delta_rule, `ridge`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, get_args

import torch

from revcurse.config import check, choice
from revcurse.context import posed_in_context
from revcurse.facts import Example
from revcurse.lm.hooks import captured_outputs, decoder_layers
from revcurse.remedies.ffn import (
    Layers,
    TeacherForced,
    activity,
    add_to_weight,
    check_layers,
    delta_rule,
    down_proj,
    kept_keys,
    keys,
    optimised_value,
    parse_layers,
)
from revcurse.remedies.rome import RIDGE, edit_positions, subject_of
from revcurse.remedies.setting import Setting, Treatment
from revcurse.remedies.targets import (
    controls,
    edited,
    generic_texts,
    own_answers,
    replayable,
    reverse_to_write,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel

Position = Literal["answer", "last", "subject"]
POSITIONS: tuple[Position, ...] = get_args(Position)


@dataclass
class Writing:
    """Where and how MEMIT's least squares write (memit and hebbian_memit alike)."""

    layers: Layers = field(default_factory=lambda: [-1])
    """edited layers, the change spread over them: -1, the traced lookup"""
    # answer: every position that predicts an answer token (the last layer's MLP output at
    # the prompt's last token reaches only the first); last: the prompt's last token;
    # subject: the subject's last token (ROME's site)
    position: Position = "answer"
    """the tokens whose MLP output is edited: answer, last or subject"""
    # scripts/sweep_edits.py: on 128 hidden units reverse and locality trade against each
    # other (3 is between); on 1024 (--tiny.d-ff 1024) 20 keeps both
    ridge: float = 3.0
    """weight of keeping the outputs of the keys that must stay"""
    # also keep the outputs at the model's own closed-book answers to the replayable facts'
    # training questions (both directions; never a control's): on SmolLM2 the late layers'
    # keys at a reverse question's answer are much alike across facts, and an edit unkept
    # there changes the untouched facts' (wrong) reverse answers (scripts/sweep_hebbian.py)
    keep: bool = False
    """also keep the model's own answers about the replayable facts"""

    def __post_init__(self) -> None:
        check_layers(self.layers, "layers")
        choice(self.position, "position", POSITIONS)
        check(self.ridge > 0, "ridge", f"must be positive, got {self.ridge}")


@dataclass
class MemitConfig(Writing):
    steps: int = 30
    """Adam steps that optimise each fact's value change"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.steps >= 1, "steps", f"must be at least 1, got {self.steps}")


@dataclass
class HebbianMemitConfig(Writing):
    # write only the questions the model answers right when it reads the fact (a third
    # factor, success, gating the Hebbian rule). SmolLM2 reading a fact after worked examples
    # answers a reverse question wrong in some phrasings (a name from the examples), and one
    # ungated reading installs that just as faithfully (scripts/sweep_hebbian.py: reverse
    # 0.50 / 0.65 ungated, 0.70 / 0.80 gated); over six readings the wrong names differ and
    # the mean is the right one: ungated 1.00 / 0.95, gated 0.95 / 0.90
    gate: bool = False
    """write only the questions reading the fact gets right"""
    # the fact read after this many draws of worked examples, each reading's stream a target
    # for the same keys (the least squares write their mean)
    readings: int = 1
    """readings of each fact, after other worked examples each"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.readings >= 1, "readings", f"must be at least 1, got {self.readings}")


def edit_sites(
    setting: Setting, fact_id: int, questions: list[Example], forced: TeacherForced, position: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """((m, 2) row and position of each edited token, (m,) which value change it gets): every
    position that predicts an answer token, the j-th of each answer sharing change j
    (`answer`), or one token per question sharing one change (`last`, `subject`)."""
    if position == "answer":
        where = forced.answer.nonzero()
        slot = torch.tensor([int(forced.answer[r, :c].sum()) for r, c in where.tolist()])
        return where, slot
    subjects = [subject_of(setting.facts[fact_id], e) for e in questions]
    at = edit_positions(setting.tokenizer, questions, subjects, position)
    return torch.stack([torch.arange(len(at)), at], dim=1), torch.zeros(len(at), dtype=torch.long)


@torch.no_grad()
def in_context_stream(
    setting: Setting,
    model: PreTrainedModel,
    raw: list[Example],
    forced: TeacherForced,
    top: int,
    reading: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """((n, width, d), (n,)): the residual stream after layer `top` at each position of the
    closed-book questions `forced` (of `raw`), when the model reads each one's fact first,
    after the worked examples (the `reading`-th draw of them; the first is in_context's):
    the question is the end of that longer prompt; and whether that reading gives each
    answer (every token the argmax, teacher-forced)."""
    seed = setting.seed + reading
    posed = posed_in_context(
        raw, setting.facts, setting.remedies.distractors, seed, setting.fact_lines
    )
    opened = TeacherForced.of(setting.tokenizer, setting.pose(posed, seed))
    with captured_outputs({top: decoder_layers(model)[top]}) as stream:
        final = model.model(
            input_ids=opened.batch["input_ids"],
            attention_mask=opened.batch["attention_mask"],
            use_cache=False,
        ).last_hidden_state
    closed_lengths = forced.batch["attention_mask"].sum(1).tolist()
    opened_lengths = opened.batch["attention_mask"].sum(1).tolist()
    out = torch.zeros(*forced.batch["input_ids"].shape, stream[top].shape[-1])
    right = torch.zeros(len(raw), dtype=torch.bool)
    for row, (n, m) in enumerate(zip(closed_lengths, opened_lengths, strict=True)):
        # a leading start-of-text token is the closed book's own; the rest must coincide
        first = int(forced.batch["input_ids"][row, 0] == setting.tokenizer.bos_token_id)
        ids, context_ids = forced.batch["input_ids"][row, first:n], opened.batch["input_ids"][row]
        if not torch.equal(ids, context_ids[m - (n - first) : m]):
            raise ValueError(f"{raw[row].prompt!r}: tokenised otherwise after its context")
        out[row, first:n] = stream[top][row, m - (n - first) : m].float()
        answer = forced.answer[row, :n].nonzero().squeeze(1)
        # the vocabulary projection at the answer's positions only (49k words on SmolLM2)
        said = model.lm_head(final[row, answer + m - n]).argmax(dim=-1)
        right[row] = bool((said == forced.next_token[row, answer]).all())
    return out, right


def memit_edit(
    setting: Setting, model: PreTrainedModel, treated: list[int], target_from: str = "optimised"
) -> None:
    """MEMIT's writing of `treated` facts' reverse, toward ROME's optimised values
    (`target_from` optimised) or the model's own stream reading the fact (context)."""
    config = (
        setting.remedies.memit if target_from == "optimised" else setting.remedies.hebbian_memit
    )
    layers = parse_layers(config.layers, len(decoder_layers(model)))
    top = layers[-1]
    asked: list[Example] = []
    sites, changes = [], []  # ROME's value changes, or the in-context stream itself
    for fact_id in treated:
        raw = reverse_to_write(setting, [fact_id])
        questions = setting.ask(raw)
        forced = TeacherForced.of(setting.tokenizer, questions)
        where, slot = edit_sites(setting, fact_id, questions, forced, config.position)
        rows, cols = where.unbind(dim=1)
        if isinstance(config, HebbianMemitConfig):  # each reading's stream: a target, same keys
            targets, written = [], []
            for reading in range(config.readings):
                read, right = in_context_stream(setting, model, raw, forced, top, reading)
                # only what reading the fact gets right is written
                keep = right[rows] if config.gate else torch.ones(len(rows), dtype=torch.bool)
                targets.append(read[rows[keep], cols[keep]])
                written.append(where[keep])
            changes.append(torch.cat(targets))
            where = torch.cat(written)
        else:
            pre, _ = activity(model, forced, [top])  # the change's scale: the value it changes
            value = pre[top][rows, cols] @ down_proj(model, top).weight.float().T
            scale = value.norm(dim=-1).mean().item()
            change = optimised_value(model, forced, where, top, scale, config.steps, slot)
            changes.append(change[slot])
        sites.append(where + torch.tensor([len(asked), 0]))  # rows of the joint batch
        asked += questions
    forced = TeacherForced.of(setting.tokenizer, asked)  # right-padded: positions still hold
    where = torch.cat(sites)
    if not len(where):  # the model read none of the facts right: nothing to write
        return
    rows, cols = where.unbind(dim=1)
    if isinstance(config, HebbianMemitConfig):
        target = torch.cat(changes)
    else:
        _, stream = activity(model, forced, [top])
        target = stream[top][rows, cols] + torch.cat(changes).float()
    generic = keys(model, setting.tokenizer, generic_texts(setting), layers)
    own = own_answers(setting, replayable(setting)) if config.keep else []
    kept = kept_keys(setting, model, generic, own, controls(setting))
    for done, layer in enumerate(layers):
        pre, stream = activity(model, forced, sorted({layer, top}))  # key here, stream at top
        missing = target - stream[top][rows, cols]
        key = pre[layer][rows, cols]
        share = missing / (len(layers) - done)  # the layers still to edit write equal parts
        change = delta_rule(key, share, kept[layer], config.ridge, RIDGE)
        add_to_weight(model, layer, change)


def apply(setting: Setting, method: str, target_from: str = "optimised") -> Treatment:
    return edited(
        method, setting, lambda model, treated: memit_edit(setting, model, treated, target_from)
    )
