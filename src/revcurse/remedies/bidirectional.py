"""Remedy 3a, bidirectional augmentation: train every one-way fact in both directions.

The direct fix (at twice the fact data): the p2d facts also get the description-first
training phrasings, the d2p facts the name-first ones. Held-out test phrasings stay unseen.
"""

from __future__ import annotations

from revcurse.facts import Example
from revcurse.remedies.setting import Setting, Treatment

OTHER_DIRECTION = {"p2d": "b2a", "d2p": "a2b"}


def reversed_phrasings(setting: Setting) -> list[Example]:
    return [
        template.fill(fact, fact_id, template_id)
        for fact_id, fact in enumerate(setting.facts)
        if fact.group in OTHER_DIRECTION
        for template_id, template in enumerate(setting.templates)
        if template.split == "train" and template.direction == OTHER_DIRECTION[fact.group]
    ]


def apply(setting: Setting) -> Treatment:
    model, cost = setting.train_model(extra=reversed_phrasings(setting))
    return Treatment(setting.causal_lm(model), cost)
