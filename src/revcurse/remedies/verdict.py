"""What a taught model now answers, asked closed book on questions it never trained on.

    revcurse teach --statements examples/statements.txt --model smollm2-135m

With test templates the questions are theirs, judged against the facts' sides. A user with
plain statements has none: then the model writes questions about each fact once more (a
seed the teacher did not use; any question it trained on left out), answers them with the
fact in context, and its closed-book answers are judged against those in-context answers.
A fact is answered one way when most of its questions that way are right; both ways when
both are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

from revcurse.evaluate import EvalConfig
from revcurse.facts import Example
from revcurse.lm.causal import LanguageModel
from revcurse.remedies.own_words import own_questions, own_replies
from revcurse.remedies.self_distill import reader
from revcurse.remedies.setting import Setting
from revcurse.remedies.targets import hits

SENSES = ("same", "reverse")


@dataclass(frozen=True)
class Verdict:
    judged: int  # facts with held-out questions both ways
    before: int  # of those, answered both ways by the start model
    after: int  # and by the taught model
    questions: int  # held-out questions asked
    source: str  # where the questions came from, in words

    @property
    def share(self) -> float:
        return self.after / self.judged if self.judged else 0.0

    def sentence(self) -> str:
        return (
            f"answers {self.after} of {self.judged} facts both ways (before: {self.before}), "
            f"closed book, on {self.questions} questions it never trained on ({self.source})"
        )


def both_ways(samples: Sequence[dict]) -> dict[int, bool]:
    """For each fact asked both ways: whether most of its questions each way were right."""
    right: dict[int, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for sample in samples:
        right[sample["fact"]][sample["direction"]].append(sample["correct"])
    return {
        fact: all(2 * sum(ways[s]) >= len(ways[s]) for s in SENSES)
        for fact, ways in right.items()
        if all(ways[s] for s in SENSES)
    }


def judged(lm: LanguageModel, questions: Sequence[Example], config: EvalConfig) -> list[dict]:
    """The model's closed-book answers to the questions, each judged against its completion."""
    right = hits(lm, questions, config)
    return [
        {"fact": q.fact, "direction": q.sense, "correct": ok}
        for q, ok in zip(questions, right, strict=True)
    ]


SAMPLES = 8  # questions written a side: about one both ways a fact, for SmolLM2-135M


def held_out_questions(setting: Setting, fact_ids: list[int]) -> list[Example]:
    """The start model's own questions about the facts, written with another seed than the
    teacher's and not among those it wrote for the teacher, each completed by the reader's
    answer with the fact in context (questions without a consistent answer left out)."""
    taught = {q.prompt for q in own_questions(setting, setting.start, fact_ids)}
    other = replace(setting, seed=setting.seed + 1)
    written = own_questions(other, setting.start, fact_ids, SAMPLES)
    fresh = [q for q in written if q.prompt not in taught]
    replies = own_replies(other, reader(setting), fresh)
    return [r for r in replies if r is not None]


def verdict(
    setting: Setting, before: LanguageModel, after: LanguageModel, fact_ids: list[int]
) -> Verdict:
    """Both-ways recall of the facts before and after, on the test templates if there are
    any, or else on the model's own held-out questions."""
    if setting.test_examples:
        questions = setting.ask([e for e in setting.test_examples if e.fact in fact_ids])
        source = "the test templates"
    else:
        questions = setting.ask(held_out_questions(setting, fact_ids))
        source = "its own questions, judged against its answers with the fact in context"
    was, now = (both_ways(judged(lm, questions, setting.eval)) for lm in (before, after))
    return Verdict(len(now), sum(was.values()), sum(now.values()), len(questions), source)
