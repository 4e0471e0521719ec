"""Where the one-way map lives: logit lens, causal tracing, probes and weight asymmetry.

    revcurse analyze runs/demo-20261126-093000 --output-dir runs/analyze-seed0

Reads a trained run of `revcurse demo` and asks four questions of its facts, each in the
direction the fact was trained (`same`) and the other (`reverse`):

1. Logit lens (lens.py): at which layer does the answer appear at the last prompt position?
2. Causal tracing (tracing.py, Meng et al. 2022): with noise on the subject's embeddings,
   how much of the answer's probability does restoring one clean state bring back?
3. Probe (probe.py): does a description's hidden state carry anything about its name?
4. Association (association.py, after Zhu et al. 2024): the logit of B's token given only
   A's token, a function of the weights alone, against B -> A and random pairs.

Read in this order: queries.py (the prompts and their target tokens), the four analyses
(which read and patch hidden states through revcurse.lm.hooks), rows.py (results rows and
the table), figures.py; the `analyze` command itself is revcurse.recipes.analyze.
"""

from revcurse.analysis.association import assoc_rows, association_scores, single_token_logits
from revcurse.analysis.lens import lens_rows, logit_lens
from revcurse.analysis.probe import ProbeConfig, fit_probe, label_bits, majority_rate, probe_rows
from revcurse.analysis.queries import Query, build_queries, sample_queries
from revcurse.analysis.tracing import (
    POSITIONS,
    Trace,
    TraceConfig,
    clean_run,
    patched_probs,
    position_bins,
    trace,
    trace_rows,
)

__all__ = [
    "POSITIONS",
    "ProbeConfig",
    "Query",
    "Trace",
    "TraceConfig",
    "assoc_rows",
    "association_scores",
    "build_queries",
    "clean_run",
    "fit_probe",
    "label_bits",
    "lens_rows",
    "logit_lens",
    "majority_rate",
    "patched_probs",
    "position_bins",
    "probe_rows",
    "sample_queries",
    "single_token_logits",
    "trace",
    "trace_rows",
]
