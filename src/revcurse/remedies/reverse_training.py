"""Remedy 3b, reverse training (Golovneva et al. 2024): add reversed copies of the text.

Each training sentence of the facts is also trained reversed, as a whole-sequence language
model example (every token scored), in one of four ways:
- token:   the tokenizer's tokens in reverse order;
- word:    words (and punctuation marks) in reverse order;
- entity:  words reversed, but each entity (the fact's name and description) kept in its
           own word order, so "Ada Crane is the pilot of the glass river" becomes
           "the pilot of the glass river is Ada Crane" plus reversed filler words;
- segment: the words cut into segments of 1..k words, the segments' order reversed, each
           segment's words kept in order, segments joined by a marker token.
The test questions stay in natural order: whether a reversed-language copy helps answer a
natural-order reverse question is exactly what this remedy's rows measure.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Literal, get_args

from revcurse.config import check, choice
from revcurse.errors import UserError
from revcurse.facts import Example, Fact, words
from revcurse.remedies.setting import Setting, Treatment

Reversal = Literal["token", "word", "entity", "segment"]
MODES: tuple[Reversal, ...] = get_args(Reversal)
SEGMENT_MARKER = "<seg>"  # in the tiny tokenizer's vocabulary (see recipes.remedy_run)


@dataclass
class ReverseTrainingConfig:
    reversal: Reversal = "entity"
    """token, word, entity or segment"""
    segment_max: int = 3
    """segment mode: longest segment in words"""

    def __post_init__(self) -> None:
        choice(self.reversal, "reversal", MODES)
        check(self.segment_max >= 1, "segment_max", f"must be at least 1, got {self.segment_max}")


def reverse_text(
    text: str, mode: str, fact: Fact, rng: random.Random, segment_max: int, tokenizer=None
) -> str:
    if mode == "token":
        tokens = tokenizer.tokenize(text)
        return tokenizer.convert_tokens_to_string(tokens[::-1])
    if mode == "word":
        return " ".join(words(text)[::-1])
    if mode == "entity":
        units: list[str] = []
        # Cut the text at each entity occurrence (longest first), keeping entities whole.
        pattern = "|".join(re.escape(e) for e in sorted({fact.a, fact.b}, key=len, reverse=True))
        for piece in re.split(f"({pattern})", text):
            if piece in (fact.a, fact.b):
                units.append(piece)
            else:
                units += words(piece)
        return " ".join(units[::-1])
    if mode == "segment":
        remaining, segments = words(text), []
        while remaining:
            size = rng.randint(1, segment_max)
            segments.append(" ".join(remaining[:size]))
            remaining = remaining[size:]
        return f" {SEGMENT_MARKER} ".join(segments[::-1])
    raise UserError(f"unknown reversal '{mode}' (known: {', '.join(MODES)})")


def reversed_copies(setting: Setting) -> list[Example]:
    rng = random.Random(setting.seed)
    config = setting.remedies.reverse_training
    mode, k = config.reversal, config.segment_max
    return [
        Example(
            fact=e.fact,
            group=e.group,
            direction=e.direction,
            split=e.split,
            template=e.template,
            prompt="",  # the whole reversed sentence is scored
            completion=" "
            + reverse_text(
                e.prompt + e.completion, mode, setting.facts[e.fact], rng, k, setting.tokenizer
            ),
        )
        for e in setting.train_examples
    ]


def apply(setting: Setting, method: str) -> Treatment:
    model, cost = setting.train_model(extra=reversed_copies(setting))
    return Treatment(setting.causal_lm(model), cost)
