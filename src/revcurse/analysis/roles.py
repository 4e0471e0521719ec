"""Is an entity one thing to the model, whether a sentence asks about it or answers with it?

    revcurse compare --methods baseline,concept_memory --keep-models baseline,concept_memory
    revcurse analyze runs/compare-20261206-180000   # metrics role_cosine_*, figure roles.png

Wang & Sun (2025) trace the reversal curse to binding: a transformer's representation of an
entity as a sentence's subject is not its representation as the object, so what training
on "A is B" writes about A-as-subject tells nothing about A-as-object. Measured on the
held-out phrasings of every fact, both directions: an entity's representation at a site
(the residual stream after a layer; a concept memory's `concept`) is the mean of its
tokens' vectors there, averaged over the phrasings that ask about it (subject: in the
question) and, apart, over those that answer with it (object: in the completion).
`role_cosine`: the cosine of the two, per entity (centred: the mean of all entities' vectors
at the site taken out); `role_cosine_other`: an entity as subject against another entity of
the same side (name or description) as object, the level of two different things there.
Layer 0 (the token embeddings) is the same in both roles by construction, as is a concept
memory's concept: the question is what the layers make of it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from rich.table import Table

from revcurse.facts import GROUPS, Example, Fact
from revcurse.lm.batching import IGNORE, collate, encode, spans, subject_span
from revcurse.lm.hooks import stream_of
from revcurse.stats import mean_row

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from revcurse.lm.batching import Features

# A model's vectors at each site, for a batch of (ids, labels) rows (right-padded, as
# batching.collate lays them out): site name -> (rows, positions, d)
Represent = Callable[["Features"], dict[str, torch.Tensor]]
# (group, site) -> (role cosines, cosines against another entity), one per entity
Cosines = dict[tuple[str, str], tuple[list[float], list[float]]]
# group -> site -> (mean role_cosine, mean role_cosine_other): roles.png's curves
Curves = dict[str, dict[str, tuple[float, float]]]
ROLES = ("subject", "object")


def residual_sites(model: PreTrainedModel) -> Represent:
    """A causal LM's residual stream: sites layer0 (embeddings) .. layerN."""

    def represent(features: Features) -> dict[str, torch.Tensor]:
        batch = collate(features, pad_id=0)  # padding sits after every real position
        ids = batch["input_ids"].to(model.device)
        stream = stream_of(
            model, model.get_input_embeddings()(ids), batch["attention_mask"].to(model.device)
        )
        return {f"layer{i}": s.float().cpu() for i, s in enumerate(stream)}

    return represent


def _roles(
    tokenizer: PreTrainedTokenizerBase, fact: Fact, example: Example, prompt_length: int
) -> list[tuple[str, str, tuple[int, int]]] | None:
    """(side, role, token span) of the fact's two entities in the encoded example, None when
    the phrasing does not name them verbatim (a user's template may inflect them)."""
    subject, answer = ("a", "b") if fact.a in example.prompt else ("b", "a")
    try:
        s0, s1 = subject_span(tokenizer, example.prompt, getattr(fact, subject))
        o0, o1 = subject_span(tokenizer, example.completion, getattr(fact, answer), special=False)
    except ValueError:
        return None
    return [
        (subject, "subject", (s0, s1)),
        (answer, "object", (prompt_length + o0, prompt_length + o1)),
    ]


@torch.no_grad()
def role_vectors(
    represent: Represent,
    tokenizer: PreTrainedTokenizerBase,
    facts: Sequence[Fact],
    examples: Sequence[Example],
    batch_size: int = 64,
) -> dict[tuple[int, str, str], dict[str, torch.Tensor]]:
    """(fact, side, role) -> site -> the entity's mean vector over the examples that give it
    that role."""
    encoded = encode(tokenizer, [(e.prompt, e.completion) for e in examples], eos=False)
    sums: dict[tuple[int, str, str], dict[str, torch.Tensor]] = defaultdict(dict)
    counts: dict[tuple[int, str, str], int] = defaultdict(int)
    for part in spans(len(examples), batch_size):
        rows = encoded[part]
        sites = represent(rows)
        for i, (example, (_, labels)) in enumerate(zip(examples[part], rows, strict=True)):
            fact = facts[example.fact]
            found = _roles(tokenizer, fact, example, labels.count(IGNORE))
            for side, role, (start, end) in found or []:
                key = (example.fact, side, role)
                counts[key] += 1
                for site, vectors in sites.items():
                    mean = vectors[i, start:end].mean(0)
                    sums[key][site] = sums[key].get(site, 0) + mean
    return {key: {s: v / counts[key] for s, v in by_site.items()} for key, by_site in sums.items()}


def role_cosines(
    vectors: dict[tuple[int, str, str], dict[str, torch.Tensor]], facts: Sequence[Fact]
) -> Cosines:
    """(group, site) -> (each entity's subject-object cosine, each entity's subject against
    the next entity's (same group and side) object) over the entities seen in both roles.
    Centred: what every entity's vectors share at a site (their mean: the position, the
    sentence's frame) is taken out first, so it does not count as likeness."""
    out: dict[tuple[str, str], tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    sites = {site for by_site in vectors.values() for site in by_site}
    shared = {s: torch.stack([v[s] for v in vectors.values()]).mean(0) for s in sites}
    vectors = {k: {s: v - shared[s] for s, v in by_site.items()} for k, by_site in vectors.items()}
    for group in GROUPS:
        for side in ("a", "b"):
            both = [
                f
                for f, fact in enumerate(facts)
                if fact.group == group and all((f, side, r) in vectors for r in ROLES)
            ]
            for f, other in zip(both, both[1:] + both[:1], strict=True):
                subject, obj = vectors[f, side, "subject"], vectors[f, side, "object"]
                for site, v in subject.items():
                    own, others = out[group, site]
                    own.append(F.cosine_similarity(v, obj[site], dim=0).item())
                    if other != f:
                        unlike = vectors[other, side, "object"][site]
                        others.append(F.cosine_similarity(v, unlike, dim=0).item())
    return dict(out)


def role_rows(method: str, cosines: Cosines) -> tuple[list[dict], Curves]:
    """Rows role_cosine_<site> and role_cosine_other_<site> (mean over entities with a t
    interval), per group, and the curves of roles.png."""
    rows: list[dict] = []
    curves: Curves = {}
    for (group, site), (own, other) in cosines.items():
        rows.append(mean_row(method, group, "roles", f"role_cosine_{site}", own))
        if other:
            rows.append(mean_row(method, group, "roles", f"role_cosine_other_{site}", other))
        level = sum(other) / len(other) if other else float("nan")
        curves.setdefault(group, {})[site] = (sum(own) / len(own), level)
    return rows, curves


def roles_table(rows: Sequence[dict], title: str) -> Table:
    """One line per model and group: role_cosine / role_cosine_other at every site."""
    table = Table(title=title, title_justify="left")
    sites = list(dict.fromkeys(r["metric"].removeprefix("role_cosine_") for r in rows))
    sites = sorted((s for s in sites if not s.startswith("other_")), key=lambda s: s != "concept")
    for name in ("model", "group", *sites):
        table.add_column(name, justify="left" if name in ("model", "group") else "right")
    value = {(r["method"], r["group"], r["metric"]): r["value"] for r in rows}
    for method in dict.fromkeys(r["method"] for r in rows):
        for group in GROUPS:
            if not any((method, group, f"role_cosine_{site}") in value for site in sites):
                continue
            cells = []
            for site in sites:
                own = value.get((method, group, f"role_cosine_{site}"))
                other = value.get((method, group, f"role_cosine_other_{site}"))
                cells.append(
                    "-"
                    if own is None
                    else f"{own:.2f}" + ("" if other is None else f" / {other:.2f}")
                )
            table.add_row(method, group, *cells)
    return table
