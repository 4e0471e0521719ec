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
from typing import TYPE_CHECKING, Any

import torch

from revcurse.evaluate import EvalConfig
from revcurse.facts import Example
from revcurse.lm.batching import IGNORE, Features, encode, spans
from revcurse.lm.hooks import stream_of
from revcurse.lm.models import load_checkpoint, save_checkpoint
from revcurse.remedies.concept_model import (
    ConceptMemoryConfig,
    ConceptMemoryModel,
    Lexicon,
    concept_collate,
)
from revcurse.remedies.setting import Setting, Treatment
from revcurse.remedies.targets import cell_rows, hits

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

MEMORY = "concept_memory"  # a kept model's own files: MEMORY.safetensors, MEMORY.json


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

    @torch.no_grad()
    def memory_attention(self, prompts: Sequence[str]) -> torch.Tensor:
        """(prompts, layers): the share of attention (heads averaged) each prompt's last
        position gives the memory's positions, at every layer: how much the next token reads
        the memory rather than the prompt's tokens."""
        self.model.eval()
        lm, make = self.model.lm, concept_collate(self.tokenizer.pad_token_id, self.lexicon)
        shares, kind = [], lm.config._attn_implementation
        lm.set_attn_implementation("eager")  # sdpa returns no attention weights
        try:
            for part in spans(len(prompts), self.batch_size):
                ids = self.tokenizer(list(prompts[part])).input_ids
                batch = make([(row, [IGNORE] * len(row)) for row in ids])  # all prompt
                out = lm(
                    inputs_embeds=self.model.inputs_embeds(batch),
                    attention_mask=batch["attention_mask"],
                    output_attentions=True,
                )
                last = batch["attention_mask"].sum(1) - 1  # right-padded rows
                rows = torch.arange(len(ids))
                layers = [a[rows, :, last, : self.lexicon.span].sum(-1) for a in out.attentions]
                shares.append(torch.stack(layers, 1).mean(-1))
        finally:
            lm.set_attn_implementation(kind)
        return torch.cat(shares)

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
