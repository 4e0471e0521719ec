"""What the weight edits (hebbian, rome, memit) read and write: the FFN's output matrix.

A Llama-style MLP computes down_proj(act(gate(x)) * up(x)): the input of down_proj is the
*key* (one activation per hidden unit, d_ff of them) and its output the *value* added to the
residual stream; down_proj's weight is the key -> value memory that Geva et al. (2021) and
ROME (Meng et al. 2022) read facts from. The edits add to that matrix: an outer product
per key, or the least-squares change for many keys at once (`delta_rule`), with values
from the model's own activity (`activity`) or optimised (`optimised_value`, ROME's).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

import torch

from revcurse.config import check
from revcurse.errors import UserError
from revcurse.facts import Example
from revcurse.lm.batching import IGNORE, collate, encode, spans
from revcurse.lm.hooks import captured_inputs, captured_outputs, decoder_layers, edit_outputs

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from revcurse.remedies.setting import Setting

WEIGHT_DECAY = 1e-3  # optimised_value: on |delta|^2 / |v|^2, the smallest change that works


def down_proj(model: PreTrainedModel, layer: int) -> torch.nn.Linear:
    return cast(torch.nn.Linear, decoder_layers(model)[layer].get_submodule("mlp.down_proj"))


Layers = list[int] | Literal["all", "middle"]  # a config's edited layers (parse_layers)


def _indices(layers: Layers | str) -> list:
    """A config's layer indices as written: a list, or comma-separated (rome's one layer)."""
    return layers.split(",") if isinstance(layers, str) else list(layers)


def check_layers(layers: Layers | str, field: str) -> None:
    """For a config: `layers` names layers the way parse_layers reads them."""
    ok = layers in ("all", "middle") or all(
        str(x).strip().lstrip("-").isdigit() for x in _indices(layers)
    )
    check(ok, field, f"must be all, middle or layer indices, got {layers!r}")


def parse_layers(layers: Layers | str, n_layers: int) -> list[int]:
    """'middle', 'all', indices (negative ones count from the end), or those as a
    comma-separated str (rome's one layer)."""
    if layers == "all":
        return list(range(n_layers))
    if layers == "middle":  # of 2 layers the first: an edit must have attention after it
        return [(n_layers - 1) // 2]
    try:
        indices = [int(x) for x in _indices(layers)]
    except ValueError:
        raise UserError(f"layers: expected all, middle or integers, got {layers!r}") from None
    if not all(-n_layers <= x < n_layers for x in indices):
        raise UserError(f"layers: {layers!r} outside the model's {n_layers} layers")
    return sorted({x % n_layers for x in indices})


@dataclass
class TeacherForced:
    """Prompt + completion sequences as one right-padded batch, and where the answer is."""

    batch: dict[str, torch.Tensor]
    answer: torch.Tensor  # (n, width) bool: positions whose next token is a completion token
    next_token: torch.Tensor  # (n, width) the token each position should predict

    @classmethod
    def of(cls, tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example]) -> TeacherForced:
        features = encode(tokenizer, [(e.prompt, e.completion) for e in examples], eos=False)
        batch = collate(features, tokenizer.pad_token_id)
        labels = batch["labels"]
        next_token = torch.full_like(labels, IGNORE)
        next_token[:, :-1] = labels[:, 1:]
        return cls(batch, next_token != IGNORE, next_token)

    def last_prompt_position(self) -> torch.Tensor:
        """(n,) the position that predicts the first completion token."""
        return self.answer.int().argmax(dim=1)


@torch.no_grad()
def keys(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    layers: Sequence[int],
    batch_size: int = 64,  # documents per forward pass
) -> dict[int, torch.Tensor]:
    """Per layer, (tokens, d_ff): down_proj's input at every real token of the texts."""
    out: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    for part in spans(len(texts), batch_size):
        ids = tokenizer(list(texts[part])).input_ids
        batch = collate([(x, x) for x in ids], tokenizer.pad_token_id)  # right-padded
        with captured_inputs({layer: down_proj(model, layer) for layer in layers}) as captured:
            model.model(
                input_ids=batch["input_ids"].to(model.device),
                attention_mask=batch["attention_mask"].to(model.device),
                use_cache=False,
            )
        real = batch["attention_mask"].bool()
        for layer in layers:
            out[layer].append(captured[layer][real].float().cpu())
    return {layer: torch.cat(parts) for layer, parts in out.items()}


def add_to_weight(model: PreTrainedModel, layer: int, delta: torch.Tensor) -> None:
    weight = down_proj(model, layer).weight
    with torch.no_grad():
        weight += delta.to(weight.dtype).to(weight.device)


@torch.no_grad()
def activity(
    model: PreTrainedModel, forced: TeacherForced, layers: list[int]
) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """(down_proj inputs, residual stream after the layer) per layer, (n, width, d)."""
    blocks = decoder_layers(model)
    with (
        captured_inputs({i: down_proj(model, i) for i in layers}) as pre,
        captured_outputs({i: blocks[i] for i in layers}) as post,
    ):
        model.model(
            input_ids=forced.batch["input_ids"],
            attention_mask=forced.batch["attention_mask"],
            use_cache=False,
        )
    return {i: pre[i].float() for i in layers}, {i: post[i].float() for i in layers}


def kept_keys(
    setting: Setting,
    model: PreTrainedModel,
    generic: dict[int, torch.Tensor],
    also: Sequence[Example] = (),
    leave: Collection[int] = (),
) -> dict[int, torch.Tensor]:
    """Per layer, (tokens, d_ff): the keys whose outputs the delta rule keeps: generic text's
    (`generic`) and, at their answer positions, the model's own training sentences' (but
    those of the facts in `leave`) and `also`'s."""
    layers = list(generic)
    kept = [*(e for e in setting.train_examples if e.fact not in leave), *also]
    forced = TeacherForced.of(setting.tokenizer, setting.ask(kept))
    trained, _ = activity(model, forced, layers)
    return {i: torch.cat([generic[i], trained[i][forced.answer]]) for i in layers}


def moment_of(keys: torch.Tensor, floor: float = 0.0) -> torch.Tensor:
    """(d_ff, d_ff): the keys' second moment k^T k / m, plus `floor` x its mean eigenvalue
    x I (fewer keys than units leave it singular)."""
    moment = keys.T @ keys / len(keys)
    return moment + floor * moment.diagonal().mean() * torch.eye(len(moment))


def delta_rule(
    x: torch.Tensor, y: torch.Tensor, kept: torch.Tensor, ridge: float, floor: float = 0.0
) -> torch.Tensor:
    """(d, d_ff): D minimising |D x^T - y^T|^2 + ridge n tr(D C D^T), C = moment_of(kept,
    floor)."""
    moment = moment_of(kept, floor)
    return torch.linalg.solve(x.T @ x + ridge * len(x) * moment, x.T @ y).T


def optimised_value(
    model: PreTrainedModel,
    forced: TeacherForced,
    where: torch.Tensor,
    layer: int,
    scale: float,
    steps: int,
    slot: torch.Tensor | None = None,
) -> torch.Tensor:
    """(slots, d) ROME's value change: vectors that, added to `layer`'s MLP output at the
    positions `where` ((m, 2): row, position), vector `slot[i]` (default: one vector for
    all) at position i, make the model give the completions of `forced` (`steps` Adam steps,
    a small L2 penalty, each at most 4 x `scale`, the norm of the value it changes)."""
    rows, cols = where.unbind(dim=1)
    slot = torch.zeros(len(where), dtype=torch.long) if slot is None else slot
    inputs = {k: forced.batch[k] for k in ("input_ids", "attention_mask")}
    mlp = decoder_layers(model)[layer].get_submodule("mlp")
    weight = down_proj(model, layer).weight
    d = weight.shape[0]
    delta = torch.zeros(int(slot.max()) + 1, d, device=weight.device, requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=2.5 * scale / d**0.5)

    def add_delta(output: torch.Tensor) -> torch.Tensor:
        shifted = output.clone()
        shifted[rows, cols] = shifted[rows, cols] + delta[slot].to(output.dtype)
        return shifted

    model.requires_grad_(False)
    for _ in range(steps):
        with edit_outputs({mlp: add_delta}):
            loss = model(**inputs, labels=forced.batch["labels"]).loss
        loss = loss + WEIGHT_DECAY * delta.pow(2).sum() / scale**2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # ROME's clamp: each change at most 4x the original value
            norms = delta.norm(dim=-1, keepdim=True).clamp(min=1e-9)
            delta.mul_((4 * scale / norms).clamp(max=1.0))
    model.requires_grad_(True)
    return delta.detach()
