"""Sweep the Hebbian edit's rate, layers and post-synaptic source on the tiny world (seed 0).

    .venv/bin/python scripts/sweep_hebbian.py          # ~2 min once the reader is cached

Prints, for each setting, the edit metrics of revcurse.remedies.targets: whether any rate
installs the reverse (reliability, generalization) before it breaks the rest of the model
(locality, ppl_drift). The default rate of `revcurse compare` comes from this sweep.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

from revcurse.recipes.compare import CompareConfig
from revcurse.recipes.compare_units import build_setting, starting_point
from revcurse.remedies.hebbian import hebbian_edit
from revcurse.remedies.targets import effect_rows, split_one_way

RATES = (0.03, 0.1, 0.3, 1.0)
LAYERS = ("all", "0", "1")
SOURCES = ("pair", "context")


def main() -> None:
    config = CompareConfig(progress=False)
    setting = build_setting(config, 0, Path(tempfile.mkdtemp()), starting_point(config))
    base, _ = setting.base
    treated, control = split_one_way(setting)
    print("layers source rate: metrics")
    for layers in LAYERS:
        for source in SOURCES:
            for rate in RATES:
                hebbian = setting.remedies.hebbian
                hebbian.layers, hebbian.source, hebbian.rate = layers, source, rate
                edited = copy.deepcopy(base)
                hebbian_edit(setting, edited, treated)
                before, after = setting.causal_lm(base), setting.causal_lm(edited)
                rows = effect_rows("hebbian", setting, before, after, treated, control)
                metrics = " ".join(f"{r['group']}:{r['metric']}={r['value']:.2f}" for r in rows)
                print(f"{layers} {source} {rate}: {metrics}", flush=True)


if __name__ == "__main__":
    main()
