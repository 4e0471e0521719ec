"""No remedy: the base corpus, closed book. The reference every remedy is measured against."""

from __future__ import annotations

from revcurse.remedies.setting import Setting, Treatment


def apply(setting: Setting) -> Treatment:
    model, cost = setting.base
    return Treatment(setting.causal_lm(model), cost)
