"""Remedy 4a, self-distillation: the model, reading the fact, writes its own training data.

    revcurse compare --methods baseline,self_distill

The model can reverse a fact in its context but not one stored in its weights; so let it
read each treated fact and answer questions about it, in both directions and in every
training phrasing, then train it closed book on its own answers: the prompt is baked into
the weights (Kujanpää et al. 2024 call this knowledge injection by prompt distillation).
1. Teacher: the baseline model with the fact (and distractor facts) in context answers
   each question `distill_samples` times at `distill_temperature`. No ground truth is used
   to write the data.
2. Self-consistency: an answer is kept when the teacher gave it at least `distill_agree`
   times (the most frequent one, if several qualify).
3. Student: the same model keeps training, without the context, on (question -> own
   answer) plus a replay of its base corpus, for `distill_steps` steps.
Reported: teacher accuracy (the kept answers, judged afterwards against the truth), and
the effect rows of revcurse.remedies.targets (treated facts vs untouched controls).
"""

from __future__ import annotations

import copy
import random
import re
import time
from collections import Counter
from dataclasses import replace

import torch

from revcurse.evaluate import EvalConfig, answer_tokens, generate, starts_with
from revcurse.facts import Example
from revcurse.reading import in_context
from revcurse.remedies.setting import Setting, Treatment, plus
from revcurse.remedies.targets import OTHER_DIRECTION, split_one_way, treated_result
from revcurse.results import proportion_row

METHOD = "self_distill"


def first_sentence(text: str) -> str:
    """The answer part of a continuation: up to its first full stop or line break."""
    match = re.match(r"[^.\n]*\.?", text)
    return match.group(0).rstrip() if match else ""


def questions(setting: Setting, fact_ids: list[int]) -> list[Example]:
    """Every training phrasing, in both directions, about these facts."""
    return [
        template.fill(setting.facts[i], i, t)
        for i in fact_ids
        for t, template in enumerate(setting.templates)
        if template.split == "train"
    ]


def teach(setting: Setting, model, asked: list[Example]) -> list[Example | None]:
    """The teacher's self-consistent answer to each question (None: no answer agreed on)."""
    config = setting.remedies
    rng = random.Random(setting.seed)
    others = list(range(len(setting.facts)))
    posed = []
    for example in asked:
        pool = [setting.facts[i] for i in others if i != example.fact]
        distractors = rng.sample(pool, min(config.distractors, len(pool)))
        posed.append(in_context(example, setting.facts[example.fact], distractors, rng))
    max_new = answer_tokens(setting.tokenizer, [e.completion for e in setting.train], EvalConfig())
    torch.manual_seed(setting.seed)
    samples = [
        generate(
            model,
            setting.tokenizer,
            [e.prompt for e in posed],
            max_new,
            setting.eval_batch_size,
            temperature=config.distill_temperature,
        )
        for _ in range(config.distill_samples)
    ]
    kept: list[Example | None] = []
    for i, example in enumerate(asked):
        votes = Counter(first_sentence(run[i]) for run in samples)
        answer, count = votes.most_common(1)[0]
        agreed = count >= config.distill_agree and answer.strip()
        kept.append(replace(example, completion=" " + answer.strip()) if agreed else None)
    return kept


def apply(setting: Setting) -> Treatment:
    base_model, base_cost = setting.base
    treated = split_one_way(setting)[0]
    asked = questions(setting, treated)

    start = time.perf_counter()
    answered = teach(setting, base_model, asked)
    teaching = time.perf_counter() - start
    distilled = [a for a in answered if a is not None]

    student, cost = setting.train_model(
        extra=distilled, model=copy.deepcopy(base_model), steps=setting.remedies.distill_steps
    )
    rows = []
    for group in OTHER_DIRECTION:
        for direction in ("same", "reverse"):
            judged = [
                starts_with(a.completion, q.completion)
                for q, a in zip(asked, answered, strict=True)
                if a is not None and q.group == group and q.relation == direction
            ]
            if judged:
                rows.append(proportion_row(METHOD, group, direction, "teacher_accuracy", judged))
    agreed = [a is not None for a in answered]
    rows.append(proportion_row(METHOD, "treated", "all", "teacher_agreed", agreed))
    return treated_result(METHOD, setting, student, plus(base_cost, cost, teaching), rows)
