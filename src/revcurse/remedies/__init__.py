"""Remedies for the reversal curse, by name: each module's `apply(Setting) -> Treatment`.

    revcurse compare --methods baseline,in_context,bidirectional

See revcurse.remedies.setting for what a remedy receives and returns.
"""

from __future__ import annotations

from collections.abc import Callable

from revcurse.remedies import (
    baseline,
    bidirectional,
    hebbian,
    in_context,
    knowledge_base,
    mlm_u,
    reverse_training,
    rome,
    self_distill,
)
from revcurse.remedies.setting import Setting, Treatment

REMEDIES: dict[str, Callable[[Setting], Treatment]] = {
    "baseline": baseline.apply,
    "in_context": in_context.apply,
    "knowledge_base": knowledge_base.apply,
    "bidirectional": bidirectional.apply,
    "reverse_training": reverse_training.apply,
    "mlm_u": mlm_u.apply,
    "self_distill": self_distill.apply,
    "self_distill_kl": self_distill.apply_kl,
    "hebbian": hebbian.apply,
    "rome": rome.apply,
}

# Train their own model from the start weights rather than change the baseline's, so they
# need nothing from another method and can run beside them (revcurse compare --workers)
OWN_MODEL = ("bidirectional", "reverse_training", "mlm_u")


def parse_methods(text: str) -> list[str]:
    """'all' or a comma-separated list of known names."""
    names = list(REMEDIES) if text.strip() == "all" else [m.strip() for m in text.split(",")]
    unknown = [m for m in names if m not in REMEDIES]
    if unknown or not names:
        raise ValueError(
            f"--methods: unknown {', '.join(unknown) or 'empty list'} "
            f"(known: all, {', '.join(REMEDIES)})"
        )
    return names
