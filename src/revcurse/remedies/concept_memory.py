"""Item 4 of the essay: attention that reaches concepts, not only tokens (`concept_memory`).

    revcurse compare --methods baseline,concept_memory

A causal LM reads one more position before its prompt: the concept a memory returns for the
entity its prompt names. An entity's concept is one vector whether the entity is a subject
or an object (its tokens' concept embeddings, pooled: the consistent binding Wang & Sun 2025
find missing in transformers), and the memory keeps each fact the training text states as a
pair of concepts, addressed by either side: asked with one, it returns the other, as a
Hebbian (Hopfield) association does. So a fact read only as "A is B" can answer "who is B?"
with A's concept; the model has to say a concept's name, a skill it learns from every entity
of its training text (`naming`: the entity alone, its concept in the memory's position).

It trains from the baseline's start weights, for the baseline's steps, on the one-way facts
in their trained direction only (a test checks the corpus). The memory is read with the
concepts the model learns (the pairs' spans are kept, their concepts computed afresh), so
the model learns both what a concept is and how to name it; it is written, not trained: a
pair enters it when the training text states it.

Limits: entities are found by the world's lexicon (every fact's two sides, longest match);
the memory holds every pair stated (a datastore that grows with the facts); a prompt that
names no known entity reads an empty concept.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F

from revcurse.config import check
from revcurse.evaluate import EvalConfig
from revcurse.facts import Example, Fact
from revcurse.lm.batching import IGNORE, Collate, Features, collate, encode, spans
from revcurse.lm.causal import split_prompt
from revcurse.lm.hooks import stream_of
from revcurse.lm.models import load_checkpoint, save_checkpoint
from revcurse.remedies.setting import Setting, Treatment
from revcurse.remedies.targets import cell_rows, hits

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


Parts = Literal["tokens", "concepts", "pooled"]
MEMORY = "concept_memory"  # a kept model's own files: MEMORY.safetensors, MEMORY.json


@dataclass
class ConceptMemoryConfig:
    # Each entity alone once is a quarter of the tiny world's corpus but 4% of Berglund's 30
    # phrasings a fact: there its never-said names came out half copied, half remembered
    naming: float = 0.25
    """share of the corpus that is each entity of the training text alone (say the concept
    in the memory), repeated to about that share; 0: none"""
    symmetric: bool = True
    """a stated pair answers from either side; off: from its subject only (the control)"""
    temperature: float = 20.0
    """sharpness of the memory's softmax over cosine similarities of concepts"""
    # docs/concepts.md measures the three (make readme-concept): only the tokens are named
    # exactly; a single vector must be decoded into a name by weights that never said it
    parts: Parts = "tokens"
    """what a read returns: tokens (the entity's tokens, embedded as the LM embeds them),
    concepts (their concept embeddings) or pooled (its one concept vector)"""

    def __post_init__(self) -> None:
        check(self.temperature > 0, "temperature", f"must be positive, got {self.temperature}")
        check(0 <= self.naming < 1, "naming", f"must be in [0, 1), got {self.naming}")


@dataclass(frozen=True)
class Lexicon:
    """The world's entities as token sequences: where a text names one (longest match)."""

    entities: tuple[tuple[int, ...], ...]  # longest first

    @classmethod
    def of(cls, tokenizer: PreTrainedTokenizerBase, facts: Sequence[Fact]) -> Lexicon:
        names = sorted({side for f in facts for side in (f.a, f.b)})
        ids = {tuple(tokenizer(n, add_special_tokens=False).input_ids) for n in names}
        return cls(tuple(sorted(ids, key=lambda e: (-len(e), e))))

    @property
    def span(self) -> int:
        """Tokens of its longest entity: the memory's positions, before every prompt."""
        return len(self.entities[0]) if self.entities else 1

    def find(self, ids: Sequence[int]) -> tuple[int, ...]:
        """The longest entity `ids` contain, first from the left; () if none."""
        text = tuple(ids)
        for entity in self.entities:
            n = len(entity)
            if any(text[i : i + n] == entity for i in range(len(text) - n + 1)):
                return entity
        return ()


def padded(rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) of token rows, right-padded with 0 (an empty row: all mask 0)."""
    width = max([1, *map(len, rows)])
    ids = torch.tensor([[*r, *[0] * (width - len(r))] for r in rows], dtype=torch.long)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return ids, mask


class ConceptMemoryModel(torch.nn.Module):
    """A causal LM whose first position is what the concept memory returns for the prompt's
    entity (a naming row, whose prompt names none: its answer's own concept)."""

    subject_ids: torch.Tensor  # the stated pairs' spans (buffers: saved with the weights)
    subject_mask: torch.Tensor
    answer_ids: torch.Tensor
    answer_mask: torch.Tensor

    def __init__(
        self,
        lm: PreTrainedModel,
        pairs: Sequence[tuple[tuple[int, ...], tuple[int, ...]]],
        config: ConceptMemoryConfig,
        span: int,
    ) -> None:
        super().__init__()
        self.lm, self.config, self.span = lm, config, span  # span: the lexicon's
        width = lm.get_input_embeddings().embedding_dim
        self.concepts = torch.nn.Embedding(lm.get_input_embeddings().num_embeddings, width)
        self.to_stream = torch.nn.Linear(width, width, bias=False)  # concepts, pooled: to the LM
        subjects, answers = padded([a for a, _ in pairs]), padded([b for _, b in pairs])
        self.register_buffer("subject_ids", subjects[0])
        self.register_buffer("subject_mask", subjects[1])
        self.register_buffer("answer_ids", answers[0])
        self.register_buffer("answer_mask", answers[1])

    def concept(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Unit vectors: each span's concept embeddings, averaged (0 for an empty span)."""
        summed = (self.concepts(ids) * mask.unsqueeze(-1)).sum(1)
        return F.normalize(summed / mask.sum(1, keepdim=True).clamp(min=1), dim=-1)

    def parts(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(spans, self.span, width): what the memory's positions hold of a concept (`parts`): its
        tokens as the LM embeds them, in order (attention reads them as it reads a context),
        their concept embeddings, or its pooled concept alone; zeros past its end."""
        if self.config.parts == "pooled":
            pooled = self.to_stream(self.concept(ids, mask)).unsqueeze(1)
            return F.pad(pooled, (0, 0, 0, self.span - 1))
        width = ids.shape[1]
        ids = F.pad(ids, (0, self.span - width))
        mask = F.pad(mask, (0, self.span - width)).unsqueeze(-1)
        if self.config.parts == "concepts":
            return self.to_stream(self.concepts(ids)) * mask
        return self.lm.get_input_embeddings()(ids) * mask

    def read(self, query: torch.Tensor) -> torch.Tensor:
        """The memory's answer to each query concept: the other sides' parts of the stated
        pairs, weighted by a softmax over how alike the query is to the side it addresses."""
        subjects = self.concept(self.subject_ids, self.subject_mask)
        answers = self.concept(self.answer_ids, self.answer_mask)
        subject_parts = self.parts(self.subject_ids, self.subject_mask)
        answer_parts = self.parts(self.answer_ids, self.answer_mask)
        keys, values = subjects, answer_parts
        if self.config.symmetric:
            keys = torch.cat([subjects, answers])
            values = torch.cat([answer_parts, subject_parts])
        weights = torch.softmax(self.config.temperature * query @ keys.T, dim=-1)
        return torch.einsum("qp,pld->qld", weights, values)

    def memory_positions(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(rows, self.span, width): the positions every row reads before its prompt."""
        query = self.concept(batch["query_ids"], batch["query_mask"])
        own = self.parts(batch["own_ids"], batch["own_mask"])
        asks = batch["query_mask"].any(1)[:, None, None]
        return torch.where(asks, self.read(query), own)

    def inputs_embeds(self, batch: dict[str, torch.Tensor], blank: bool = False) -> torch.Tensor:
        """What the LM reads: the batch's first `span` positions (`concept_collate` leaves
        them) hold what the memory returns (zeros if `blank`: the control of where an answer
        comes from), its tokens' embeddings follow."""
        memory = self.memory_positions(batch)
        if blank:
            memory = torch.zeros_like(memory)
        tokens = self.lm.get_input_embeddings()(batch["input_ids"][:, self.span :])
        return torch.cat([memory.to(tokens.dtype), tokens], 1)

    def forward(self, blank: bool = False, **batch: torch.Tensor) -> Any:
        """The LM's output on `inputs_embeds` (with its loss when `labels` are given)."""
        return self.lm(
            inputs_embeds=self.inputs_embeds(batch, blank),
            attention_mask=batch["attention_mask"],
            labels=batch.get("labels"),
        )


def concept_collate(pad_id: int, lexicon: Lexicon) -> Collate:
    """The causal LM's batch after `lexicon.span` positions for the memory's read (attended, never
    predicted: they count as tokens, as they cost), plus each row's query (the entity its
    prompt names) and its own entity (the one its completion names: a naming row's)."""

    def collate_fn(features: Features) -> dict[str, torch.Tensor]:
        batch = collate(features, pad_id)
        before = torch.ones(len(features), lexicon.span, dtype=torch.long)
        batch["input_ids"] = torch.cat([before * pad_id, batch["input_ids"]], 1)
        batch["attention_mask"] = torch.cat([before, batch["attention_mask"]], 1)
        batch["labels"] = torch.cat([before * IGNORE, batch["labels"]], 1)
        queries, owns = [], []
        for ids, labels in features:
            prompt, completion = split_prompt(ids, labels)
            queries.append(lexicon.find(prompt))
            owns.append(lexicon.find(completion))
        batch["query_ids"], batch["query_mask"] = padded(queries)
        batch["own_ids"], batch["own_mask"] = padded(owns)
        return batch

    return collate_fn


@dataclass
class ConceptLM:
    """The evaluator's interface (revcurse.lm.causal.LanguageModel) for a concept-memory LM."""

    model: ConceptMemoryModel
    tokenizer: PreTrainedTokenizerBase
    lexicon: Lexicon
    batch_size: int = 256
    blank: bool = False  # the memory's positions zeroed (blanked_rows)

    def _logits(self, features: Features) -> list[torch.Tensor]:
        """Each row's logits over its own tokens (the memory's position dropped)."""
        self.model.eval()
        make = concept_collate(self.tokenizer.pad_token_id, self.lexicon)
        out = []
        with torch.no_grad():
            for part in spans(len(features), self.batch_size):
                rows = features[part]
                output = self.model(blank=self.blank, **make(rows))
                logits = output.logits[:, self.lexicon.span :].float()
                out += [logits[i, : len(ids)] for i, (ids, _) in enumerate(rows)]
        return out

    def logprobs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        features = encode(self.tokenizer, pairs, eos=False)
        scores = []
        for (_, labels), logits in zip(features, self._logits(features), strict=True):
            logprobs = torch.log_softmax(logits[:-1], -1)
            targets = torch.tensor(labels[1:])
            scored = targets != IGNORE
            picked = logprobs[scored].gather(-1, targets[scored].unsqueeze(-1))
            scores.append(picked.sum().item())
        return scores

    @torch.no_grad()
    def sites(self, features: Features) -> dict[str, torch.Tensor]:
        """The vectors revcurse.analysis.roles compares, at the rows' own positions:
        `concept` (each token's concept embedding: their mean over an entity points where
        its concept does) and the LM's residual stream, layer0.., the memory's read before."""
        self.model.eval()
        batch = concept_collate(self.tokenizer.pad_token_id, self.lexicon)(features)
        stream = stream_of(self.model.lm, self.model.inputs_embeds(batch), batch["attention_mask"])
        span = self.lexicon.span
        sites = {"concept": self.model.concepts(batch["input_ids"][:, span:])}
        return sites | {f"layer{i}": s[:, span:].float() for i, s in enumerate(stream)}

    def save(self, folder: Path) -> None:
        """The LM as a transformers folder, the memory and concepts beside it (MEMORY)."""
        from safetensors.torch import save_file

        save_checkpoint(self.model.lm, self.tokenizer, folder)
        own = {k: v for k, v in self.model.state_dict().items() if not k.startswith("lm.")}
        save_file(
            {k: v.contiguous() for k, v in own.items()}, str(folder / f"{MEMORY}.safetensors")
        )
        about = {"config": asdict(self.model.config), "span": self.model.span}
        about["entities"] = [list(e) for e in self.lexicon.entities]
        (folder / f"{MEMORY}.json").write_text(json.dumps(about), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> ConceptLM:
        """A model `save` kept."""
        from safetensors.torch import load_file

        lm, tokenizer = load_checkpoint(folder)
        about = json.loads((folder / f"{MEMORY}.json").read_text(encoding="utf-8"))
        config = ConceptMemoryConfig(**about["config"])
        model = ConceptMemoryModel(lm, [], config, about["span"])
        own = load_file(str(folder / f"{MEMORY}.safetensors"))
        for name in ("subject_ids", "subject_mask", "answer_ids", "answer_mask"):
            setattr(model, name, own.pop(name))  # the kept pairs' shapes, not an empty memory's
        model.load_state_dict(own, strict=False)  # the LM's weights are loaded already
        lexicon = Lexicon(tuple(tuple(e) for e in about["entities"]))
        return cls(model.eval(), tokenizer, lexicon)

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        """Greedy answers, each its first line; the query is the prompt's entity."""
        prompt_ids = self.tokenizer(list(prompts)).input_ids
        rows = [list(ids) for ids in prompt_ids]
        active = list(range(len(rows)))  # the rows whose answer has not ended
        for _ in range(max_new_tokens):
            if not active:
                break
            # every token after the prompt counts as completion: the query stays the prompt's
            features = [
                (rows[i], [IGNORE] * len(prompt_ids[i]) + rows[i][len(prompt_ids[i]) :])
                for i in active
            ]
            going = []
            for i, logits in zip(active, self._logits(features), strict=True):
                token = int(logits[-1].argmax())
                rows[i].append(token)
                text = self.tokenizer.decode(rows[i][len(prompt_ids[i]) :])
                # ended: </s>, or a line break after some text
                if token != self.tokenizer.eos_token_id and "\n" not in text.lstrip():
                    going.append(i)
            active = going
        answers = []
        for row, p in zip(rows, prompt_ids, strict=True):
            text = self.tokenizer.decode(row[len(p) :], skip_special_tokens=True)
            answers.append(text.lstrip("\n").split("\n")[0])
        return answers


def blanked_rows(
    method: str, lm: ConceptLM, examples: Sequence[Example], config: EvalConfig
) -> list[dict]:
    """Where an answer comes from: exact match with the memory's positions blanked (zeros),
    by group and direction. What stays right is in the weights; what falls came from the
    memory."""
    right = hits(replace(lm, blank=True), examples, config)
    return cell_rows(method, "exact_match_memory_blanked", examples, right)


def stated_pairs(
    examples: Sequence[Example], tokenizer: PreTrainedTokenizerBase, lexicon: Lexicon
) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(subject, answer) of every training example whose prompt and completion each name an
    entity: what the training text states, in the direction it states it."""
    pairs: dict[tuple[tuple[int, ...], tuple[int, ...]], None] = {}
    for e in examples:
        query = lexicon.find(tokenizer(e.prompt).input_ids)
        answer = lexicon.find(tokenizer(e.completion, add_special_tokens=False).input_ids)
        if query and answer:
            pairs[query, answer] = None
    return list(pairs)


def naming_examples(
    examples: Sequence[Example], tokenizer: PreTrainedTokenizerBase, lexicon: Lexicon
) -> list[Example]:
    """Each entity the training text names, alone: an empty prompt, the entity as its
    completion (its concept is the memory's position: the model learns to say it)."""
    named = {}
    for e in examples:
        for text in (e.prompt, e.completion):
            entity = lexicon.find(tokenizer(text, add_special_tokens=False).input_ids)
            if entity:
                named[tokenizer.decode(entity)] = e
    return [
        replace(e, prompt="", completion=" " + name + ".", template=-1)
        for name, e in sorted(named.items())
    ]


def apply(setting: Setting, method: str) -> Treatment:
    config = setting.remedies.concept_memory
    tokenizer = setting.tokenizer
    lexicon = Lexicon.of(tokenizer, setting.facts)
    pairs = stated_pairs(setting.train_examples, tokenizer, lexicon)
    naming = naming_examples(setting.train_examples, tokenizer, lexicon) if config.naming else []
    if naming:  # repeated to about their share of the corpus
        share = config.naming / (1 - config.naming) * len(setting.train_examples) / len(naming)
        naming *= max(1, round(share))
    torch.manual_seed(setting.seed)  # the concept embeddings and the memory's projection
    model = ConceptMemoryModel(copy.deepcopy(setting.start), pairs, config, lexicon.span)

    def lm_of(trained: Any) -> ConceptLM:
        return ConceptLM(trained, tokenizer, lexicon, setting.eval.batch_size)

    trained, cost = setting.train_model(
        extra=naming,
        model=model,
        collate_fn=concept_collate(tokenizer.pad_token_id, lexicon),
        lm_of=lm_of,
        reading=False,  # the memory answers; the reading documents name no known entity
    )
    lm = lm_of(trained)
    rows = blanked_rows(method, lm, setting.test_examples, setting.eval)
    return Treatment(lm, cost, rows=rows)
