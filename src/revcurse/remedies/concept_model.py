"""concept_memory's model: a causal LM that reads, before its prompt, what a memory
addressed by concepts returns for the prompt's entity (revcurse.remedies.concept_memory
trains and asks it).

    revcurse compare --methods baseline,concept_memory
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F

from revcurse.config import check
from revcurse.lm.batching import IGNORE, Collate, Features, collate, right_padded
from revcurse.lm.scoring import split_prompt

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from revcurse.facts import Fact


Parts = Literal["tokens", "concepts", "pooled"]


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

    def index(self, entity: tuple[int, ...]) -> int:
        """An entity's place in `entities` (-1 for none, ())."""
        return self.entities.index(entity) if entity else -1

    def find(self, ids: Sequence[int]) -> tuple[int, ...]:
        """The longest entity `ids` contain, first from the left; () if none."""
        return self.locate(ids)[0]

    def locate(self, ids: Sequence[int]) -> tuple[tuple[int, ...], int]:
        """`find`'s entity and where in `ids` it starts; ((), 0) if none."""
        text = tuple(ids)
        for entity in self.entities:
            n = len(entity)
            for i in range(len(text) - n + 1):
                if text[i : i + n] == entity:
                    return entity, i
        return (), 0


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
        subjects, answers = right_padded([a for a, _ in pairs]), right_padded([b for _, b in pairs])
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
        batch["query_ids"], batch["query_mask"] = right_padded(queries)
        batch["own_ids"], batch["own_mask"] = right_padded(owns)
        return batch

    return collate_fn
