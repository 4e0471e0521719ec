"""What every remedy receives (Setting) and returns (Treatment); see revcurse.remedies.

Remedies for the reversal curse: one small module each, one function each,

    apply(setting: Setting) -> Treatment

A remedy receives the world (facts, phrasings, training text), the shared tokenizer and
the training budget, and returns what answers the test questions: a model (trained by the
remedy, or the shared baseline model) and, for prompting remedies, how each question is
posed. `revcurse compare` scores every treatment with the same evaluator. Every trained
remedy starts from fresh weights and trains on the same base corpus (the facts' training
text plus the reading documents) for the same number of steps, plus its own additions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from revcurse.evaluate import CausalLM, LanguageModel
from revcurse.facts import Example, Fact, Template
from revcurse.model import TinyModelConfig, build_tiny_model
from revcurse.train import Collate, TrainConfig, TrainResult, train


@dataclass
class RemedyConfig:
    distractors: int = 2  # in_context/reading: other facts stated beside the true one
    reading_documents: int = 20000  # drawn afresh each: too many to memorise, so read them
    kb_top_k: int = 3  # knowledge_base: retrieved facts placed in the prompt
    kb_retriever: str = "bm25"  # knowledge_base: bm25 (SQLite FTS5) or dense (all-MiniLM-L6-v2)
    reversal: str = "entity"  # reverse_training: token, word, entity or segment
    segment_max: int = 3  # reverse_training, segment mode: longest segment in words


@dataclass
class Setting:
    """Everything a remedy may use; `base` is the shared baseline model, trained on first use."""

    facts: list[Fact]
    templates: list[Template]
    train: list[Example]  # the facts' training text (closed book)
    test: list[Example]
    reading: list[Example]  # reading documents (about other, fictitious entities)
    tokenizer: PreTrainedTokenizerBase
    model: TinyModelConfig
    budget: TrainConfig
    remedies: RemedyConfig
    seed: int
    workdir: Path  # where a remedy may keep files (the run directory)
    eval_batch_size: int = 256
    progress: bool = False

    def train_model(
        self,
        extra: list[Example] | None = None,
        model: PreTrainedModel | None = None,
        collate_fn: Collate | None = None,
    ) -> tuple[PreTrainedModel, TrainResult]:
        """Fresh weights (seeded), trained on the base corpus plus `extra` for the budget."""
        if model is None:
            torch.manual_seed(self.seed)
            model = build_tiny_model(self.model, self.tokenizer)
        facts_text = [*self.train, *(extra or [])]
        # Reading documents are many (each drawn afresh, so none can be memorised); the fact
        # sentences are repeated to make up about half of the corpus whatever their number.
        repeat = max(1, round(len(self.reading) / len(facts_text)))
        corpus = [*facts_text * repeat, *self.reading]
        result = train(
            model, self.tokenizer, corpus, self.budget, self.seed, self.progress, collate_fn
        )
        return model, result

    def causal_lm(self, model: PreTrainedModel) -> CausalLM:
        return CausalLM(model, self.tokenizer, self.eval_batch_size, self.progress)

    @cached_property
    def base(self) -> tuple[PreTrainedModel, TrainResult]:
        return self.train_model()


@dataclass
class Treatment:
    lm: LanguageModel  # answers the questions
    cost: TrainResult  # training that produced it (shared runs are reported for each user)
    test: list[Example] | None = None  # the test questions as posed; None: closed book
    rows: list[dict] = field(default_factory=list)  # the remedy's own measurements
