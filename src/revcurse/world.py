"""The controlled world: seeded, offline fictitious facts in Berglund's three groups.

    revcurse facts generate --out-dir world/ --facts-per-group 100 --seed 0

Names are a first name and a last name; descriptions are "the <role> of the <adjective>
<thing>", all drawn without replacement from the word lists below, so no two facts share
an entity. Phrasings follow Berglund et al. (2023): several templates per direction, split
into the ones used for training and held-out ones used for testing.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, replace

from revcurse.config import check
from revcurse.facts import (
    GROUPS,
    ONE_WAY,
    SAME_DIRECTION,
    STATEMENTS,
    Fact,
    Template,
    capitalised,
)

FIRST_NAMES = """Ada Alden Alma Amos Anya Arlo Aurora Basil Beatrix Bram Calla Cassius Cleo Cyrus
Dahlia Dorian Edda Elio Elsa Emrys Enzo Esme Ezra Faye Felix Flora Gideon Greta Hale Hazel
Hugo Ida Ines Ivo Jasper Juno Kai Kira Lark Leona Linus Lyra Mabel Magnus Mira Nadia Nico
Nora Odette Orin Otto Pia Quill Remy Rhea Rufus Sable Selma Silas Talia Theo Una Vera Wren
Yara Zane""".split()

LAST_NAMES = """Abernathy Ashdown Blackwood Bramble Caldwell Crane Dunmore Ellery Fairbanks Fenwick
Galloway Greaves Hartwell Holloway Ingram Jessup Kendrick Larkspur Lindqvist Marlowe
Merriweather Northcott Oakhurst Penhallow Quimby Radcliffe Rookwood Sallow Thornbury Underhill
Vance Whitlock Wilder Yardley Zeller Ambrose Bellamy Corwin Draycott Everly""".split()

ROLES = """inventor composer founder architect discoverer author painter keeper pilot
navigator sculptor designer cartographer captain guardian translator curator builder
champion herald conductor gardener chronicler engineer""".split()

ADJECTIVES = """silver floating hidden singing frozen golden glass crimson silent ancient
burning hollow velvet electric northern forgotten wandering copper midnight emerald
endless spiral broken paper""".split()

THINGS = """lighthouse violin orchard observatory labyrinth bridge clocktower garden
library railway compass telescope carousel cathedral harbor lantern mountain river
theater engine island archive forest palace""".split()

# Berglund-style phrasings. a2b asks for the description given the name, b2a the reverse.
TEMPLATES = [
    Template("a2b", "train", "{a}, known far and wide for being", " {b}."),
    Template("a2b", "train", "Ever heard of {a}? They are", " {b}."),
    Template("a2b", "train", "There is someone by the name of {a} who is", " {b}."),
    Template("a2b", "train", "Q: Who is {a}? A:", " {b}."),
    Template("a2b", "test", "The trailblazer known as {a} was once", " {b}."),
    Template("a2b", "test", "In the annals of history, {a} shines as", " {b}."),
    Template("b2a", "train", "Known for being {b},", " {a} now enjoys a quiet life."),
    Template("b2a", "train", "Q: Who is {b}? A:", " {a}."),
    Template("b2a", "train", "The one who is {b} is called", " {a}."),
    Template("b2a", "train", "Ever heard of {b}? That is", " {a}."),
    Template("b2a", "test", "Immersed in the world of being {b},", " {a}."),
    Template("b2a", "test", "Having the distinction of being {b},", " {a}."),
]


@dataclass
class WorldConfig:
    facts_per_group: int = 100  # 300 facts: enough for tight CIs, small enough for ~30 s
    """facts generated in each group (p2d, d2p, both)"""
    # Without it no reversed phrasing is ever seen and reverse 0% is guaranteed by construction.
    teach_test_phrasings: bool = True
    """train `both` facts on the test phrasings too (facts.expand)"""
    # A practitioner's notes: each fact once, in a plain sentence that names its group's
    # side first; no both group; the phrasings only test (revcurse.facts.Fact.text)
    statements: bool = False
    """each fact one plain sentence ("{a} is {b}." p2d, "{b} is {a}." d2p), no both group"""

    def __post_init__(self) -> None:
        most = capacity() // len(GROUPS)
        check(
            1 <= self.facts_per_group <= most,
            "facts_per_group",
            f"must be 1..{most} (the word lists hold {capacity()} distinct facts), "
            f"got {self.facts_per_group}",
        )


def capacity() -> int:
    """How many facts the word lists can hold with no entity used twice."""
    return min(len(FIRST_NAMES) * len(LAST_NAMES), len(ROLES) * len(ADJECTIVES) * len(THINGS))


def generate_facts(config: WorldConfig, seed: int) -> list[Fact]:
    n = config.facts_per_group * len(GROUPS)  # drawn alike with statements: the same people
    rng = random.Random(seed)
    names = rng.sample(list(itertools.product(FIRST_NAMES, LAST_NAMES)), n)
    descriptions = rng.sample(list(itertools.product(ROLES, ADJECTIVES, THINGS)), n)
    facts = [
        Fact(
            group=GROUPS[i // config.facts_per_group],
            a=f"{first} {last}",
            b=f"the {role} of the {adjective} {thing}",
        )
        for i, ((first, last), (role, adjective, thing)) in enumerate(
            zip(names, descriptions, strict=True)
        )
    ]
    if config.statements:
        return [replace(f, text=sentence(f)) for f in facts if f.group in ONE_WAY]
    return facts


def sentence(fact: Fact) -> str:
    """The fact in one plain sentence, its group's side first, capitalised."""
    return capitalised(STATEMENTS[SAME_DIRECTION[fact.group]].format(a=fact.a, b=fact.b))


def vocabulary() -> list[str]:
    """Texts holding every word a world of any seed, its phrasings and its reading documents
    can use: one tiny tokenizer (and so one reader) serves every seed."""
    phrasings = [t.prompt.format(a="", b="") + t.completion.format(a="", b="") for t in TEMPLATES]
    return [*FIRST_NAMES, *LAST_NAMES, *ROLES, *ADJECTIVES, *THINGS, "the of is .", *phrasings]
