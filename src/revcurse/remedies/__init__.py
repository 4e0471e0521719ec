"""Remedies for the reversal curse, by name: each module's `apply(Setting, name) ->
Treatment`, its rows under the name the registry gives it (`apply_remedy`).

    revcurse compare --methods baseline,in_context,bidirectional

See revcurse.remedies.setting for what a remedy receives and returns. To add a remedy:
a module with its `apply` (and its config dataclass, if it has options), a `Remedy` record
in REMEDIES (variants of one `apply`: functools.partial with its options), and its config
as a field of RemedyConfig (then `--remedies.<name>.<option>`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

from revcurse.config import check
from revcurse.errors import UserError
from revcurse.remedies import (
    baseline,
    bidirectional,
    concept_jepa,
    concept_memory,
    hebbian,
    in_context,
    knowledge_base,
    memit,
    mlm_u,
    reverse_training,
    rome,
    self_distill,
)
from revcurse.remedies.concept_jepa import ConceptJepaConfig
from revcurse.remedies.concept_model import ConceptMemoryConfig
from revcurse.remedies.hebbian import HebbianConfig
from revcurse.remedies.knowledge_base import KnowledgeBaseConfig
from revcurse.remedies.memit import HebbianMemitConfig, MemitConfig
from revcurse.remedies.mlm_u import MlmUConfig
from revcurse.remedies.reverse_training import ReverseTrainingConfig
from revcurse.remedies.rome import RomeConfig
from revcurse.remedies.self_distill import SelfDistillConfig
from revcurse.remedies.setting import Setting, Treatment
from revcurse.remedies.targets import sham_facts, sham_rows


@dataclass
class RemedyConfig:
    # The tiny reader reads one statement; beside others it cannot yet pick the right one
    distractors: int = 0
    """in_context, self_distill, reading: other facts beside the true one"""
    # A run of 400 steps of 32 at share 0.25 reads ~3,200 documents: none twice, so it reads
    reading_documents: int = 5000
    """documents drawn afresh for each seed's world"""
    reading_share: float = 0.25
    """share of reading documents in every training corpus"""
    generic_documents: int = 200
    """documents of the edits' key statistics (and the tiny model's held-out text)"""
    # Each treated fact's answer side swapped for another's in what the teacher reads (or the
    # edit writes): the true reverse must stay at chance (revcurse.remedies.targets.sham_facts)
    sham: bool = True
    """run each weight remedy again as a sham: sham_* rows"""
    knowledge_base: KnowledgeBaseConfig = field(default_factory=KnowledgeBaseConfig)
    reverse_training: ReverseTrainingConfig = field(default_factory=ReverseTrainingConfig)
    self_distill: SelfDistillConfig = field(default_factory=SelfDistillConfig)
    hebbian: HebbianConfig = field(default_factory=HebbianConfig)
    rome: RomeConfig = field(default_factory=RomeConfig)
    memit: MemitConfig = field(default_factory=MemitConfig)
    hebbian_memit: HebbianMemitConfig = field(default_factory=HebbianMemitConfig)
    concept_memory: ConceptMemoryConfig = field(default_factory=ConceptMemoryConfig)
    concept_jepa: ConceptJepaConfig = field(default_factory=ConceptJepaConfig)
    mlm_u: MlmUConfig = field(default_factory=MlmUConfig)

    def __post_init__(self) -> None:
        for name in ("distractors", "reading_documents"):
            value = getattr(self, name)
            check(value >= 0, name, f"must be 0 or more, got {value}")
        check(
            0 <= self.reading_share < 1,
            "reading_share",
            f"must be in [0, 1), got {self.reading_share}",
        )
        check(
            self.generic_documents >= 1,
            "generic_documents",
            f"must be at least 1, got {self.generic_documents}",
        )


@dataclass(frozen=True)
class Remedy:
    apply: Callable[[Setting, str], Treatment]  # (setting, the remedy's name) -> treatment
    # Trains its own model from the start weights rather than change the baseline's, so it
    # needs nothing from another method and can run beside them (revcurse compare --workers)
    own_model: bool = False
    tiny_only: bool = False  # its own architecture around the tiny model
    teaches: bool = False  # puts every fact in the weights: `revcurse teach` can run it
    keepable: bool = True  # compare --keep-models can save what answers (analyze reads it)
    bakes: bool = False  # changes the baseline's weights for the treated facts: has a sham


REMEDIES: dict[str, Remedy] = {
    "baseline": Remedy(baseline.apply),
    "in_context": Remedy(in_context.apply),
    "knowledge_base": Remedy(knowledge_base.apply),
    "bidirectional": Remedy(bidirectional.apply, own_model=True, teaches=True),
    "reverse_training": Remedy(reverse_training.apply, own_model=True, teaches=True),
    "mlm_u": Remedy(mlm_u.apply, own_model=True, tiny_only=True, keepable=False),
    "concept_memory": Remedy(concept_memory.apply, own_model=True, tiny_only=True),
    **{
        name: Remedy(partial(concept_jepa.apply, **variant), own_model=True, tiny_only=True)
        for name, variant in concept_jepa.VARIANTS.items()
    },
    "self_distill": Remedy(self_distill.apply, teaches=True, bakes=True),
    "self_distill_kl": Remedy(partial(self_distill.apply, kl=True), teaches=True, bakes=True),
    "hebbian": Remedy(hebbian.apply, bakes=True),
    "hebbian_whitened": Remedy(partial(hebbian.apply, rule="whitened"), bakes=True),
    "hebbian_contrastive": Remedy(partial(hebbian.apply, rule="contrastive"), bakes=True),
    "hebbian_delta": Remedy(partial(hebbian.apply, rule="delta"), bakes=True),
    "rome": Remedy(rome.apply, bakes=True),
    "memit": Remedy(memit.apply, bakes=True),
    "hebbian_memit": Remedy(partial(memit.apply, target_from="context"), bakes=True),
}


# compare's default: the thesis in one table, in <= 120 s on 2 cores (benchmarks/
# wall_time.py). The baseline, the context remedies, and one of each family that installs
# the reverse on the tiny model (data, baking, a weight edit); concept_memory, a symmetric
# retrieval like knowledge_base, and every variant a researcher compares are in `all`
THESIS = (
    "baseline",
    "in_context",
    "knowledge_base",
    "bidirectional",
    "self_distill",
    "hebbian_delta",
)
PRESETS = {"thesis": THESIS, "all": tuple(REMEDIES)}


def parse_methods(methods: Sequence[str] | str, pretrained: bool = False) -> list[str]:
    """A preset, ['thesis'] or ['all'] (for a pretrained model: those of it that apply to
    one), or known names (a list, or comma-separated); ValueError for an unknown name or one
    that does not apply."""
    words = methods.split(",") if isinstance(methods, str) else methods
    names = [m.strip() for m in words]
    if len(names) == 1 and names[0] in PRESETS:
        chosen = PRESETS[names[0]]
        return [name for name in chosen if not (pretrained and REMEDIES[name].tiny_only)]
    unknown = [m for m in names if m not in REMEDIES]
    if unknown or not names:
        raise UserError(
            f"--methods: unknown {', '.join(unknown) or 'empty list'} "
            f"(known: {', '.join(PRESETS)}, {', '.join(REMEDIES)})"
        )
    tiny = [m for m in names if pretrained and REMEDIES[m].tiny_only]
    if tiny:
        raise UserError(
            f"--methods: {', '.join(tiny)} runs on the tiny model only: use --model tiny"
        )
    return names


def apply_remedy(setting: Setting, method: str) -> Treatment:
    """The remedy `method` applied to `setting`, its rows under that name; a weight remedy's
    sham too (--remedies.sham, none for `revcurse teach`): the same treatment on a world
    whose treated facts read another's answer side, its answers to the true reverse and to
    the shown pairs' (revcurse.remedies.targets.sham_rows) among the rows."""
    remedy = REMEDIES[method]
    treatment = remedy.apply(setting, method)
    if remedy.bakes and setting.remedies.sham and not setting.teach_all:
        facts, swapped = sham_facts(setting)
        shown = replace(setting, facts=facts, sham=True)
        shown.trained_baseline = setting.baseline()  # the same baseline reads the sham
        fooled = remedy.apply(shown, method)
        treatment.rows += sham_rows(method, setting, shown, swapped, fooled.lm)
    return treatment
