"""Remedy 4c, rank-one model editing (ROME, Meng et al. 2022): install B -> A in closed form.

    revcurse compare --methods baseline,rome --remedies.rome.layer middle

ROME treats an FFN output matrix W (down_proj) as a key -> value memory. To make the model
answer the reverse question, the *subject* is the entity the reverse question starts from
(the description of a p2d fact, the name of a d2p fact); for each treated fact, in turn:
1. key k*: down_proj's input at the subject's last token, averaged over the reverse
   questions in every training phrasing;
2. value v*: the layer's MLP output there, plus a vector delta optimised (`steps` Adam
   steps, |delta| <= 4 |v|, a small L2 penalty) so that the model answers the entity;
3. W += (v* - W k*) (C^-1 k*)^T / ((C^-1 k*)^T k*), with C = E[k k^T] the keys' second
   moment over generic text.
The statistics C come from `generic_documents` documents the tool generates itself (the
reading documents), one forward pass: seconds, where ROME's Wikipedia statistics take hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

import torch

from revcurse.config import check, choice
from revcurse.facts import Example, Fact
from revcurse.lm.hooks import captured_inputs, decoder_layers
from revcurse.remedies.ffn import (
    TeacherForced,
    add_to_weight,
    check_layers,
    down_proj,
    keys,
    moment_of,
    optimised_value,
    parse_layers,
)
from revcurse.remedies.setting import Setting, Treatment
from revcurse.remedies.targets import edited, generic_texts, reverse_to_write

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

RIDGE = 1e-2  # C + RIDGE * mean eigenvalue * I: keeps C^-1 sane on a few thousand tokens


Position = Literal["subject", "last"]
POSITIONS: tuple[Position, ...] = get_args(Position)


@dataclass
class RomeConfig:
    layer: str = "middle"
    """the edited layer, middle ((n_layers - 1) // 2) or an index"""
    steps: int = 30
    """Adam steps that optimise each value vector"""
    # subject: the subject's last token (Meng et al.); last: the prompt's last token, where
    # causal tracing finds the tiny model's lookup (revcurse analyze)
    position: Position = "subject"
    """the token whose MLP output is edited: subject or last"""

    def __post_init__(self) -> None:
        check_layers(self.layer, "layer")
        choice(self.position, "position", POSITIONS)
        one = self.layer != "all" and "," not in self.layer
        check(one, "layer", f"ROME edits one layer, got {self.layer!r}")
        check(self.steps >= 1, "steps", f"must be at least 1, got {self.steps}")


def subject_of(fact: Fact, example: Example) -> str:
    """The entity a reverse question starts from: the one that is not its answer."""
    return fact.b if fact.a in example.completion else fact.a


def edit_positions(
    tokenizer: PreTrainedTokenizerBase,
    examples: list[Example],
    subjects: list[str],
    position: str = "subject",
) -> torch.Tensor:
    """(n,) index in each prompt's token ids of the subject's last token, or (`last`) of
    the prompt's last token."""
    out = []
    for example, subject in zip(examples, subjects, strict=True):
        end = len(example.prompt)
        if position == "subject":
            end = example.prompt.index(subject) + len(subject)
        out.append(len(tokenizer(example.prompt[:end]).input_ids) - 1)
    return torch.tensor(out)


def second_moment(model: PreTrainedModel, setting: Setting, layer: int) -> torch.Tensor:
    return moment_of(keys(model, setting.tokenizer, generic_texts(setting), [layer])[layer], RIDGE)


def edit_fact(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    asked: list[Example],
    subjects: list[str],
    layer: int,
    inverse_moment: torch.Tensor,
    steps: int,
    position: str = "subject",
) -> None:
    forced = TeacherForced.of(tokenizer, asked)
    where = edit_positions(tokenizer, asked, subjects, position)
    rows = torch.arange(len(asked))
    inputs = {k: forced.batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad(), captured_inputs({0: down_proj(model, layer)}) as captured:
        model.model(**inputs, use_cache=False)
    key = captured[0][rows, where].float().mean(dim=0)
    value = (down_proj(model, layer).weight.float() @ key).detach()

    at = torch.stack([rows, where], dim=1)
    (delta,) = optimised_value(model, forced, at, layer, value.norm().item(), steps)
    direction = inverse_moment @ key
    add_to_weight(model, layer, torch.outer(delta.detach(), direction) / (direction @ key))


def rome_edit(setting: Setting, model: PreTrainedModel, treated: list[int]) -> None:
    (layer,) = parse_layers(setting.remedies.rome.layer, len(decoder_layers(model)))
    inverse_moment = torch.linalg.inv(second_moment(model, setting, layer))
    for fact_id in treated:
        asked = setting.ask(reverse_to_write(setting, [fact_id]))
        fact = setting.facts[fact_id]
        subjects = [subject_of(fact, e) for e in asked]
        edit_fact(
            model,
            setting.tokenizer,
            asked,
            subjects,
            layer,
            inverse_moment,
            setting.remedies.rome.steps,
            setting.remedies.rome.position,
        )


def apply(setting: Setting, method: str) -> Treatment:
    return edited(method, setting, lambda model, treated: rome_edit(setting, model, treated))
