"""Sweep the weight edits on the tiny world (seed 0): the rate of the plain Hebbian rule and
of its decorrelated forms (whitened, contrastive keys), the delta rule's ridge, MEMIT's
ridge, the layers.

    .venv/bin/python scripts/sweep_edits.py            # ~6 min once the reader is cached
    .venv/bin/python scripts/sweep_edits.py --readme   # and the README's sweep block

Prints, for each setting, the edit metrics of revcurse.remedies.targets (means over the
p2d and d2p groups): whether it installs the reverse (reliability on the edit phrasings,
generalization on held-out ones), what the treated facts keep of their trained direction
(kept), that the controls stay at chance, and what it costs the rest of the model
(locality, ppl_drift). The defaults of `revcurse compare` come from this sweep.
MEMIT edits at the tokens that predict the answer (its default position).
"""

from __future__ import annotations

import copy
import statistics
import sys
import tempfile
from pathlib import Path

from revcurse.recipes.compare import CompareConfig
from revcurse.recipes.remedy_run import build_setting, starting_point
from revcurse.remedies.hebbian import hebbian_edit
from revcurse.remedies.memit import memit_edit
from revcurse.remedies.targets import effect_rows, split_one_way

SETTINGS = [  # (rule, layers, rate or ridge)
    *(("plain", "all", rate) for rate in (0.03, 0.1, 0.3, 1.0)),
    *(("whitened", layers, rate) for layers in ("1", "all") for rate in (0.1, 0.3, 1.0)),
    *(("contrastive", "all", rate) for rate in (0.03, 0.1, 0.3, 1.0)),
    *(("delta", "1", ridge) for ridge in (0.01, 0.1, 0.3, 1.0, 3.0)),
    *(("delta", "all", ridge) for ridge in (0.01, 0.1, 0.3, 1.0)),
    *(("memit", "1", ridge) for ridge in (0.1, 1.0, 3.0, 10.0, 30.0)),
    *(("memit", "0,1", ridge) for ridge in (1.0, 10.0)),
]
METRICS = ("reliability", "generalization", "kept", "control_exact_match", "locality", "ppl_drift")


def sweep() -> list[str]:
    """Markdown table lines, one per setting."""
    config = CompareConfig(progress=False)
    setting = build_setting(config, 0, Path(tempfile.mkdtemp()), starting_point(config))
    base, _ = setting.baseline()
    treated, control = split_one_way(setting)
    lines = [
        "| edit | layers | rate / ridge | " + " | ".join(METRICS) + " |",
        "|---" * (3 + len(METRICS)) + "|",
    ]
    for rule, layers, value in SETTINGS:
        hebbian, memit = setting.remedies.hebbian, setting.remedies.memit
        hebbian.layers = hebbian.delta_layers = memit.layers = layers
        hebbian.rate = hebbian.ridge = memit.ridge = value
        edited = copy.deepcopy(base)
        if rule == "memit":
            memit_edit(setting, edited, treated)
        else:
            hebbian_edit(setting, edited, treated, rule)
        before, after = setting.causal_lm(base), setting.causal_lm(edited)
        rows = effect_rows("hebbian", setting, before, after, treated, control)
        means = [statistics.fmean(r["value"] for r in rows if r["metric"] == m) for m in METRICS]
        lines.append(
            f"| {rule} | {layers} | {value} | " + " | ".join(f"{v:.2f}" for v in means) + " |"
        )
        print(lines[-1], flush=True)
    return lines


def main(argv: list[str]) -> None:
    lines = sweep()
    if argv == ["--readme"]:
        sys.path.insert(0, str(Path(__file__).parent))
        from update_readme import replace_block

        command = "`.venv/bin/python scripts/sweep_edits.py` (seed 0, 30 facts per group):"
        replace_block("edit-sweep", "\n".join([command, "", *lines]))
        print("README.md: edit-sweep block")


if __name__ == "__main__":
    main(sys.argv[1:])
