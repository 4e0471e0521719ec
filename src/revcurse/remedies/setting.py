"""What every remedy receives (Setting) and returns (Treatment); see revcurse.remedies.

Remedies for the reversal curse: one small module each, one function each,

    apply(setting: Setting) -> Treatment

A remedy receives the world (facts, phrasings, training text), the shared tokenizer and
the training budget, and returns what answers the test questions: a model (trained by the
remedy, or the shared baseline model) and, for prompting remedies, how each question is
posed. `revcurse compare` scores every treatment with the same evaluator. Every trained
causal remedy starts from the same weights (the tiny reader, revcurse.reader, or the
pretrained model) and trains on the same base corpus (the facts' training text, plus for a
tiny model the reading documents) for the same number of steps, plus its own additions;
self_distill and the edits start from the trained baseline instead.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from revcurse.evaluate import CausalLM, LanguageModel
from revcurse.facts import Example, Fact, Template
from revcurse.model import TinyModelConfig
from revcurse.pretrained import chat_formatted
from revcurse.train import Collate, LossFn, TrainConfig, TrainResult, train


@dataclass
class RemedyConfig:
    # The tiny reader reads one statement; beside others it cannot yet pick the right one
    distractors: int = 0  # in_context, self_distill, reading: other facts beside the true one
    # A run of 400 steps of 32 at share 0.25 reads ~3,200 documents: none twice, so it reads
    reading_documents: int = 5000  # tiny: documents drawn afresh for each seed's world
    reading_share: float = 0.25  # tiny: share of reading documents in every training corpus
    kb_top_k: int = 1  # knowledge_base: retrieved facts placed in the prompt
    kb_retriever: str = "bm25"  # knowledge_base: bm25 (SQLite FTS5) or dense (all-MiniLM-L6-v2)
    reversal: str = "entity"  # reverse_training: token, word, entity or segment
    segment_max: int = 3  # reverse_training, segment mode: longest segment in words
    distill_samples: int = 5  # self_distill: answers sampled per question, fact in context
    distill_agree: int = 3  # self_distill: keep an answer the teacher gave this often
    distill_temperature: float = 1.0  # self_distill: the teacher's sampling temperature
    # With the cosine decay, 300 steps: reverse 1.00 on held-out phrasings (seed 0)
    distill_steps: int = 300  # self_distill: closed-book steps on its answers (+ replay)
    hebbian_source: str = "context"  # hebbian: post activity, context (fact read) or pair
    hebbian_positions: str = "answer"  # hebbian: answer (every answer token) or last
    hebbian_layers: str = "all"  # hebbian: all, middle or indices, e.g. 0,1
    # scripts/sweep_hebbian.py: no rate installs the reverse; above 0.03 locality collapses
    hebbian_rate: float = 0.03  # hebbian: a stored key recalls rate x its value
    rome_layer: str = "middle"  # rome: the edited layer, middle ((n_layers - 1) // 2) or an index
    rome_steps: int = 30  # rome: Adam steps that optimise each value vector
    generic_documents: int = 200  # hebbian/rome statistics and perplexity drift: documents


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
    start: PreTrainedModel  # weights causal remedies start from (copied): reader or pretrained
    eval_batch_size: int = 256
    progress: bool = False
    pretrained: bool = False  # start is a real LLM: LoRA by default, no reading documents
    chat: bool = False  # pose every prompt as a user turn of the tokenizer's chat template

    def train_model(
        self,
        extra: list[Example] | None = None,
        model: PreTrainedModel | None = None,
        collate_fn: Collate | None = None,
        steps: int | None = None,
        loss_fn: LossFn | None = None,
    ) -> tuple[PreTrainedModel, TrainResult]:
        """A copy of `start`, or `model`, trained on the base corpus plus `extra` for the
        budget's steps (or `steps`)."""
        if model is None:
            model = copy.deepcopy(self.start)
        corpus = self.ask([*self.train, *(extra or [])])
        share = self.remedies.reading_share
        if not self.pretrained and share > 0:
            # A tiny model keeps reading the reading documents (so as not to forget how),
            # which are many (each drawn afresh, so none can be memorised); the fact sentences
            # are repeated so that the documents make up `share` of the corpus.
            repeats = round(len(self.reading) * (1 - share) / share / len(corpus))
            corpus = corpus * max(1, repeats) + self.reading
        budget = replace(self.budget, steps=steps or self.budget.steps)
        result = train(
            model,
            self.tokenizer,
            corpus,
            budget,
            self.seed,
            self.progress,
            collate_fn,
            pretrained=self.pretrained,
            loss_fn=loss_fn,
        )
        return model, result

    def ask(self, examples: Sequence[Example]) -> list[Example]:
        """The examples as the model is asked them: in its chat template, if `chat`."""
        return chat_formatted(examples, self.tokenizer) if self.chat else list(examples)

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


def plus(first: TrainResult, then: TrainResult | None = None, seconds: float = 0.0) -> TrainResult:
    """The cost of `first` followed by `then` (continued training) and `seconds` of other
    work (generation, edits): losses of both, tokens, time and FLOPs summed."""
    then = then or TrainResult([], 0, 0.0, 0.0)
    return TrainResult(
        first.losses + then.losses,
        first.tokens + then.tokens,
        first.seconds + then.seconds + seconds,
        first.flops + then.flops,
    )
