"""Remedy 4d, MEMIT (Meng et al. 2023): ROME's edit for every treated fact at once, by least
squares, spread over one or more layers.

    revcurse compare --methods baseline,memit   # tiny: the last layer, at the answer's tokens

Sequential rank-one edits (rome) overwrite one another where the keys of different facts'
questions nearly coincide: at the prompt's last token, where causal tracing finds the tiny
model's lookup, the key is mostly the phrasing's last word, the same for every fact. MEMIT
writes them all in one solve:
1. for each treated fact, ROME's value changes (ffn.optimised_value) at the last edited
   layer's MLP output, at the edit sites of its reverse question in every training
   phrasing (`position`: by default every token that predicts an answer token, one change
   per answer token: the last layer at the prompt's last token reaches only the first);
   the hidden state there plus that change is the target;
2. for each edited layer, lowest first: the part of the target still missing at the last
   edited layer, shared equally among the layers still to edit, is written into the layer's
   FFN output matrix by the delta rule over all the questions' keys at once, keeping the
   outputs of generic text's and the training sentences' keys (ffn.delta_rule, `ridge`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from revcurse.config import check, choice
from revcurse.facts import Example
from revcurse.lm.hooks import decoder_layers
from revcurse.remedies.ffn import (
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
from revcurse.remedies.targets import edited, generic_texts, reverse_phrasings

if TYPE_CHECKING:
    from transformers import PreTrainedModel

METHOD = "memit"
POSITIONS = ("answer", "last", "subject")


@dataclass
class MemitConfig:
    layers: str = "-1"  # edited layers, the change spread over them: -1, the traced lookup
    # answer: every position that predicts an answer token (the last layer's MLP output at
    # the prompt's last token reaches only the first); last: the prompt's last token;
    # subject: the subject's last token (ROME's site)
    position: str = "answer"  # the tokens whose MLP output is edited: answer, last or subject
    steps: int = 30  # Adam steps that optimise each fact's value change
    # scripts/sweep_edits.py: on 128 hidden units reverse and locality trade against each
    # other (3 is between); on 1024 (--tiny.d-ff 1024) 20 keeps both
    ridge: float = 3.0  # weight of keeping the outputs of the keys that must stay

    def __post_init__(self) -> None:
        check_layers(self.layers, "layers")
        choice(self.position, "position", POSITIONS)
        check(self.steps >= 1, "steps", f"must be at least 1, got {self.steps}")
        check(self.ridge > 0, "ridge", f"must be positive, got {self.ridge}")


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


def memit_edit(setting: Setting, model: PreTrainedModel, treated: list[int]) -> None:
    config = setting.remedies.memit
    layers = parse_layers(config.layers, len(decoder_layers(model)))
    top = layers[-1]
    asked: list[Example] = []
    sites, changes = [], []
    for fact_id in treated:
        questions = setting.ask(reverse_phrasings(setting, [fact_id], "train"))
        forced = TeacherForced.of(setting.tokenizer, questions)
        where, slot = edit_sites(setting, fact_id, questions, forced, config.position)
        pre, _ = activity(model, forced, [top])  # the change's scale: the value it changes
        value = pre[top][where[:, 0], where[:, 1]] @ down_proj(model, top).weight.float().T
        scale = value.norm(dim=-1).mean().item()
        change = optimised_value(model, forced, where, top, scale, config.steps, slot)
        sites.append(where + torch.tensor([len(asked), 0]))  # rows of the joint batch
        changes.append(change[slot])
        asked += questions
    forced = TeacherForced.of(setting.tokenizer, asked)  # right-padded: positions still hold
    where = torch.cat(sites)
    rows, cols = where.unbind(dim=1)
    _, stream = activity(model, forced, [top])
    target = stream[top][rows, cols] + torch.cat(changes).float()
    kept = kept_keys(setting, model, keys(model, setting.tokenizer, generic_texts(setting), layers))
    for done, layer in enumerate(layers):
        pre, stream = activity(model, forced, sorted({layer, top}))  # key here, stream at top
        missing = target - stream[top][rows, cols]
        key = pre[layer][rows, cols]
        share = missing / (len(layers) - done)  # the layers still to edit write equal parts
        change = delta_rule(key, share, kept[layer], config.ridge, RIDGE)
        add_to_weight(model, layer, change)


def apply(setting: Setting) -> Treatment:
    return edited(METHOD, setting, lambda model, treated: memit_edit(setting, model, treated))
