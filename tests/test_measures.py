"""The measures that say what a cure costs: the shipped probes, the held-out text, the sham
world and the intervals over facts."""

from __future__ import annotations

import pytest

from revcurse.probes import held_out_text, world_facts
from revcurse.stats import effective_trials, proportion_row


def test_the_world_probe_facts_are_many_distinct_sentences_to_continue():
    facts = world_facts()
    assert len(facts) >= 200
    assert len({e.prompt for e in facts}) == len(facts)
    assert all(e.completion.startswith(" ") and not e.completion.endswith(".") for e in facts)
    assert {e.relation for e in facts} >= {"capital", "author", "landmark"}


def test_the_held_out_text_is_plain_paragraphs():
    paragraphs = held_out_text()
    assert len(paragraphs) >= 20
    assert all(len(p.split()) >= 50 for p in paragraphs)


def test_an_interval_over_facts_is_wider_when_a_facts_questions_agree():
    """Two phrasings of each fact answered alike count as one draw each; answered
    independently-looking (half right within every fact), as questions."""
    alike = [True, True, False, False] * 5
    facts = [i // 2 for i in range(20)]
    split = [True, False] * 10
    assert effective_trials(alike, facts) == pytest.approx(10)
    assert effective_trials(split, facts) == pytest.approx(20)
    wide, narrow = (
        proportion_row("m", "g", "d", "x", alike, facts),
        proportion_row("m", "g", "d", "x", split, facts),
    )
    assert wide["value"] == narrow["value"] == 0.5 and wide["facts"] == 10
    assert wide["ci_high"] - wide["ci_low"] > narrow["ci_high"] - narrow["ci_low"]
    none_right = proportion_row("m", "g", "d", "x", [False] * 30, list(range(15)) * 2)
    as_facts = proportion_row("m", "g", "d", "x", [False] * 15, list(range(15)))
    assert none_right["ci_high"] == pytest.approx(as_facts["ci_high"])


def test_shares_counted_over_facts_pool_over_seeds():
    """Each seed's world has facts of its own: the aggregate is the pooled share, its Wilson
    interval on the seeds' effective trials summed (not a t interval over three values)."""
    from revcurse.stats import aggregate, wilson

    seeds = [
        proportion_row("m", "p2d", "reverse", "exact_match", [True] * k + [False] * (20 - k), facts)
        for k, facts in ((20, list(range(20))), (10, [i // 2 for i in range(20)]))
    ]
    [pooled] = aggregate(seeds)
    assert pooled["value"] == pytest.approx(0.75) and pooled["facts"] == 30
    assert pooled["trials"] == pytest.approx(seeds[0]["trials"] + seeds[1]["trials"])
    assert (pooled["ci_low"], pooled["ci_high"]) == pytest.approx(wilson(0.75, pooled["trials"]))
