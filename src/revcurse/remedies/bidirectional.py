"""Remedy 3a, bidirectional augmentation: train every one-way fact in both directions.

The direct fix (at twice the fact data): the p2d facts also get the description-first
training phrasings, the d2p facts the name-first ones. Held-out test phrasings stay unseen.
"""

from __future__ import annotations

from revcurse.facts import Example
from revcurse.remedies.setting import Setting, Treatment
from revcurse.remedies.targets import OTHER_DIRECTION, reverse_to_write


def reversed_phrasings(setting: Setting) -> list[Example]:
    """Every one-way fact in the training phrasings of its other direction."""
    one_way = [i for i, fact in enumerate(setting.facts) if fact.group in OTHER_DIRECTION]
    return reverse_to_write(setting, one_way)


def apply(setting: Setting, method: str) -> Treatment:
    model, cost = setting.train_model(extra=reversed_phrasings(setting))
    return Treatment(setting.causal_lm(model), cost)
