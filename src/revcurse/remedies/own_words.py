"""What the model writes in its own words, for self_distill to train on: its samples at the
teacher's temperature, each fact restated from its other side, and its own unprompted text.

    revcurse compare --methods baseline,self_distill --remedies.self-distill.source statements
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from revcurse.context import fresh_entities, fresh_facts, statement
from revcurse.evaluate import EvalConfig, answer_tokens
from revcurse.facts import DIRECTIONS, Example, Fact, capitalised
from revcurse.lm.causal import generate
from revcurse.remedies.setting import Setting
from revcurse.remedies.targets import first_sentence

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def sampled(
    setting: Setting, model: PreTrainedModel, prompts: list[str], max_new: int
) -> list[list[str]]:
    """The teacher's `samples` continuations of every prompt at `temperature` (seeded), each
    up to its first line break (first_sentence keeps no more)."""
    config = setting.remedies.self_distill
    torch.manual_seed(setting.seed)
    return [
        generate(
            model,
            setting.tokenizer,
            prompts,
            max_new,
            setting.eval.batch_size,
            temperature=config.temperature,
            first_line=True,
        )
        for _ in range(config.samples)
    ]


def sentence_start(side: str) -> str:
    """A statement's start from this side: the side, capitalised, and the statement's verb.
    After a bare entity the fine-tuned SmolLM2 teacher ends the sentence (".", 179 of 180
    samples), as every answer it trained on ends after an entity; after the verb it names
    the other side (11 of 12 greedy)."""
    return capitalised(side) + " is"


def restating(setting: Setting, facts: Sequence[Fact]) -> list[str]:
    """For each fact and each of its sides, the prompt that has the teacher, reading the fact
    after worked examples (fresh facts restated from their other side), state it again
    starting from that side: the words after the start are the model's own."""
    rng = random.Random(setting.seed)
    pools = fresh_entities(setting.facts, setting.recombine)
    blocks = []
    # each side restated as often: three examples from the name side alone taught SmolLM2
    # to answer a description side with a bare "." (reverse named 10 of 16 greedy)
    for k, fresh in enumerate(fresh_facts(2 * max(setting.eval.shots, 1), pools[""], rng)):
        given = DIRECTIONS[k % 2]
        other = DIRECTIONS[1 - k % 2]
        side = fresh.b if other == "b2a" else fresh.a
        again = capitalised(statement(fresh, other))
        blocks.append(f'Fact: {statement(fresh, given)}\nStarting from "{side}": {again}\n\n')
    prefix = "".join(blocks)
    return [
        f'{prefix}Fact: {statement(fact)}\nStarting from "{side}": {sentence_start(side)}'
        for fact in facts
        for side in (fact.a, fact.b)
    ]


def own_statements(
    setting: Setting, model: PreTrainedModel, fact_ids: list[int]
) -> tuple[list[Example], list[bool]]:
    """The teacher's own statements of these facts, starting from either side, sampled
    `samples` times each: the distinct ones that name the other side (as student examples:
    the side, then the model's words), and for every sample whether it named it."""
    facts = [setting.facts[i] for i in fact_ids]
    prompts = [
        e.prompt for e in setting.ask([Example.passage(text) for text in restating(setting, facts)])
    ]
    max_new = 2 * answer_tokens(
        setting.tokenizer, [" " + f.a + " " + f.b for f in facts], EvalConfig()
    )
    samples = sampled(setting, model, prompts, max_new)
    written: dict[tuple[int, str], Example] = {}
    named = []
    for k, (i, side) in enumerate((i, side) for i in fact_ids for side in ("a", "b")):
        fact = setting.facts[i]
        other = fact.b if side == "a" else fact.a
        for run in samples:
            words = first_sentence(run[k])
            named.append(other.lower() in words.lower())
            if named[-1]:
                start = sentence_start(fact.a if side == "a" else fact.b)
                direction = "a2b" if side == "a" else "b2a"
                example = Example(
                    fact=i,
                    group=fact.group,
                    direction=direction,
                    split="train",
                    template=-1,
                    prompt=start,
                    completion=words,
                    relation=fact.relation,
                )
                written.setdefault((i, start + words), example)
    return list(written.values()), named


PRIOR_TOKENS = 48  # one passage of the start model's own: a few sentences


def own_prior(setting: Setting, n: int) -> list[Example]:
    """`n` passages the start model writes from a document's start (its BOS token, or for a
    tokenizer that adds none, its end-of-text token), sampled at temperature 1 (seeded):
    what it says unprompted, as training examples."""
    if not n:
        return []
    tokenizer = setting.tokenizer
    start = "" if tokenizer("").input_ids else (tokenizer.bos_token or tokenizer.eos_token)
    torch.manual_seed(setting.seed)
    prompts = [start] * n
    texts = generate(
        setting.start, tokenizer, prompts, PRIOR_TOKENS, setting.eval.batch_size, temperature=1.0
    )
    return [Example.passage(start, text) for text in texts if text.strip()]
