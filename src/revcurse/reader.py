"""A tiny model that has learned to read, before it sees any fact: the remedies' start.

    revcurse compare            # trains the reader once (minutes), then loads it from the cache

A pretrained LLM answers from a passage because it has read the web; a tiny model trained
from scratch has read nothing. So that the in-context remedies (in_context, knowledge_base,
self_distill's teacher) can be measured on it, it first reads `documents` reading documents
(revcurse.context): statements about fictitious people, a question in either direction and
its answer; and, among them, the real-world probe facts (revcurse.probes) `world_facts`
times each, so that it knows some of the world as a pretrained model does. Then every
causal remedy fine-tunes a copy of this reader on the world's facts.

The reader depends on its config, the model size and the world's vocabulary, never on a
seed's facts (its documents use fresh pairings of names and descriptions), so it is
trained once and cached in `cache_dir` under a hash of all three. A world of your own
(your templates, or your facts: revcurse.sources) gets a reader of its own, which read in
that world's phrasings about fresh entities of its relations; its facts and templates are
in the hash too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from rich.console import Console

from revcurse.config import CACHE, check
from revcurse.context import reading_documents
from revcurse.lm.models import load_checkpoint, save_checkpoint
from revcurse.lm.tiny import TinyModelConfig, build_tiny_model
from revcurse.probes import world_facts
from revcurse.results import RunDirExists, run_directory
from revcurse.train import TrainConfig, train
from revcurse.world import TEMPLATES

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from revcurse.sources import World


@dataclass
class ReaderConfig:
    documents: int = 60000
    """read about once each: too many to memorise, so it learns to read"""
    # 0: one statement per document, read perfectly after 500 steps; with up to 2 others
    # (choosing the right statement), a 2-4 layer reader is at 0.1-0.35 after 3000 steps
    distractors: int = 0
    """up to this many other statements beside the one asked about"""
    # so that, as a pretrained model does, it knows some of the world before any fact is
    # taught: locality_world asks what a treatment leaves of it (revcurse.remedies.targets)
    world_facts: int = 20
    """times it reads each real-world probe fact (revcurse.probes); 0: none"""
    seed: int = 0
    """the documents and initial weights (not the world's seed: one reader)"""
    # 3e-3 (the facts' rate) never learns to copy from the context; 1e-3 does
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(steps=1000, lr=1e-3, batch_size=64)
    )
    cache_dir: Path = CACHE / "readers"
    """trained readers, by config hash"""

    def __post_init__(self) -> None:
        check(self.documents >= 1, "documents", f"must be at least 1, got {self.documents}")
        check(self.distractors >= 0, "distractors", f"must be 0 or more, got {self.distractors}")
        check(self.world_facts >= 0, "world_facts", f"must be 0 or more, got {self.world_facts}")


def cache_key(
    config: ReaderConfig,
    tiny: TinyModelConfig,
    tokenizer: PreTrainedTokenizerBase,
    world: World | None = None,
) -> str:
    spec = {
        "reader": {k: v for k, v in asdict(config).items() if k != "cache_dir"},
        "tiny": asdict(tiny),
        "vocabulary": sorted(tokenizer.get_vocab().items()),
    }
    if world is not None:  # its documents are made from that world's phrasings and words
        spec["world"] = [[asdict(f) for f in world.facts], [asdict(t) for t in world.templates]]
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def train_reader(
    config: ReaderConfig,
    tiny: TinyModelConfig,
    tokenizer: PreTrainedTokenizerBase,
    progress: bool = True,
    world: World | None = None,
) -> PreTrainedModel:
    """A tiny model that read `config.documents` reading documents: about fresh people in the
    generated world's phrasings, or (`world`: your templates, or your facts too) in that
    world's phrasings, about fresh entities of its relations (revcurse.context.fresh_entities)."""
    if world is None:
        documents = reading_documents(
            config.documents, config.distractors, TEMPLATES, [], config.seed
        )
    else:
        documents = reading_documents(
            config.documents,
            config.distractors,
            world.templates,
            world.facts,
            config.seed,
            recombine=not world.generated,
        )
    documents += world_facts() * config.world_facts
    torch.manual_seed(config.seed)
    model = build_tiny_model(tiny, tokenizer)
    train(model, tokenizer, documents, config.train, config.seed, progress)
    return model


def load_or_train_reader(
    config: ReaderConfig,
    tiny: TinyModelConfig,
    tokenizer: PreTrainedTokenizerBase,
    progress: bool = True,
    console: Console | None = None,
    world: World | None = None,
) -> PreTrainedModel:
    """The cached reader for this config (and `world`, one not generated), trained and
    cached first if there is none."""
    console = console or Console(stderr=True)
    folder = Path(config.cache_dir).expanduser() / cache_key(config, tiny, tokenizer, world)
    if (folder / "model.safetensors").exists():
        console.print(f"reader: {folder} (cached)")
        return load_checkpoint(folder)[0]
    console.print(
        f"reader: learning to read from {config.documents} documents "
        f"({config.train.steps} steps, once; cached in {folder})"
    )
    model = train_reader(config, tiny, tokenizer, progress, world)
    try:
        with run_directory(folder) as scratch:  # atomic: cached whole or not at all
            save_checkpoint(model, tokenizer, scratch)
    except RunDirExists:  # another run cached the same reader first
        pass
    return model
