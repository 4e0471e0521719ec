"""What every remedy receives (Setting) and returns (Treatment); see revcurse.remedies.

Remedies for the reversal curse: one small module each (its config beside it), one
function each, registered in revcurse.remedies:

    apply(setting: Setting, method: str) -> Treatment   # method: its registry name

A remedy receives the world (facts, phrasings, training text), the shared tokenizer and
the training budget, and returns what answers the test questions: a model (trained by the
remedy, or the shared baseline model) and, for prompting remedies, how each question is
posed. `revcurse compare` scores every treatment with the same evaluator. Every trained
causal remedy starts from the same weights (the tiny reader, revcurse.reader, or the
pretrained model) and trains on the same base corpus (the facts' training text and the
reading documents) for the same number of steps, plus its own additions;
self_distill and the edits start from the trained baseline instead.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from revcurse.context import worked_examples
from revcurse.converge import ConvergeConfig, Plateau
from revcurse.evaluate import EvalConfig, answers, starts_with
from revcurse.facts import Example, Fact, Template
from revcurse.lm.batching import Collate
from revcurse.lm.causal import CausalLM, LanguageModel
from revcurse.lm.chat import chat_formatted
from revcurse.lm.tiny import TinyModelConfig
from revcurse.train import Budget, LossFn, TrainConfig, TrainResult, train
from revcurse.trained import fingerprint, trained_once

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from revcurse.remedies import RemedyConfig


@dataclass
class Setting:
    """Everything a remedy may use; `baseline()` is the shared baseline model, trained on
    first use."""

    facts: list[Fact]
    templates: list[Template]
    recombine: bool  # a world of your own: fresh entities from its words (context.fresh_entities)
    train_examples: list[Example]  # the facts' training text (closed book)
    test_examples: list[Example]
    reading: list[Example]  # reading documents (about other, fictitious entities)
    tokenizer: PreTrainedTokenizerBase
    start: PreTrainedModel  # weights causal remedies start from (copied): reader or pretrained
    seed: int
    workdir: Path  # where a remedy may keep files (the run directory)
    # The recipe's configs, under the recipe's names (--tiny.*, --train.*, ...)
    tiny: TinyModelConfig  # the size of a model a remedy builds from scratch (mlm_u)
    train: TrainConfig  # the training budget every trained method gets
    eval: EvalConfig
    remedies: RemedyConfig
    progress: bool = False
    pretrained: bool = False  # start is a real LLM: LoRA by default
    chat_template: bool = False  # pose every prompt as a user turn of its chat template
    teach_all: bool = False  # revcurse teach: treat every one-way fact, keep none as a control
    budget: Budget = "matched"  # matched: train.steps for every method; converged: until a plateau
    converge: ConvergeConfig = field(default_factory=ConvergeConfig)
    # The baseline model's greedy answers by question list, and its generic-text NLL: every
    # edit's locality and perplexity drift compare against them (revcurse.remedies.targets)
    base_said: dict[tuple[str, ...], list[str]] = field(default_factory=dict, repr=False)
    base_nll: list[float] = field(default_factory=list, repr=False)
    # the real-world probe facts the start model answers right (revcurse.remedies.targets)
    world_known: list[Example] | None = field(default=None, repr=False)
    sham: bool = False  # facts swapped for a sham teacher: its effect rows are not measured
    # baseline()'s model and cost once trained; a replace()d setting trains (or loads) anew
    trained_baseline: tuple[PreTrainedModel, TrainResult] | None = field(
        default=None, init=False, repr=False
    )
    cache_dir: Path | None = None  # where the baseline is kept (revcurse.trained); None: not kept

    def train_model(
        self,
        extra: list[Example] | None = None,
        model: PreTrainedModel | None = None,
        collate_fn: Collate | None = None,
        budget: TrainConfig | None = None,
        loss_fn: LossFn | None = None,
        lm_of: Callable[[PreTrainedModel], LanguageModel] | None = None,
        reading: bool = True,
        leave: Collection[int] = (),
    ) -> tuple[PreTrainedModel, TrainResult]:
        """A copy of `start`, or `model`, trained on the base corpus (without the facts in
        `leave`, or the reading documents if not `reading`) plus `extra` as --train says, or
        as `budget` does. Under
        the converged budget (and no `budget`), until the trained direction's exact match,
        asked through `lm_of(model)` (default: causal_lm), stops improving."""
        if model is None:
            model = copy.deepcopy(self.start)
        corpus = self.corpus(extra, reading, leave)
        plateau = None
        if self.budget == "converged" and budget is None:
            budget = replace(self.train, steps=self.converge.max_steps)
            quiet = lm_of or (lambda m: self.causal_lm(m, progress=False))  # under train's bar
            # never less than the matched budget, unless every answer is right before
            plateau = Plateau(self.trained_direction_score(quiet), self.converge, self.train.steps)
        result = train(
            model,
            self.tokenizer,
            corpus,
            budget or self.train,
            self.seed,
            self.progress,
            collate_fn,
            pretrained=self.pretrained,
            loss_fn=loss_fn,
            plateau=plateau,
        )
        return model, result

    def corpus(
        self, extra: list[Example] | None = None, reading: bool = True, leave: Collection[int] = ()
    ) -> list[Example]:
        """The base corpus (the facts' training text but that of the facts in `leave`, the
        reading documents) plus `extra`, as train_model trains on it."""
        text = [e for e in self.train_examples if e.fact not in leave]
        corpus = self.ask([*text, *(extra or [])])
        share = self.remedies.reading_share if reading else 0.0
        if share > 0:
            # The model keeps reading the reading documents (so as not to forget how: a
            # pretrained one fine-tuned on the facts alone answers every question with a
            # trained fact's answer, context or not), each drawn afresh, so none can be
            # memorised; the fact sentences are repeated so that the documents make up
            # `share` of the corpus.
            repeats = round(len(self.reading) * (1 - share) / share / len(corpus))
            corpus = corpus * max(1, repeats) + self.reading
        return corpus

    def trained_direction_score(
        self, lm_of: Callable[[PreTrainedModel], LanguageModel]
    ) -> Callable[[PreTrainedModel], float]:
        """Exact match of the facts' training questions asked as trained (one phrasing each:
        what a model learns first), for Plateau: a score the test questions never enter."""
        first: dict[tuple[int, str], Example] = {}
        for e in self.train_examples:
            if e.sense == "same":
                first.setdefault((e.fact, e.direction), e)
        asked = self.ask(list(first.values()))

        def score(model: PreTrainedModel) -> float:
            said = answers(lm_of(model), asked, self.eval)
            hits = [starts_with(out, e.completion) for out, e in zip(said, asked, strict=True)]
            return sum(hits) / len(hits)

        return score

    def ask(self, examples: Sequence[Example]) -> list[Example]:
        """The examples as the model is asked them: in its chat template, if `chat`."""
        return chat_formatted(examples, self.tokenizer) if self.chat_template else list(examples)

    def pose(self, questions: Sequence[Example], seed: int | None = None) -> list[Example]:
        """Questions with their fact in context as the model is asked them (in_context,
        knowledge_base, the self-distillation teacher): after the worked examples
        (--eval.shots; drawn with `seed`, by default the setting's), then as `ask` would."""
        if self.eval.shots:
            seed = self.seed if seed is None else seed
            questions = worked_examples(
                questions, self.templates, self.eval.shots, self.facts, seed, self.recombine
            )
        return self.ask(questions)

    @property
    def fact_lines(self) -> bool:
        """Facts in a prompt as `Fact:` lines, the worked examples' layout, when there are any."""
        return self.eval.shots > 0

    def causal_lm(self, model: PreTrainedModel, progress: bool | None = None) -> CausalLM:
        shown = self.progress if progress is None else progress
        return CausalLM(model, self.tokenizer, self.eval.batch_size, shown)

    def baseline(self) -> tuple[PreTrainedModel, TrainResult]:
        """The baseline, trained on first call (minutes, on a pretrained model): the start
        trained on the base corpus; with `cache_dir`, trained once for this start, corpus,
        budget and seed, and loaded by every later run."""
        if self.trained_baseline is None:
            self.trained_baseline = self.train_baseline()
        return self.trained_baseline

    def train_baseline(self) -> tuple[PreTrainedModel, TrainResult]:
        folder = None
        if self.cache_dir is not None:
            determines: list[object] = [
                [(e.prompt, e.completion) for e in self.corpus()],
                sorted(self.tokenizer.get_vocab().items()),
                asdict(self.train),
                self.seed,
                self.pretrained,
            ]
            if self.budget == "converged":  # Plateau asks questions: how, and when to stop
                determines += [asdict(self.converge), asdict(self.eval)]
            folder = self.cache_dir / fingerprint(self.start, *determines)
        return trained_once(folder, self.start, self.train_model)


@dataclass
class Treatment:
    lm: LanguageModel  # answers the questions
    cost: TrainResult  # training that produced it (shared runs are reported for each user)
    test: list[Example] | None = None  # the test questions as posed; None: all, as trained
    rows: list[dict] = field(default_factory=list)  # the remedy's own measurements
    in_context: bool = False  # `test` states each question's fact: worked examples first


def plus(first: TrainResult, then: TrainResult | None = None, seconds: float = 0.0) -> TrainResult:
    """The cost of `first` followed by `then` (continued training) and `seconds` of other
    work (generation, edits): losses of both, tokens, time and FLOPs summed."""
    then = then or TrainResult([], 0, 0.0, 0.0)
    return TrainResult(
        first.losses + then.losses,
        first.tokens + then.tokens,
        first.seconds + then.seconds + seconds,
        first.flops + then.flops,
        cached_seconds=first.cached_seconds,  # `first` was loaded: what its training took
    )
