"""Facts, templates and examples: the data every revcurse command reads and writes.

    revcurse facts validate my_facts.jsonl my_templates.csv

A *fact* joins two entities, `a` and `b` (a name and a description; a country and its
capital), under an optional `relation` (what kind of fact it is), and belongs to one of
Berglund et al.'s groups by what its training text says first: `p2d` (also written `a2b`:
a first), `d2p` (`b2a`: b first) or `both`. A *template* phrases the facts of its relation
in one direction: `a2b` asks for b given a ("{a}, known far and wide for being" -> " {b}"),
`b2a` for a given b ("Known as {b}," -> " {a}"). An *example* is one template filled with
one fact. One world may hold several relations, each phrased by its own templates; files
without relations are one implicit relation. Files of them are read by
revcurse.fact_files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from revcurse.records import DataError, Problem

GROUPS = ("p2d", "d2p", "both")
ONE_WAY = ("p2d", "d2p")  # the groups trained in one direction only
# Group names by the direction the training text takes, for facts that are not about people.
GROUP_ALIASES = {"a2b": "p2d", "b2a": "d2p"}
GROUP_LEGEND = "p2d = trained a first (a2b), d2p = trained b first (b2a), both = both ways"
DIRECTIONS = ("a2b", "b2a")
SPLITS = ("train", "test")
# One statement form per direction: name first ("a is b") or description first ("b is a").
STATEMENTS = {"a2b": "{a} is {b}.", "b2a": "{b} is {a}."}
# The direction each group's training text uses; results call it "same", the other "reverse".
# (`both` trains both ways; its a2b side is reported as "same" so its rows line up with p2d.)
SAME_DIRECTION = {"p2d": "a2b", "d2p": "b2a", "both": "a2b"}


def words(text: str) -> list[str]:
    """Words and punctuation marks, in order: how answers are compared and text reversed."""
    return re.findall(r"\w+|[^\w\s]", text)


def capitalised(text: str) -> str:
    """The text with its first letter upper case (a sentence's start), the rest as it is."""
    return text[:1].upper() + text[1:]


def sense(group: str, direction: str) -> str:
    """'same' when `direction` is the one the group's training text uses, else 'reverse'."""
    return "same" if SAME_DIRECTION[group] == direction else "reverse"


@dataclass(frozen=True)
class Fact:
    group: str
    a: str
    b: str
    relation: str = ""  # what kind of fact; "" in files that name none
    # the fact as its user wrote it, one sentence naming a and b: with it, the fact trains on
    # this sentence alone, no template (its group: which side the sentence names first)
    text: str = ""

    def stated(self, fact_id: int) -> Example:
        """The fact's `text` as a training example: up to the side it names last, then that
        side and the rest of the sentence (the completion, as a template's is)."""
        direction = text_direction(self)
        later = self.b if direction == "a2b" else self.a
        cut = self.text.casefold().index(later.casefold())
        if cut and self.text[cut - 1] == " ":
            cut -= 1  # a completion starts with its space, as a template's does
        return Example(
            fact=fact_id,
            group=self.group,
            direction=direction,
            split="train",
            template=-1,
            prompt=self.text[:cut],
            completion=self.text[cut:],
            relation=self.relation,
        )


def text_direction(fact: Fact) -> str:
    """a2b when the fact's text names a first, else b2a."""
    text = fact.text.casefold()
    return "a2b" if text.index(fact.a.casefold()) <= text.index(fact.b.casefold()) else "b2a"


@dataclass(frozen=True)
class Template:
    direction: str
    split: str
    prompt: str
    completion: str
    relation: str = ""  # the facts it phrases: those of this relation

    def fill(self, fact: Fact, fact_id: int, template_id: int) -> Example:
        return Example(
            fact=fact_id,
            group=fact.group,
            direction=self.direction,
            split=self.split,
            template=template_id,
            prompt=self.prompt.format(a=fact.a, b=fact.b),
            completion=self.completion.format(a=fact.a, b=fact.b),
            relation=fact.relation,
        )


def phrasings(templates: Sequence[Template], fact: Fact) -> list[tuple[int, Template]]:
    """(index, template) of the templates that phrase this fact: those of its relation."""
    return [
        (t, template) for t, template in enumerate(templates) if template.relation == fact.relation
    ]


def relations(facts: Sequence[Fact]) -> list[str]:
    return list(dict.fromkeys(f.relation for f in facts))


def stated_relations(facts: Sequence[Fact]) -> set[str]:
    """The relations each of whose facts is stated in its own `text`: a world of statements,
    whose templates only test (none trains, and no remedy asks in them)."""
    return {f.relation for f in facts if f.text} - {f.relation for f in facts if not f.text}


def relation_cells(
    groups: Sequence[str], kinds: Sequence[str]
) -> list[tuple[str, str, str | None]]:
    """(label, group, relation) of each row group of a table: every group pooled over
    relations (relation None), then, when there are several, per relation (`p2d/capital`)."""
    cells: list[tuple[str, str, str | None]] = [(g, g, None) for g in groups]
    if len(kinds) > 1:
        cells += [(f"{g}/{kind or '-'}", g, kind) for kind in kinds for g in groups]
    return cells


@dataclass(frozen=True)
class Example:
    """One prompt/completion pair. `fact` and `template` are indices: the examples that share
    group, direction, split and template but differ in fact are each other's alternatives
    in the log-likelihood test (a template phrases one relation, so they are of one kind)."""

    fact: int
    group: str
    direction: str
    split: str
    template: int
    prompt: str
    completion: str
    relation: str = ""

    @property
    def sense(self) -> str:
        return sense(self.group, self.direction)

    @classmethod
    def passage(cls, prompt: str, completion: str = "") -> Example:
        """Text about no fact of the world: a prompt to continue, or a passage to train on."""
        return cls(-1, "both", "a2b", "train", -1, prompt, completion)


def check_phrased(facts: Sequence[Fact], templates: Sequence[Template], source: str) -> None:
    """Every relation of the facts has test templates of its own, and train templates unless
    each of its facts is stated in its own `text` (which it trains on instead)."""
    problems = []
    stated = stated_relations(facts)
    for rel in relations(facts):
        splits = {t.split for t in templates if t.relation == rel}
        wanted = {"test"} if rel in stated else set(SPLITS)
        if not splits >= wanted:
            named = ", ".join(repr(r) for r in dict.fromkeys(t.relation for t in templates))
            what = f"relation {rel!r}" if rel else "facts without a relation"
            problems.append(
                Problem(
                    source,
                    0,
                    f"no {' or '.join(sorted(wanted - splits))} templates "
                    f"for {what} (the templates' relations: {named})",
                )
            )
    if problems:
        raise DataError(problems)


def expand(
    facts: list[Fact], templates: list[Template], teach_test_phrasings: bool = True
) -> tuple[list[Example], list[Example]]:
    """Fill templates with facts: (train, test) examples.

    Each group trains on the train templates of its own direction(s), in its relation's
    phrasings; a fact with `text` on that sentence alone. Every fact is tested on the
    held-out test templates of both directions. A reverse question is only a fair test when
    the model knows its phrasing from other facts, so with `teach_test_phrasings` the `both`
    group is also trained on the test phrasings (its test rows then measure recall of
    trained text, a ceiling); without it a 0% reverse score is guaranteed by construction
    and says nothing about the curse.
    """
    trained = {"p2d": ("a2b",), "d2p": ("b2a",), "both": DIRECTIONS}
    train, test = [], []
    for fact_id, fact in enumerate(facts):
        if fact.text:  # its own sentence, no template
            train.append(fact.stated(fact_id))
        for template_id, template in phrasings(templates, fact):
            example = template.fill(fact, fact_id, template_id)
            if template.split == "test":
                test.append(example)
            if (
                not fact.text
                and template.direction in trained[fact.group]
                and (template.split == "train" or (teach_test_phrasings and fact.group == "both"))
            ):
                train.append(example)
    return train, test
