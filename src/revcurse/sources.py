"""Where a run's facts come from: the generated world, your files, or Berglund's Experiment 1.

    revcurse compare --facts my_facts.jsonl --templates my_templates.jsonl
    revcurse compare --data berglund        # or a folder laid out like Experiment 1

Your facts may carry relations, each phrased by its own templates (revcurse.facts); without
--templates the generated world's Berglund-style phrasings are used. `--data` reads
Berglund et al.'s 90 celebrities (--world.facts-per-group of each group) with the
paraphrase templates they were written from (revcurse.berglund.load_templates).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from revcurse import berglund
from revcurse.config import check
from revcurse.fact_files import load_facts, load_statements, load_templates
from revcurse.facts import (
    GROUPS,
    Fact,
    Template,
    check_phrased,
    stated_relations,
)
from revcurse.world import TEMPLATES, WorldConfig, capacity, generate_facts


@dataclass
class World:
    facts: list[Fact]
    templates: list[Template]
    # The seeded world of revcurse.world: reading documents and worked examples draw fresh
    # entities from its word lists; any other world from recombined words of its own facts
    generated: bool
    source: str  # in words, for the run's log and report

    @property
    def builtin(self) -> bool:
        """The generated world in its own phrasings: what the shared tiny reader read."""
        return self.generated and self.templates == list(TEMPLATES)


def check_source(
    facts: Path | None, templates: Path | None, data: str | None, statements: Path | None = None
) -> None:
    """For `__post_init__`: --data replaces --facts and --templates; --statements --facts."""
    check(not (data and (facts or templates)), "data", "give it, or --facts/--templates, not both")
    check(not (statements and (facts or data)), "statements", "give it or --facts/--data, not both")


def load_world(
    facts: Path | None,
    templates: Path | None,
    data: str | None,
    world: WorldConfig,
    seed: int,
    statements: Path | None = None,
) -> World:
    """The facts and templates a run uses; a bad file raises revcurse.records.DataError.
    Plain statements need no templates (test templates, if given, measure them)."""
    if statements and not templates:  # nothing to measure on: teach writes its own questions
        return World(load_statements(statements), [], False, str(statements))
    if data:
        source = berglund.experiment1(data)
        # --world.facts-per-group of each group (all 30 by default), drawn with the seed
        drawn = berglund.select(berglund.load_berglund(source), world.facts_per_group, seed=seed)
        phrasings = berglund.load_templates(source)
        return World(drawn.facts, phrasings, False, f"Berglund et al. ({source})")
    if statements:
        chosen = load_statements(statements)
    else:
        chosen = load_facts(facts) if facts else generate_facts(world, seed)
    phrasings = load_templates(templates) if templates else list(TEMPLATES)
    stated = stated_relations(chosen)  # facts in their own sentences: the phrasings only test
    phrasings = [t for t in phrasings if not (t.split == "train" and t.relation in stated)]
    check_phrased(chosen, phrasings, str(templates or "the built-in templates"))
    yours = statements or facts
    source = str(yours) if yours else f"the generated world (seed {seed})"
    return World(chosen, phrasings, yours is None, source)


def recorded(config: WorldConfig, world: World) -> WorldConfig:
    """The world section config.yaml should hold: for facts read from files, the number
    the largest group really has, not the generated world's default."""
    if world.generated:
        return config
    largest = max(sum(f.group == g for f in world.facts) for g in GROUPS)
    return replace(config, facts_per_group=min(largest, capacity() // len(GROUPS)))
