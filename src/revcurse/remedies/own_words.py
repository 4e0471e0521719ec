"""What the model writes in its own words, for self_distill to train on: its samples at the
teacher's temperature, each fact restated from its other side, its own questions about each
fact answered with the fact in context, and its own unprompted text.

    revcurse compare --methods baseline,self_distill --remedies.self-distill.source own
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from revcurse.context import fresh_entities, fresh_facts, statement
from revcurse.evaluate import EvalConfig, answer_tokens
from revcurse.facts import DIRECTIONS, Example, Fact, capitalised, words
from revcurse.lm.causal import generate
from revcurse.remedies.setting import Setting
from revcurse.remedies.targets import first_sentence

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def sampled(
    setting: Setting,
    model: PreTrainedModel,
    prompts: list[str],
    max_new: int,
    samples: int | None = None,
    temperature: float | None = None,
) -> list[list[str]]:
    """The teacher's `samples` continuations of every prompt at its `temperature` (or these),
    seeded, each up to its first line break (first_sentence keeps no more)."""
    config = setting.remedies.self_distill
    torch.manual_seed(setting.seed)
    return [
        generate(
            model,
            setting.tokenizer,
            prompts,
            max_new,
            setting.eval.batch_size,
            temperature=temperature or config.temperature,
            first_line=True,
        )
        for _ in range(samples or config.samples)
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


@dataclass(frozen=True)
class WorkedFact:
    """A fictional fact and its questions, each (the side it names, question, answer)."""

    text: str
    asked: tuple[tuple[str, str, str], ...]


# Worked examples of the model's own questions: fictional facts of three relations (none the
# world's), each asked from both sides. They show the task, Question/Answer lines; what the
# model asks about a user's fact, and how, is its own.
QUESTION_EXAMPLES = (
    WorkedFact(
        "Orla Penhallow designed the Saltmere Bridge.",
        (
            ("Orla Penhallow", "What did Orla Penhallow design?", "the Saltmere Bridge"),
            ("the Saltmere Bridge", "Who designed the Saltmere Bridge?", "Orla Penhallow"),
        ),
    ),
    WorkedFact(
        "The Velnor Prize is awarded by the Cassini Society.",
        (
            (
                "the Cassini Society",
                "Which prize does the Cassini Society award?",
                "the Velnor Prize",
            ),
            ("the Velnor Prize", "Who awards the Velnor Prize?", "the Cassini Society"),
        ),
    ),
    WorkedFact(
        "The keeper of the amber lighthouse is Tomas Greer.",
        (
            ("Tomas Greer", "What is Tomas Greer known as?", "the keeper of the amber lighthouse"),
            (
                "the keeper of the amber lighthouse",
                "Who is the keeper of the amber lighthouse?",
                "Tomas Greer",
            ),
        ),
    ),
)


def _unclaimed(facts: Sequence[Fact]) -> list[WorkedFact]:
    """The worked examples that name no entity of these facts (a user's world might)."""
    named = {e.casefold() for f in facts for e in (f.a, f.b)}
    return [w for w in QUESTION_EXAMPLES if not any(e in w.text.casefold() for e in named)]


def asking(setting: Setting, facts: Sequence[Fact]) -> list[str]:
    """For each fact and each of its sides, the prompt that has the model, reading the fact
    after worked examples, write a question about that side: its words after the colon."""
    prefix = "".join(
        f"Fact: {worked.text}\n"
        + "".join(f'Question about "{side}": {question}\n' for side, question, _ in worked.asked)
        + "\n"
        for worked in _unclaimed(setting.facts)
    )
    return [
        f'{prefix}Fact: {statement(fact)}\nQuestion about "{side}":'
        for fact in facts
        for side in (fact.a, fact.b)
    ]


def answering(setting: Setting, fact: Fact, question: str) -> str:
    """The prompt that has the model answer a question with its fact in context, after worked
    examples answered the same way."""
    prefix = "".join(
        f"Fact: {worked.text}\nQuestion: {q}\nAnswer: {answer}\n\n"
        for worked in _unclaimed(setting.facts)
        for _, q, answer in worked.asked
    )
    return f"{prefix}Fact: {statement(fact)}\nQuestion: {question}\nAnswer:"


FUNCTION_WORDS = frozenset("a an the of in on at to by for and or is was".split())


def _share(side: str, text: str) -> float:
    """The share of a side's words that the text holds (casefolded; function words aside)."""
    wanted = [w for w in words(side.casefold()) if w.isalnum() and w not in FUNCTION_WORDS]
    held = set(words(text.casefold()))
    return sum(w in held for w in wanted) / max(len(wanted), 1)


def about(fact: Fact, question: str) -> str | None:
    """Which way a question asks the fact: a2b when it names a (most of its words) and not b,
    b2a the other way round; None when it names both or neither."""
    a, b = _share(fact.a, question) >= 0.5, _share(fact.b, question) >= 0.5
    return "a2b" if a and not b else "b2a" if b and not a else None


QUESTION_TOKENS = 32  # one question: the worked examples' take 6 to 11 tokens
# Questions are sampled cooler than the teacher's answers: at 1.0 SmolLM2-135M's drift off
# the fact ("Who founded Dmitri Olenko?"); at 0.7 most ask one side of it (a probe on a
# tuning world, seed 300)
QUESTION_TEMPERATURE = 0.7


def own_questions(
    setting: Setting, model: PreTrainedModel, fact_ids: list[int], samples: int | None = None
) -> list[Example]:
    """The distinct questions the model writes about these facts, `samples` per side, that
    name one side of their fact and end with a question mark; as examples whose completion
    is the other side (the truth, kept only to judge the teacher's answers afterwards)."""
    facts = [setting.facts[i] for i in fact_ids]
    prompts = [e.prompt for e in setting.ask([Example.passage(p) for p in asking(setting, facts)])]
    written = sampled(setting, model, prompts, QUESTION_TOKENS, samples, QUESTION_TEMPERATURE)
    questions: dict[tuple[int, str], Example] = {}
    for k, i in enumerate(i for i in fact_ids for _ in range(2)):
        fact = setting.facts[i]
        for run in written:
            question = run[k].strip()
            direction = about(fact, question)
            if question.endswith("?") and direction is not None:
                other = fact.b if direction == "a2b" else fact.a
                example = Example(i, fact.group, direction, "train", -1, question, " " + other)
                questions.setdefault((i, question), replace(example, relation=fact.relation))
    return list(questions.values())


def own_replies(
    setting: Setting, model: PreTrainedModel, questions: list[Example]
) -> list[Example | None]:
    """The model's greedy answer to each of its own questions, with the fact in context,
    kept when it is drawn from the fact (most of its words in the statement) and not from
    the question (most of them not in it); None otherwise. No answer of ours is used. (At
    temperature 1 the start model's three samples agreed on 0.12 of its questions.)"""
    if not questions:
        return []
    prompts = [answering(setting, setting.facts[q.fact], q.prompt) for q in questions]
    posed = [e.prompt for e in setting.ask([Example.passage(p) for p in prompts])]
    stated = [" " + statement(setting.facts[q.fact]) for q in questions]
    max_new = answer_tokens(setting.tokenizer, stated, EvalConfig())  # at most the statement
    said = generate(
        model, setting.tokenizer, posed, max_new, setting.eval.batch_size, first_line=True
    )
    kept: list[Example | None] = []
    for question, out, fact in zip(questions, said, stated, strict=True):
        answer = first_sentence(out).strip()
        fair = _share(answer, fact) >= 0.5 and _share(answer, question.prompt) < 0.5
        kept.append(replace(question, completion=" " + answer) if answer and fair else None)
    return kept


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


# a name inside a sentence: capitalised words after a lower-case word or a comma
NAME = re.compile(r"(?<=[a-z,;:] )[A-Z]\w*(?: [A-Z]\w*)*")


def name_slots(passages: Sequence[Example]) -> list[Example]:
    """The start model's passages cut before each name they go on with: the text before it
    as the prompt, the name as the completion. Where the model says what it knows ("The
    capital of France is Paris.") the lesson's sentences ("... is <a new name>") pull
    hardest; anchored there, not at every word. (Each slot's text ends where its name does:
    no two slots are one token sequence, which a KL target is keyed by.)"""
    return [
        Example.passage(passage.prompt + passage.completion[: m.start() - 1], " " + m.group())
        for passage in passages
        for m in NAME.finditer(passage.completion)
    ]
