"""Remedy 1, in context: state the fact (and distractor facts, shuffled) before the question.

The baseline model, unchanged; only the prompt differs. The thesis: a model that cannot
reverse a fact stored in its weights reverses it from its context, because reading is a
skill it learned from text (here: from the reading documents, which never mention the
world's facts).
"""

from __future__ import annotations

from revcurse.context import posed_in_context
from revcurse.remedies.setting import Setting, Treatment


def apply(setting: Setting, method: str) -> Treatment:
    model, cost = setting.baseline()
    k = setting.remedies.distractors
    posed = posed_in_context(
        setting.test_examples, setting.facts, k, setting.seed, setting.fact_lines
    )
    return Treatment(setting.causal_lm(model), cost, posed, in_context=True)
