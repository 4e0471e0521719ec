"""Item 4 of the essay, learned: a concept model that infers the reverse (`concept_jepa`).

    revcurse compare --methods baseline,concept_jepa,concept_jepa_memory

Wang & Sun (ICLR 2026, *Is the Reversal Curse a Binding Problem?*) break the curse with a
model whose attention reaches concepts and which is never told a fact's reverse. Built here
after their design, small enough for the tiny world:
- **one concept per entity, whatever its role** (consistent binding): an entity's tokens,
  read alone by one transformer layer, mean-pooled (`encoder: patch`); or a learned slot
  keyed by the entity, the memory-layer variant (`encoder: memory`);
- **a causal predictor** reads the prompt's tokens with its entity's concept in the entity's
  place and predicts the answer's concept (its last position, RMS-normalised);
- **a contrastive loss** (JEPA): the prediction's dot product with the batch's answer
  concepts, cross-entropy toward its own. No token is predicted; it answers with the
  nearest concept of all the world's entities, said as its name.

It trains on the facts' training text as it is (the `both` group both ways, one-way facts in
their one direction; a test checks that no reverse of a one-way fact is among its pairs),
for the baseline's steps and batch. Nothing writes a fact both ways: the reverse can only
come from what the `both` group teaches, a map back over concepts. Ablations (each a
registry name): `concept_jepa_tokens` predicts the answer's tokens from the prediction
instead (no answer concept), `concept_jepa_separate` encodes subjects and answers with two
encoders (inconsistent binding). concept_memory is the wired reference: its datastore
answers from either side by its write rule.

Our differences from Wang & Sun: their predictor reads concepts only ([h][r][mask][t],
no positions), ours the template's words; their entities and relations are abstract
tokens, 80,000 entities and 6 relations, trained for millions of steps; ours 600 entities
of one relation named in words, for the tiny baseline's 400 steps.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F

from revcurse.config import check
from revcurse.lm.batching import IGNORE, Collate, Features, collate, right_padded, spans
from revcurse.lm.scoring import split_prompt
from revcurse.remedies.concept_model import Lexicon
from revcurse.remedies.setting import Setting, Treatment

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Encoder = Literal["patch", "memory"]
Binding = Literal["consistent", "separate"]
Objective = Literal["contrastive", "tokens"]
JEPA = "concept_jepa"  # a kept model's own files: JEPA.safetensors, JEPA.json


@dataclass
class ConceptJepaConfig:
    width: int = 128
    """size of a concept and of the predictor's stream"""
    encoder: Encoder = "patch"
    """patch: an entity's tokens read alone by one transformer layer; memory: a learned slot
    for each entity of the world, keyed by its tokens"""
    binding: Binding = "consistent"
    """consistent: one encoder for subjects and answers; separate: one each (the ablation)"""
    loss: Objective = "contrastive"
    """contrastive: toward the answer's concept among the batch's; tokens: the answer's tokens
    predicted from the prediction (the ablation)"""
    concept_at: Literal["slot", "end"] = "end"
    """where the predictor reads the prompt's entity: in its place, or after the prompt (a
    placeholder in its place), the position the prediction is read at"""
    predictor_layers: int = 1
    """causal transformer layers over the prompt"""
    both_ways: bool = True
    """train the `both` facts both ways; off: in their a2b direction only (the control: no
    fact is then seen both ways)"""

    def __post_init__(self) -> None:
        for name in ("width", "predictor_layers"):
            value = getattr(self, name)
            check(value >= 1, name, f"must be at least 1, got {value}")
        check(self.width % HEADS == 0, "width", f"must be a multiple of {HEADS}, got {self.width}")


HEADS = 4  # attention heads of the encoder's and the predictor's layers


def layer(width: int) -> torch.nn.TransformerEncoderLayer:
    return torch.nn.TransformerEncoderLayer(
        width, HEADS, 2 * width, dropout=0.0, batch_first=True, norm_first=True
    )


class PatchEncoder(torch.nn.Module):
    """Concepts of entities from their tokens alone (attention inside the entity only)."""

    def __init__(self, tokens: torch.nn.Embedding, span: int) -> None:
        super().__init__()
        self.tokens, width = tokens, tokens.embedding_dim
        self.position = torch.nn.Embedding(span, width)
        self.layer = layer(width)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.tokens(ids) + self.position(torch.arange(ids.shape[1]))
        h = self.layer(x, src_key_padding_mask=mask == 0)
        return (h * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)


class MemoryEncoder(torch.nn.Module):
    """Concepts of entities as learned values, one slot per entity (keyed by its index)."""

    def __init__(self, entities: int, width: int) -> None:
        super().__init__()
        self.values = torch.nn.Embedding(entities, width)

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return self.values(index)


class ConceptJepa(torch.nn.Module):
    """Encoders, predictor and (for `loss: tokens`) a head that says a prediction's tokens."""

    entity_ids: torch.Tensor  # the lexicon's entities (buffers), in its order
    entity_mask: torch.Tensor

    def __init__(
        self, vocab: int, lexicon: Lexicon, config: ConceptJepaConfig, max_len: int
    ) -> None:
        super().__init__()
        self.config, self.span, width = config, lexicon.span, config.width
        ids, mask = right_padded(lexicon.entities)
        self.register_buffer("entity_ids", ids)
        self.register_buffer("entity_mask", mask)
        self.tokens = torch.nn.Embedding(vocab, width)
        self.subject_encoder = self.encoder(len(lexicon.entities))
        separate = config.binding == "separate"
        self.object_encoder = self.encoder(len(lexicon.entities)) if separate else None
        self.position = torch.nn.Embedding(max_len + 1, width)
        self.placeholder = torch.nn.Parameter(torch.randn(width))  # "an entity" in a prompt
        self.predictor = torch.nn.TransformerEncoder(
            layer(width), config.predictor_layers, enable_nested_tensor=False
        )
        self.head = None  # the answer's tokens and an end, from one prediction
        if config.loss == "tokens":
            self.head = torch.nn.Linear(width, (self.span + 1) * vocab)

    def encoder(self, entities: int) -> torch.nn.Module:
        if self.config.encoder == "memory":
            return MemoryEncoder(entities, self.config.width)
        return PatchEncoder(self.tokens, self.span)

    def concepts(self, index: torch.Tensor, role: str = "subject") -> torch.Tensor:
        """(n, width): the concepts of these entities (lexicon indices) in this role."""
        encoder = self.subject_encoder
        if role == "object" and self.object_encoder is not None:
            encoder = self.object_encoder
        if isinstance(encoder, MemoryEncoder):
            return F.normalize(encoder(index), dim=-1)
        return F.normalize(encoder(self.entity_ids[index], self.entity_mask[index]), dim=-1)

    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(rows, width): each prompt's predicted answer concept, its entity's concept read
        in its place (zeros where it names none)."""
        ids, mask, query = batch["prompt_ids"], batch["prompt_mask"], batch["query"]
        x = self.tokens(ids)
        # a unit concept, scaled to a token embedding's norm (N(0, 1) a coordinate)
        concept = (
            self.concepts(query.clamp(min=0)) * (query >= 0).unsqueeze(-1) * x.shape[-1] ** 0.5
        )
        rows = torch.arange(len(ids))
        slot = torch.zeros_like(mask, dtype=torch.bool)
        slot[rows, batch["slot"]] = query >= 0
        if self.config.concept_at == "end":  # the prompt's entity a placeholder, its concept last
            x = torch.where(slot.unsqueeze(-1), self.placeholder.expand_as(x), x)
            ends = mask.sum(1)
            x, mask = F.pad(x, (0, 0, 0, 1)), F.pad(mask, (0, 1))
            x[rows, ends], mask[rows, ends] = concept, 1
        else:
            x = torch.where(slot.unsqueeze(-1), concept.unsqueeze(1).expand_as(x), x)
        x = x + self.position(torch.arange(x.shape[1]))
        causal = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).triu(1)
        h = self.predictor(x, mask=causal, src_key_padding_mask=mask == 0, is_causal=True)
        return h[rows, mask.sum(1) - 1]  # its norm is the softmax's sharpness, its own to learn

    def token_logits(self, prediction: torch.Tensor) -> torch.Tensor:
        assert self.head is not None
        return self.head(prediction).view(len(prediction), self.span + 1, -1)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        asked = (batch["query"] >= 0) & (batch["answer"] >= 0)
        prediction = self.predict(batch)[asked]
        answer = batch["answer"][asked]
        if self.head is not None:
            targets = batch["answer_tokens"][asked]
            return F.cross_entropy(self.token_logits(prediction).flatten(0, 1), targets.flatten())
        # the batch's distinct answers are the candidates (in-batch negatives)
        candidates, own = torch.unique(answer, return_inverse=True)
        logits = prediction @ self.concepts(candidates, "object").T
        return F.cross_entropy(logits, own)


def slotted(ids: Sequence[int], lexicon: Lexicon) -> tuple[list[int], int, int]:
    """A prompt's ids with its entity's tokens cut to one slot (pad id 0 there), the slot's
    position and the entity's lexicon index (-1, slot 0: it names none)."""
    entity, start = lexicon.locate(ids)
    if not entity:
        return list(ids), 0, -1
    return [*ids[:start], 0, *ids[start + len(entity) :]], start, lexicon.index(entity)


def prompt_batch(cut: Sequence[tuple[list[int], int, int]]) -> dict[str, torch.Tensor]:
    """The predictor's batch of prompts `slotted` cut."""
    ids, mask = right_padded([c[0] for c in cut])
    slot, query = torch.tensor([c[1] for c in cut]), torch.tensor([c[2] for c in cut])
    return {"prompt_ids": ids, "prompt_mask": mask, "slot": slot, "query": query}


def jepa_collate(pad_id: int, eos_id: int, lexicon: Lexicon) -> Collate:
    """Each row's prompt with its entity's slot, its answer (the entity its completion
    names; -1 if none) and that answer's tokens and an end (for `loss: tokens`); the causal
    batch's attention mask counts the tokens, as the baseline's does."""

    # every epoch reads the same rows: each prompt cut and each answer found once
    find = functools.cache(lexicon.find)
    cut = functools.cache(lambda prompt: slotted(prompt, lexicon))

    def collate_fn(features: Features) -> dict[str, torch.Tensor]:
        split = [split_prompt(ids, labels) for ids, labels in features]
        batch = prompt_batch([cut(prompt) for prompt, _ in split])
        answers = [find(tuple(completion)) for _, completion in split]
        batch["answer"] = torch.tensor([lexicon.index(a) for a in answers])
        said = [[*a, eos_id, *[IGNORE] * (lexicon.span - len(a))] for a in answers]
        batch["answer_tokens"] = torch.tensor(said)
        batch["attention_mask"] = collate(features, pad_id)["attention_mask"]
        return batch

    return collate_fn


@dataclass
class ConceptJepaLM:
    """The evaluator's interface (revcurse.lm.causal.LanguageModel): the nearest concept's
    name, or (`loss: tokens`) the tokens the head says."""

    model: ConceptJepa
    tokenizer: PreTrainedTokenizerBase
    lexicon: Lexicon
    batch_size: int = 256

    @torch.no_grad()
    def predictions(self, prompts: Sequence[str]) -> torch.Tensor:
        self.model.eval()
        ids = self.tokenizer(list(prompts)).input_ids
        cut = [slotted(row, self.lexicon) for row in ids]
        parts = [self.model.predict(prompt_batch(cut[s])) for s in self.batches(ids)]
        return torch.cat(parts) if parts else torch.zeros(0, self.model.config.width)

    def save(self, folder: Path) -> None:
        """The tokenizer, the weights (JEPA.safetensors) and what rebuilds the model (JEPA.json)."""
        from safetensors.torch import save_model  # the encoders share the token embedding

        self.tokenizer.save_pretrained(folder)
        save_model(self.model, str(folder / f"{JEPA}.safetensors"))
        about = {
            "config": asdict(self.model.config),
            "vocab": self.model.tokens.num_embeddings,
            "max_len": self.model.position.num_embeddings - 1,
            "entities": [list(e) for e in self.lexicon.entities],
        }
        (folder / f"{JEPA}.json").write_text(json.dumps(about), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> ConceptJepaLM:
        """A model `save` kept."""
        from safetensors.torch import load_model
        from transformers import AutoTokenizer

        about = json.loads((folder / f"{JEPA}.json").read_text(encoding="utf-8"))
        lexicon = Lexicon(tuple(tuple(e) for e in about["entities"]))
        config = ConceptJepaConfig(**about["config"])
        model = ConceptJepa(about["vocab"], lexicon, config, about["max_len"])
        load_model(model, str(folder / f"{JEPA}.safetensors"))
        return cls(model.eval(), AutoTokenizer.from_pretrained(folder), lexicon)

    @torch.no_grad()
    def sites(self, features: Features) -> dict[str, torch.Tensor]:
        """What revcurse.analysis.roles compares, at the rows' own positions: `concept`, each
        entity's concept at its tokens (the subject encoder's in the prompt, the answer's
        in the completion), zeros elsewhere."""
        self.model.eval()
        width = max(len(ids) for ids, _ in features)
        out = torch.zeros(len(features), width, self.model.config.width)
        for row, (ids, labels) in enumerate(features):
            prompt, completion = split_prompt(ids, labels)
            for start, tokens, role in (
                (0, prompt, "subject"),
                (len(prompt), completion, "object"),
            ):
                entity, at = self.lexicon.locate(tokens)
                if entity:
                    index = torch.tensor([self.lexicon.index(entity)])
                    concept = self.model.concepts(index, role)[0]
                    out[row, start + at : start + at + len(entity)] = concept
        return {"concept": out}

    def batches(self, rows: Sequence[object]) -> list[slice]:
        return spans(len(rows), self.batch_size)

    @torch.no_grad()
    def entity_logprobs(self, prediction: torch.Tensor) -> torch.Tensor:
        """(rows, entities): log-probabilities of every entity of the world as the answer."""
        everything = torch.arange(len(self.lexicon.entities))
        return torch.log_softmax(prediction @ self.model.concepts(everything, "object").T, -1)

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        prediction = self.predictions(prompts)
        if self.model.head is not None:
            said = self.model.token_logits(prediction).argmax(-1).tolist()
            end = self.tokenizer.eos_token_id
            tokens = [row[: row.index(end)] if end in row else row for row in said]
        else:
            tokens = [self.lexicon.entities[i] for i in self.entity_logprobs(prediction).argmax(-1)]
        return [" " + self.tokenizer.decode(t, skip_special_tokens=True) + "." for t in tokens]

    def logprobs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """The answer entity's log-probability (a completion that names none: -1e4). Each
        distinct prompt is predicted once (the evaluator asks it with dozens of answers)."""
        prompts = list(dict.fromkeys(p for p, _ in pairs))
        at = {p: i for i, p in enumerate(prompts)}
        prediction = self.predictions(prompts)
        completions = self.tokenizer([c for _, c in pairs], add_special_tokens=False).input_ids
        answers = [self.lexicon.find(ids) for ids in completions]
        if self.model.head is None:
            table = self.entity_logprobs(prediction)
            return [
                table[at[p], self.lexicon.index(a)].item() if a else -1e4
                for (p, _), a in zip(pairs, answers, strict=True)
            ]

        @functools.cache
        def said(row: int) -> torch.Tensor:  # (span + 1, vocab): one prompt's, when asked
            with torch.no_grad():
                return torch.log_softmax(self.model.token_logits(prediction[row : row + 1])[0], -1)

        return [
            said(at[p])[range(len(a)), list(a)].sum().item() if a else -1e4
            for (p, _), a in zip(pairs, answers, strict=True)
        ]


# registry names: the model and its ablations, each a preset of the config's options
VARIANTS: dict[str, dict[str, Any]] = {
    "concept_jepa": {},
    "concept_jepa_memory": {"encoder": "memory"},
    "concept_jepa_tokens": {"loss": "tokens"},
    "concept_jepa_separate": {"binding": "separate"},
}


def apply(setting: Setting, method: str, **variant: Any) -> Treatment:
    config = replace(setting.remedies.concept_jepa, **variant)
    if not config.both_ways:
        kept = [e for e in setting.train_examples if (e.group, e.direction) != ("both", "b2a")]
        setting = replace(setting, train_examples=kept)
    tokenizer = setting.tokenizer
    lexicon = Lexicon.of(tokenizer, setting.facts)
    torch.manual_seed(setting.seed)
    model = ConceptJepa(len(tokenizer), lexicon, config, setting.tiny.max_len)
    collate_fn = jepa_collate(tokenizer.pad_token_id, tokenizer.eos_token_id, lexicon)

    def lm_of(trained: ConceptJepa) -> ConceptJepaLM:
        return ConceptJepaLM(trained, tokenizer, lexicon, setting.eval.batch_size)

    trained, cost = setting.train_model(
        model=model,
        collate_fn=collate_fn,
        loss_fn=lambda m, batch: m.loss(batch),  # type: ignore[operator]
        lm_of=lm_of,
        reading=False,  # the reading documents name no entity of the world
    )
    return Treatment(lm_of(trained), cost)
