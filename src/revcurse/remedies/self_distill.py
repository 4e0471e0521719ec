"""Remedy 4a, self-distillation: the model, reading the fact, writes its own training data.

    revcurse compare --methods baseline,self_distill

The model can reverse a fact in its context but not one stored in its weights; so let it
read each treated fact and answer questions about it, in both directions and in every
training phrasing, then train it closed book on its own answers: the prompt is baked into
the weights (Kujanpää et al. 2024 call this knowledge injection by prompt distillation).
1. Teacher: the baseline model (with `base` start, the start model) with the fact (and
   distractor facts) in context answers
   each question `samples` times at `temperature`. No ground truth is used
   to write the data. With `source` statements (or both, or own), it also states each fact
   again in its own words, starting from either side, after worked examples of fresh facts
   restated; a statement is kept when it names the fact's other side. With `source` own,
   instead of the world's questions it asks its own: reading the fact after worked examples
   of fictional facts asked from both sides, it writes a question about either side, then
   answers it with the fact in context (revcurse.remedies.own_words).
2. Self-consistency: an answer is kept when the teacher gave it at least `agree`
   times (the most frequent one, if several qualify).
3. Student: the same model keeps training, without the context, on (question -> own
   answer) plus a replay of its base corpus, for `steps` steps.
   `self_distill_kl` (prompt baking) instead matches, token by token along the same
   answers, the teacher's whole next-token distribution: KL(teacher with context ||
   student without it); the replay keeps its cross-entropy. With `keep`, the student also
   matches the base model's own distribution along its answers about the replayable facts
   (a KL locality term). With `prior`, it also replays passages the start model wrote
   unprompted: what it knew, kept by its own outputs, no text of ours; `self_distill_kl`
   matches the start model's distributions along them, a term of its own weighted by
   `prior_weight`, at every token or only at the names they go on with (`prior_at`). The
   controls' text is never replayed (revcurse.remedies.targets).
Reported: teacher accuracy (the kept answers, judged afterwards against the truth), and
the effect rows of revcurse.remedies.targets (treated facts vs untouched controls).
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal, get_args

import torch

from revcurse.config import check, choice
from revcurse.context import posed_in_context
from revcurse.errors import UserError
from revcurse.evaluate import EvalConfig, answer_tokens, starts_with
from revcurse.facts import Example
from revcurse.lm.batching import IGNORE, Collate, Features, collate, encode
from revcurse.remedies.own_words import (
    name_slots,
    own_prior,
    own_questions,
    own_replies,
    own_statements,
    sampled,
)
from revcurse.remedies.setting import Setting, Treatment, plus
from revcurse.remedies.targets import (
    OTHER_DIRECTION,
    controls,
    first_sentence,
    own_answers,
    replayable,
    split_one_way,
    training_questions,
    treated_result,
)
from revcurse.stats import proportion_row, row
from revcurse.train import LossFn, TrainResult

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


# What the teacher writes: the world's questions answered; its own statements; its own
# questions and statements (own: nothing of the world's phrasings); the world's and statements
Source = Literal["questions", "statements", "own", "both"]
StudentFinetune = Literal["same", "full", "lora"]  # same: as --train.finetune
Base = Literal["baseline", "start"]  # the model that reads the facts and learns them
PriorAt = Literal["all", "names"]  # where the start model's own passages are learned
SOURCES: tuple[Source, ...] = get_args(Source)


@dataclass
class SelfDistillConfig:
    samples: int = 5
    """answers sampled per question, fact in context"""
    agree: int = 3
    """keep an answer the teacher gave this often"""
    temperature: float = 1.0
    """the teacher's sampling temperature"""
    # With the cosine decay, 300 steps: reverse 1.00 on held-out phrasings (seed 0)
    steps: int = 300
    """closed-book steps on its answers (+ replay)"""
    lr: float = 0.0
    """the student's rate; 0: the baseline's (--train.lr)"""
    finetune: StudentFinetune = "same"
    """the student: same (as --train.finetune), full or lora"""
    # The base corpus outnumbers the answers: appended once, a SmolLM2 student of 60 steps of
    # 8 saw each answer about once. A share repeats them to about that part of its corpus
    share: float = 0.0
    """the answers' share of the student's corpus; 0: appended once"""
    # Locality: the student also trains on the baseline's own closed-book answers to the
    # replayable facts' training questions (never a test question, never a control), right
    # or wrong
    keep: bool = False
    """train on what it should not change too"""
    # Keep what it knew by its own outputs: passages the start model writes unprompted
    # (from a document's start, sampled), replayed; they hold the student to what the model
    # said before any fact was taught, on no text of ours (locality_world, ppl_drift)
    prior: int = 0
    """passages of the start model's own text replayed; 0: none"""
    # all: every token of the passages; names: only where they continue with a name (what the
    # lesson's "... is <a new name>" pulls on), the text before it the prompt
    prior_at: PriorAt = "all"
    """the passages trained (or matched, KL) at every token (all) or at their names"""
    # KL form: a term of its own, not tokens in the lesson's mean (there 200 passages of 48
    # tokens outnumber the answers' few, and the lesson was learned as at a lower rate)
    prior_weight: float = 1.0
    """self_distill_kl: the weight of the passages' mean KL to the start model in the loss"""
    # What the teacher writes. statements: the fact in its own words starting from either
    # side; own: those and its own questions about either side, answered with the fact in
    # context; neither uses a template of the world's (what a user with plain statements has)
    source: Source = "questions"
    """questions (the world's, answered), statements, own (questions and statements), both"""
    # baseline: the model fine-tuned on the facts' text teaches and learns (compare's
    # contrast: the curse, then its cure); start: the model before any fine-tuning reads the
    # facts and learns them, their text and its own words at once (no full fine-tune first)
    base: Base = "baseline"
    """teacher and student: the baseline or the start model"""

    def __post_init__(self) -> None:
        check(self.samples >= 1, "samples", f"must be at least 1, got {self.samples}")
        check(
            1 <= self.agree <= self.samples,
            "agree",
            f"must be 1..--remedies.self-distill.samples ({self.samples}), got {self.agree}",
        )
        check(self.temperature > 0, "temperature", f"must be positive, got {self.temperature}")
        check(self.steps >= 1, "steps", f"must be at least 1, got {self.steps}")
        check(self.lr >= 0, "lr", f"must be 0 (the baseline's) or positive, got {self.lr}")
        choice(self.finetune, "finetune", get_args(StudentFinetune))
        check(0 <= self.share < 1, "share", f"must be in [0, 1), got {self.share}")
        check(self.prior >= 0, "prior", f"must be 0 or more, got {self.prior}")
        choice(self.prior_at, "prior_at", get_args(PriorAt))
        check(self.prior_weight > 0, "prior_weight", f"must be positive, got {self.prior_weight}")
        choice(self.source, "source", SOURCES)
        choice(self.base, "base", get_args(Base))


def reader(setting: Setting) -> PreTrainedModel:
    """The model that reads the facts and answers in context (`base`); its own questions
    are always the start model's, which writes them more often (and from either side) than
    a model fine-tuned on one-sentence answers."""
    if setting.remedies.self_distill.base == "start":
        return setting.start
    return setting.baseline()[0]


def teach(
    setting: Setting, model: PreTrainedModel, asked: list[Example]
) -> tuple[list[Example], list[Example | None]]:
    """The questions posed with their fact in context, and the teacher's self-consistent
    answer to each (None: no answer given `agree` times)."""
    config = setting.remedies.self_distill
    k = setting.remedies.distractors
    posed = posed_in_context(asked, setting.facts, k, setting.seed, setting.fact_lines)
    completions = [e.completion for e in setting.train_examples]
    max_new = answer_tokens(setting.tokenizer, completions, EvalConfig())
    prompts = [e.prompt for e in setting.pose(posed)]
    samples = sampled(setting, model, prompts, max_new)
    kept: list[Example | None] = []
    for i, example in enumerate(asked):
        votes = Counter(first_sentence(run[i]) for run in samples)
        answer, count = votes.most_common(1)[0]
        agreed = count >= config.agree and answer.strip()
        kept.append(replace(example, completion=" " + answer.strip()) if agreed else None)
    return posed, kept


@torch.no_grad()
def teacher_logprobs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    posed: list[Example],
    answers: list[Example],
) -> dict[tuple[int, ...], torch.Tensor]:
    """For each answer (keyed by its closed-book token ids, as training encodes it): the
    teacher's log-probabilities, fact in context, at every position that predicts one of
    its tokens or the end of text."""
    model.eval()
    student = encode(tokenizer, [(a.prompt, a.completion) for a in answers], eos=True)
    teacher = encode(
        tokenizer, [(p.prompt, a.completion) for p, a in zip(posed, answers, strict=True)], True
    )
    out = {}
    for (ids, _), (teacher_ids, labels) in zip(student, teacher, strict=True):
        logits = model(input_ids=torch.tensor([teacher_ids], device=model.device)).logits[0, :-1]
        scored = torch.tensor(labels[1:], device=logits.device) != IGNORE
        out[tuple(ids)] = torch.log_softmax(logits[scored].float(), dim=-1).cpu()
    return out


def kl_objective(
    tokenizer: PreTrainedTokenizerBase,
    teacher: dict[tuple[int, ...], torch.Tensor],
    anchors: frozenset[tuple[int, ...]] = frozenset(),
    weight: float = 1.0,
) -> tuple[Collate, LossFn]:
    """Batches that carry the teacher's distributions, and the loss that matches them:
    KL(teacher || student) per answer token of distilled rows, cross-entropy elsewhere,
    averaged over the tokens of the lesson; plus `weight` times the mean over the tokens of
    the `anchors` rows (a term of their own: their number does not dilute the lesson)."""
    vocabulary = next(iter(teacher.values())).shape[-1]

    def collate_fn(features: Features) -> dict[str, torch.Tensor]:
        batch = collate(features, tokenizer.pad_token_id)
        n, width = batch["input_ids"].shape
        target = torch.zeros(n, width - 1, vocabulary)
        distilled = torch.zeros(n, dtype=torch.bool)
        anchored = torch.tensor([tuple(ids) in anchors for ids, _ in features])
        for i, (ids, labels) in enumerate(features):
            if (logprobs := teacher.get(tuple(ids))) is not None:
                positions = (torch.tensor(labels[1:]) != IGNORE).nonzero().squeeze(-1)
                target[i, positions] = logprobs
                distilled[i] = True
        return {**batch, "teacher": target, "distilled": distilled, "anchored": anchored}

    def loss_fn(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
        logprobs = torch.log_softmax(model(**inputs).logits[:, :-1].float(), dim=-1)
        labels = batch["labels"][:, 1:]
        scored = labels != IGNORE
        cross_entropy = -logprobs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        target = batch["teacher"]
        kl = (target.exp() * (target - logprobs)).sum(-1)
        per_token = torch.where(batch["distilled"][:, None], kl, cross_entropy)
        anchored = batch["anchored"][:, None]
        lesson, anchor = scored & ~anchored, scored & anchored
        loss = (per_token * lesson).sum() / lesson.sum().clamp(min=1)
        return loss + weight * (per_token * anchor).sum() / anchor.sum().clamp(min=1)

    return collate_fn, loss_fn


@dataclass
class Lesson:
    """What the teacher wrote: the questions, as posed with their fact in context, and its
    self-consistent answer to each (None: it did not agree with itself); and its own
    statements of the facts, with whether each sample named the fact's other side."""

    asked: list[Example]
    posed: list[Example]
    answered: list[Example | None]
    written: list[Example]
    named: list[bool]
    seconds: float  # generation time
    questioned: list[Example] = field(default_factory=list)  # its own questions
    replied: list[Example | None] = field(default_factory=list)  # its answers to them

    @property
    def distilled(self) -> list[Example]:
        said = [a for a in [*self.answered, *self.replied] if a is not None]
        return said + self.written


def lesson(setting: Setting) -> Lesson:
    """The reader (`base`), reading each treated fact, answers its training questions, states
    the fact in its own words and answers the start model's own questions, as `source`
    asks."""
    start = time.perf_counter()
    source = setting.remedies.self_distill.source
    treated = split_one_way(setting)[0]
    asked = training_questions(setting, treated) if source in ("questions", "both") else []
    if source == "questions" and not asked:
        raise UserError(
            "self_distill: the treated facts have no training phrasing to ask (each is stated "
            "in its own text); --remedies.self-distill.source statements has the model "
            "restate them"
        )
    teacher = reader(setting)
    posed, answered = teach(setting, teacher, asked) if asked else ([], [])
    restates = source != "questions"
    written, named = own_statements(setting, teacher, treated) if restates else ([], [])
    questioned = own_questions(setting, setting.start, treated) if source == "own" else []
    replied = own_replies(setting, teacher, questioned)
    seconds = time.perf_counter() - start
    return Lesson(asked, posed, answered, written, named, seconds, questioned, replied)


def student_corpus(
    setting: Setting, distilled: list[Example]
) -> tuple[list[Example], list[Example], list[Example]]:
    """The student's additions to the base corpus: its answers, repeated to about `share` of
    the corpus (the controls' text left out); with `keep` the base model's own closed-book
    answers about the replayable facts; with `prior` the start model's unprompted passages
    (whole, or cut at their names: `prior_at`)."""
    config = setting.remedies.self_distill
    repeats = 1
    if config.share and distilled:
        base = len(setting.corpus(leave=controls(setting)))
        repeats = max(1, round(config.share / (1 - config.share) * base / len(distilled)))
    own = own_answers(setting, replayable(setting)) if config.keep else []
    passages = own_prior(setting, config.prior)
    if config.prior_at == "names":
        passages = name_slots(passages)
    return distilled * repeats, own, passages


def study(setting: Setting, taught: Lesson, method: str, kl: bool) -> Treatment:
    """The student: a copy of the baseline trained closed book on the lesson's answers (and
    the base corpus), scored as every weight remedy is (revcurse.remedies.targets)."""
    config = setting.remedies.self_distill
    if config.base == "start":  # no baseline: the facts' text is the student's to learn
        base_model, base_cost, leave = setting.start, TrainResult([], 0, 0.0, 0.0), set()
    else:
        (base_model, base_cost), leave = setting.baseline(), controls(setting)
    start = time.perf_counter()
    repeated, own, passages = student_corpus(setting, taught.distilled)
    extra = repeated + own + passages
    collate_fn, loss_fn = None, None
    said = [a for a in taught.answered if a is not None]
    if kl and (said or own or passages):
        # the teacher's distributions along its answers (its statements: cross-entropy); with
        # keep, the base model's own along its answers about the replayable facts; with prior,
        # the start model's along its unprompted passages (what it knew before any fine-tune,
        # weighted by prior_weight): KL terms that keep the rest of the model where it was
        kept = [p for p, a in zip(taught.posed, taught.answered, strict=True) if a is not None]
        tokenizer = setting.tokenizer
        teacher = teacher_logprobs(base_model, tokenizer, setting.pose(kept), setting.ask(said))
        asked = setting.ask(own)
        teacher |= teacher_logprobs(base_model, tokenizer, asked, asked)
        written = setting.ask(passages)
        prior = teacher_logprobs(setting.start, tokenizer, written, written)
        anchors = frozenset(prior)
        collate_fn, loss_fn = kl_objective(tokenizer, teacher | prior, anchors, config.prior_weight)
    preparing = time.perf_counter() - start
    budget = replace(
        setting.train,
        steps=config.steps,
        lr=config.lr or setting.train.lr,
        finetune=setting.train.finetune if config.finetune == "same" else config.finetune,
    )
    student, cost = setting.train_model(
        extra=extra,
        model=copy.deepcopy(base_model),
        collate_fn=collate_fn,
        budget=budget,
        loss_fn=loss_fn,
        leave=leave,
    )
    rows = []
    rows += teacher_rows(method, "teacher", taught.asked, taught.answered)
    rows += teacher_rows(method, "own_question", taught.questioned, taught.replied, "kept")
    if taught.named:
        rows.append(proportion_row(method, "treated", "all", "statements_named", taught.named))
        n = len(taught.written)
        rows.append(row(method, "treated", "all", "statements_kept", n, n, None))
    rows.append(row(method, "treated", "all", "student_examples", len(extra), len(extra), None))
    spent = plus(base_cost, cost, taught.seconds + preparing)
    # compare sets every remedy beside the baseline; teach against the model it began with
    before = base_model if setting.teach_all else None
    return treated_result(method, setting, student, spent, rows, before=before)


def teacher_rows(
    method: str,
    prefix: str,
    asked: list[Example],
    answered: list[Example | None],
    kept: str = "agreed",
) -> list[dict]:
    """How the teacher did on these questions: `{prefix}_accuracy` by group and direction (its
    kept answers judged afterwards against the truth) and `{prefix}_{kept}` (kept at all)."""
    rows = []
    for group in OTHER_DIRECTION:
        for direction in ("same", "reverse"):
            judged = [
                (q.fact, starts_with(a.completion, q.completion))
                for q, a in zip(asked, answered, strict=True)
                if a is not None and q.group == group and q.sense == direction
            ]
            if judged:
                facts, right = zip(*judged, strict=True)
                metric = f"{prefix}_accuracy"
                rows.append(proportion_row(method, group, direction, metric, right, facts))
    if answered:
        agreed = [a is not None for a in answered]
        about = [q.fact for q in asked]
        rows.append(proportion_row(method, "treated", "all", f"{prefix}_{kept}", agreed, about))
    return rows


def apply(setting: Setting, method: str, kl: bool = False) -> Treatment:
    return study(setting, lesson(setting), method, kl)
