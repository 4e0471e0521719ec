"""Facts in context: statements, prompts with context, and the reading documents that teach
a from-scratch model to answer from its context.

A pretrained LLM learned from web text to answer a question from a passage that states the
fact, in either order; a tiny model trained from scratch has never read anything. So that
the in-context remedies can be measured on it, its training text gets *reading documents*:
a few statements about fictitious people, then a question about one of them, in either
direction, with the answer. Each document pairs names and descriptions afresh, drawn from
entities that none of the world's facts uses, so nothing can be memorised: the only way to
answer is to read. The world's one-way facts never appear in a reading document.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

from revcurse.facts import (
    DIRECTIONS,
    SAME_DIRECTION,
    STATEMENTS,
    Example,
    Fact,
    Template,
    stated_relations,
)
from revcurse.world import ADJECTIVES, FIRST_NAMES, LAST_NAMES, ROLES, THINGS


def statement(fact: Fact, direction: str | None = None) -> str:
    """The fact in words; by default its own `text`, or in the direction its group was
    trained (one-way form)."""
    if fact.text and direction is None:
        return fact.text
    return STATEMENTS[direction or SAME_DIRECTION[fact.group]].format(a=fact.a, b=fact.b)


def statement_forms(facts: Sequence[Fact]) -> dict[str, list[str]]:
    """For each relation whose facts are stated in their own `text`, the shapes of those
    sentences with the sides as {a} and {b} ("{a} wrote {b}.", "{b} was written by {a}."):
    a worked example's fresh fact of such a relation is stated as its user states theirs.
    Stated in the generic form ("The Brass Carousel is Esme Weiss."), worked examples left a
    fine-tuned SmolLM2 copying the last example's answer (in context on "wrote": 32 of 120
    right)."""
    forms: dict[str, list[str]] = defaultdict(list)
    stated = stated_relations(facts)
    for fact in facts:
        a, b, text = fact.a, fact.b, fact.text
        if fact.relation not in stated or a in b or b in a:
            continue
        if text.count(a) == 1 and text.count(b) == 1:
            escaped = text.replace("{", "{{").replace("}", "}}")
            form = escaped.replace(a, "{a}").replace(b, "{b}")
            if form not in forms[fact.relation]:
                forms[fact.relation].append(form)
    return dict(forms)


def stated_as(fact: Fact, direction: str, forms: dict[str, list[str]], rng: random.Random) -> str:
    """A fresh fact in words: in one of its relation's `statement_forms`, if it has any, or
    else in `direction`'s generic form."""
    if fact.relation in forms:
        return rng.choice(forms[fact.relation]).format(a=fact.a, b=fact.b)
    return statement(fact, direction)


def with_context(statements: Sequence[str], question: str, lines: bool = False) -> str:
    """The statements, then the question: run together (as the tiny reader learned to read),
    or as `Fact:` lines, the layout of the worked examples (`worked_examples`)."""
    if lines:
        return "".join(f"Fact: {s}\n" for s in statements) + question
    return " ".join([*statements, question])


def in_context(
    example: Example,
    fact: Fact,
    distractors: Sequence[Fact],
    rng: random.Random,
    lines: bool = False,
) -> Example:
    """The example with its fact and the distractor facts stated, shuffled, before the question."""
    statements = [statement(f) for f in [fact, *distractors]]
    rng.shuffle(statements)
    return replace(example, prompt=with_context(statements, example.prompt, lines))


def posed_in_context(
    examples: Sequence[Example],
    facts: Sequence[Fact],
    distractors: int,
    seed: int,
    lines: bool = False,
    recombine: bool = False,
) -> list[Example]:
    """Each example with its fact and up to `distractors` other facts (seeded) before it."""
    rng = random.Random(seed)
    posed = []
    for example in examples:
        others = [f for i, f in enumerate(facts) if i != example.fact]
        chosen = rng.sample(others, min(distractors, len(others)))
        posed.append(in_context(example, facts[example.fact], chosen, rng, lines))
    return posed


@dataclass(frozen=True)
class Pool:
    """Entities to make fresh facts of one relation from."""

    a: list[str]
    b: list[str]
    facts: frozenset[tuple[str, str]] = frozenset()  # pairs that are true: never drawn


def fresh_entities(exclude: Sequence[Fact], recombine: bool = False) -> dict[str, Pool]:
    """Entities for fresh facts, by relation: names and descriptions from the world's word
    lists that no fact of `exclude` uses; or with `recombine` (a world of your own) made
    from the words of `exclude`'s own entities, so that the model reads its own kind and
    vocabulary. A side that recombines into too few ("the Republic of X": only X varies)
    takes the relation's own entities, paired afresh (no true pair is ever drawn)."""
    used = {f.a for f in exclude} | {f.b for f in exclude}
    names = [f"{x} {y}" for x, y in itertools.product(FIRST_NAMES, LAST_NAMES)]
    descriptions = [
        f"the {r} of the {a} {t}" for r, a, t in itertools.product(ROLES, ADJECTIVES, THINGS)
    ]
    lists = Pool([x for x in names if x not in used], [x for x in descriptions if x not in used])
    pools: dict[str, Pool] = defaultdict(lambda: lists)
    if recombine:
        for rel in dict.fromkeys(f.relation for f in exclude):
            kind = [f for f in exclude if f.relation == rel]
            sides = []
            for own in ([f.a for f in kind], [f.b for f in kind]):
                made = [x for x in recombined(own) if x not in used]
                sides.append(made if len(made) >= MIN_POOL else own)
            a, b = sides
            pools[rel] = Pool(a, b, frozenset((f.a, f.b) for f in kind))
    return pools


MIN_POOL = 20  # fresh entities a side needs (worked examples, reading documents)


def recombined(entities: Sequence[str]) -> list[str]:
    """New entities like these: the first half of one's words, then the second half of
    another's ("Daphne Barrington", "Mason Caldwell" -> "Daphne Caldwell")."""
    split = [e.split() for e in entities]
    halves = [(w[: (len(w) + 1) // 2], w[(len(w) + 1) // 2 :]) for w in split if len(w) > 1]
    made = (" ".join(x + y) for (x, _), (_, y) in itertools.product(halves, repeat=2))
    return sorted(set(made) - set(entities))


def fresh_facts(k: int, pool: Pool, rng: random.Random, relation: str = "") -> list[Fact]:
    """k facts of distinct entities drawn from the pool, none of them true."""
    while True:
        pairs = list(zip(rng.sample(pool.a, k), rng.sample(pool.b, k), strict=True))
        if not pool.facts.intersection(pairs):
            return [Fact("both", a, b, relation) for a, b in pairs]


def worked_examples(
    examples: Sequence[Example],
    templates: Sequence[Template],
    shots: int,
    exclude: Sequence[Fact],
    seed: int,
    recombine: bool = False,
) -> list[Example]:
    """Each example after `shots` worked examples of its own phrasing: a fresh fact (either
    order) as a `Fact:` line, the question about it, its answer. A pretrained model reads a
    fact in its context and answers from it once it has seen the task done (SmolLM2-135M:
    reverse 0/30 without examples, 30/30 after three, `scripts/sweep_shots.py`). Every
    question of one phrasing gets the same examples: one shared prefix. Closed-book
    questions get them too, so that methods differ only in where the fact is."""
    pools = fresh_entities(exclude, recombine)
    forms = statement_forms(exclude)
    rng = random.Random(seed)
    prefixes = []
    for t, template in enumerate(templates):
        blocks = []
        for fact in fresh_facts(shots, pools[template.relation], rng, template.relation):
            question = template.fill(fact, -1, t)
            said = stated_as(fact, rng.choice(DIRECTIONS), forms, rng)
            stated = with_context([said], question.prompt, True)
            blocks.append(f"{stated}{question.completion}\n\n")
        prefixes.append("".join(blocks))
    return [replace(e, prompt=prefixes[e.template] + e.prompt) for e in examples]


def reading_templates(templates: Sequence[Template], facts: Sequence[Fact]) -> list[Template]:
    """The questions reading documents ask: the world's phrasings; for a relation whose facts
    are each stated in their own `text` (a world of statements, whose templates only test),
    the statement forms, "{a} is" -> " {b}." and back: no test phrasing is ever trained.
    (Reading documents in the user's own sentence shapes, as worked examples are, made
    SmolLM2's fine-tuned reader better in context and its self-distilled student worse on
    one world: docs/remedies.md.)"""
    stated = stated_relations(facts)
    forms = []
    for relation in sorted(stated):
        for direction in DIRECTIONS:
            prompt, answer = STATEMENTS[direction].rsplit(" ", 1)
            forms.append(Template(direction, "train", prompt, " " + answer, relation))
    return [*(t for t in templates if t.relation not in stated), *forms]


def reading_documents(
    n: int,
    max_distractors: int,
    templates: Sequence[Template],
    exclude: Sequence[Fact],
    seed: int | str,
    lines: bool = False,
    recombine: bool = False,
) -> list[Example]:
    """n documents: 1 + U{0..max_distractors} fresh statements, then a question (any of
    `reading_templates`, either direction) about one of them. Names and descriptions of
    `exclude` are never used.
    `lines`: the statements as `Fact:` lines, the layout a pretrained model is asked in."""
    rng = random.Random(seed)
    pools = fresh_entities(exclude, recombine)
    templates = reading_templates(templates, exclude)
    kinds = list(dict.fromkeys(t.relation for t in templates))
    pick = random.Random(f"{seed} relation")  # apart, so one relation draws as it always did
    documents = []
    for _ in range(n):
        kind = pick.choice(kinds) if len(kinds) > 1 else kinds[0]
        k = 1 + rng.randint(0, max_distractors)
        facts = fresh_facts(k, pools[kind], rng, kind)
        statements = [statement(f, rng.choice(DIRECTIONS)) for f in facts]
        rng.shuffle(statements)
        question = rng.choice([t for t in templates if t.relation == kind]).fill(facts[0], -1, -1)
        documents.append(
            Example(
                fact=-1,
                group="both",
                direction=question.direction,
                split="train",
                template=-1,
                prompt=with_context(statements, question.prompt, lines),
                completion=question.completion,
                relation=question.relation,
            )
        )
    return documents
