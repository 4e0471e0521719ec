"""No remedy: the base corpus, closed book. The reference every remedy is measured against."""

from __future__ import annotations

from revcurse.remedies.setting import Setting, Treatment


def apply(setting: Setting, method: str) -> Treatment:
    model, cost = setting.baseline()
    return Treatment(setting.causal_lm(model), cost)
