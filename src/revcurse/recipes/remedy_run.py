"""What every run of remedies shares (compare, teach, the sweeps): its options, the seed's
world, the start weights, and the Setting a remedy receives.

    revcurse teach facts.jsonl --method self_distill   # teach and compare are RemedyRuns

`RemedyRun` is the options' dataclass both commands extend, with the defaults for a
pretrained model (`PRETRAINED`, from the sweeps in scripts/); `build_setting` makes one
seed's revcurse.remedies.setting.Setting of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.console import Console

from revcurse.config import CACHE, choice
from revcurse.context import reading_documents
from revcurse.converge import ConvergeConfig
from revcurse.evaluate import EvalConfig
from revcurse.facts import expand
from revcurse.lm.pretrained import check_model_option, load_pretrained
from revcurse.lm.tiny import TinyModelConfig
from revcurse.lm.tokenizer import build_word_tokenizer
from revcurse.probes import world_facts
from revcurse.reader import ReaderConfig, load_or_train_reader
from revcurse.remedies import RemedyConfig
from revcurse.remedies.reverse_training import SEGMENT_MARKER
from revcurse.remedies.setting import Setting
from revcurse.sources import World, check_source, load_world
from revcurse.train import BUDGETS, Budget, TrainConfig
from revcurse.world import WorldConfig, vocabulary

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

Start = tuple["PreTrainedModel", "PreTrainedTokenizerBase"]  # the start weights and tokenizer


@dataclass
class RemedyRun:
    """What a run of remedies needs (compare, teach): the world, the model and its budget."""

    # SmolLM2-135M (scripts/sweep_finetune.py, scripts/sweep_shots.py): LoRA at 3e-4 collapses
    # it onto a few trained answers; full fine-tuning at 2e-4 with a quarter of the corpus
    # reading documents (Fact: lines) keeps its in-context reading whole. 96 sequences a
    # pass: scoring projects the vocabulary only where it scores, so memory stays within a
    # few GiB, and SmolLM2's greedy answers come 15-20% sooner than at 32 (the same
    # answers); three worked examples let it answer from its context
    PRETRAINED: ClassVar[dict[str, object]] = {
        "train.finetune": "full",
        # 30 facts a group (scripts/sweep_finetune.py): same direction 0.92 p2d, in context
        # reverse 0.97; at 3e-4 same 1.00 but in context reverse 0.75 (a trained name instead)
        "train.steps": 300,
        "train.lr": 2e-4,
        "train.batch_size": 8,
        "train.warmup_steps": 5,
        "train.group_by_length": True,  # a third of a random batch of 8 is padding
        "cache": True,  # a baseline takes minutes: every later run on the same facts loads it
        "eval.batch_size": 96,
        "eval.max_candidates": 10,
        "eval.shots": 3,
        "remedies.reading_documents": 200,
        "remedies.generic_documents": 20,
        # scripts/sweep_distill.py (SmolLM2, 30 facts a group): its answers repeated to half
        # of the corpus and 200 steps take the treated facts' reverse from 0.33 / 0.27 to
        # 0.97 / 1.00 on held-out phrasings, keeping their trained direction (1.00), but
        # change a fifth of the answers about untouched facts (locality 0.80); a LoRA
        # student at 1e-3 that also keeps its own answers about them: reverse 1.00 / 0.87,
        # trained direction 1.00, locality 0.90, in 478 s against 1578 s fully fine-tuned
        "remedies.self_distill.steps": 200,
        "remedies.self_distill.share": 0.5,
        "remedies.self_distill.finetune": "lora",
        "remedies.self_distill.lr": 1e-3,
        "remedies.self_distill.keep": True,
        "remedies.self_distill.samples": 3,
        "remedies.self_distill.agree": 2,
        # MEMIT's recipe (subject position, a run of layers) ending where ROME's middle
        # layer installs SmolLM2's reverse
        "remedies.memit.layers": [10, 11, 12, 13, 14],
        "remedies.memit.position": "subject",
        # scripts/sweep_hebbian.py (SmolLM2, 10 facts a group): reading the fact, the model
        # forms the answer at the answer's tokens in its last layers, nowhere at the subject;
        # written there from six readings, keeping its own answers about the untouched
        # facts: reverse 1.00 / 0.95 on the edit phrasings, 1.00 / 0.90 held out, kept 1.00,
        # locality 0.93 (at the subject: 0.00; one reading 0.50 / 0.65; unkept locality 0.82)
        "remedies.hebbian_memit.layers": [-5, -4, -3, -2, -1],
        "remedies.hebbian_memit.position": "answer",
        "remedies.hebbian_memit.keep": True,
        "remedies.hebbian_memit.readings": 6,
    }
    # Gemma-3-270M (scripts/sweep_finetune.py --model gemma3-270m, 30 facts a group): fully
    # fine-tuned at SmolLM2's 2e-4 it learns the facts but its greedy in-context answers
    # leave the name (reverse 0.23 p2d); at 5e-5 it reads again (p2d 0.78, d2p 0.97) but
    # learns less (same 0.88, 0.98). LoRA on the MLPs alone leaves attention, the reading,
    # as it was: at 1e-3 for 450 steps same 1.00 / 1.00 and in context reverse 0.90 / 1.00
    # (300 steps: same 0.80 / 0.88; at 2e-4 it learns nothing, at 2e-3 it collapses)
    PRETRAINED_BY_MODEL: ClassVar[dict[str, dict[str, object]]] = {
        "gemma3-270m": {
            "train.finetune": "lora",
            "train.lora_targets": ["gate_proj", "up_proj", "down_proj"],
            "train.lr": 1e-3,
            "train.steps": 450,
        },
    }
    facts: Path | None = None
    """your facts file (JSONL, JSON array or CSV) for every seed"""
    statements: Path | None = None
    """your facts as plain sentences, one a line (instead of --facts)"""
    templates: Path | None = None
    """your templates file; default: the Berglund-style phrasings"""
    data: str | None = None
    """berglund: Experiment 1's 90 celebrities (or its folder, a hub id)"""
    progress: bool = True
    """progress bars on stderr"""
    world: WorldConfig = field(default_factory=lambda: WorldConfig(facts_per_group=30))
    model: str = "tiny"
    """tiny (from the reader), smollm2-135m, gemma3-270m, a hub id or folder"""
    chat_template: bool = False
    """instruct models: pose prompts in the tokenizer's chat template"""
    tiny: TinyModelConfig = field(default_factory=lambda: TinyModelConfig(max_len=128))
    # From the reader: ~16 passes over the fact sentences. The cosine decay lets 400 steps of
    # 32 learn what 1000 of 64 at a constant rate did (bidirectional 1.00 either way)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(steps=400, batch_size=32, decay="cosine")
    )
    # converged: each trained method until its trained direction's exact match (on training
    # questions, every converge.every steps) plateaus: at least train.steps unless it is
    # perfect sooner, at most converge.max_steps
    budget: Budget = "matched"
    """matched: every trained method gets train.steps; or converged"""
    converge: ConvergeConfig = field(default_factory=ConvergeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    remedies: RemedyConfig = field(default_factory=RemedyConfig)
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    """tiny: learns to read first"""
    seed: int = 0
    """the (first) seed: data order, and the generated world if no facts are given"""
    # under a hash of its start weights, corpus, training options and seed (revcurse.trained)
    cache: bool = False
    """keep the baseline in cache-dir: a later run on the same loads it"""
    cache_dir: Path = CACHE / "baselines"
    """kept baselines (SmolLM2: 0.5 GiB each)"""

    def __post_init__(self) -> None:
        check_model_option(self.model)
        choice(self.budget, "budget", BUDGETS)
        check_source(self.facts, self.templates, self.data, self.statements)


def world_of(config: RemedyRun, seed: int) -> World:
    """The seed's world: generated afresh, or your files (or Berglund's) for every seed."""
    return load_world(
        config.facts, config.templates, config.data, config.world, seed, config.statements
    )


def starting_point(config: RemedyRun, console: Console | None = None) -> Start:
    """The weights every causal remedy starts from: the pretrained model, or for `tiny` the
    cached reader (revcurse.reader) with the tokenizer of the world's whole vocabulary and
    the real-world probe facts' (a world of your own: its words too, and a reader that read
    about its relations)."""
    if config.model != "tiny":
        return load_pretrained(config.model)
    world = world_of(config, config.seed)
    train, test = expand(world.facts, world.templates)  # words vocabulary() may not hold
    known = world_facts() if config.reader.world_facts else []  # the reader reads them
    shown = [*train, *test, *known]
    texts = [*vocabulary(), SEGMENT_MARKER, *(e.prompt + e.completion for e in shown)]
    tokenizer = build_word_tokenizer(texts)
    reader = load_or_train_reader(
        config.reader,
        config.tiny,
        tokenizer,
        config.progress,
        console,
        None if world.builtin else world,
    )
    return reader, tokenizer


def build_setting(
    config: RemedyRun,
    seed: int,
    workdir: Path,
    start: Start,
) -> Setting:
    """One seed's world. Every model keeps reading its reading documents while it learns the
    facts (--remedies.reading-share), laid out as its questions are (`Fact:` lines after
    worked examples); they are also the generic text of edit statistics and perplexity."""
    world = world_of(config, seed)
    facts = world.facts
    train, test = expand(facts, world.templates, config.world.teach_test_phrasings)
    remedies = config.remedies
    reading = reading_documents(
        remedies.reading_documents,
        remedies.distractors,
        world.templates,
        facts,
        seed,
        config.eval.shots > 0,
        recombine=not world.generated,
    )
    model, tokenizer = start
    return Setting(
        facts=facts,
        templates=world.templates,
        recombine=not world.generated,
        train_examples=train,
        test_examples=test,
        reading=reading,
        tokenizer=tokenizer,
        start=model,
        seed=seed,
        workdir=workdir,
        tiny=config.tiny,
        train=config.train,
        eval=config.eval,
        remedies=config.remedies,
        progress=config.progress,
        pretrained=config.model != "tiny",
        chat_template=config.chat_template,
        budget=config.budget,
        converge=config.converge,
        cache_dir=config.cache_dir if config.cache else None,
    )
