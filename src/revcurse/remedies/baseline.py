"""No remedy: the base corpus, closed book. The reference every remedy is measured against;
its locality_world says what learning the facts cost the world the start model knew."""

from __future__ import annotations

from revcurse.remedies.setting import Setting, Treatment
from revcurse.remedies.targets import world_rows


def apply(setting: Setting, method: str) -> Treatment:
    model, cost = setting.baseline()
    lm = setting.causal_lm(model)
    return Treatment(lm, cost, rows=world_rows(method, setting, lm))
