"""Reading and rewriting hidden states through the standard transformers modules.

    revcurse analyze runs/demo-20261126-093000   # the analyses read the model through these
    revcurse compare --methods baseline,rome      # and the weight edits write through them

Only the names every Llama-style causal LM in transformers shares are used:
`model.model.layers[i]` (its output is the residual stream after layer i), its `.mlp` and
`.self_attn`, `model.model.norm` and `model.lm_head`. So the same code runs on the tiny
Llama of `revcurse demo` and on SmolLM2.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from revcurse.lm.batching import collate, spans

if TYPE_CHECKING:
    from transformers import PreTrainedModel

K = TypeVar("K", bound=Hashable)

KINDS = ("hidden", "mlp", "attn")  # residual output of a decoder layer, its MLP, its attention

Edit = Callable[[torch.Tensor], torch.Tensor]


def decoder_layers(model: PreTrainedModel) -> list[torch.nn.Module]:
    return list(model.model.layers)


def module_of(model: PreTrainedModel, kind: str, layer: int) -> torch.nn.Module:
    block = decoder_layers(model)[layer]
    return {
        "hidden": block,
        "mlp": block.get_submodule("mlp"),
        "attn": block.get_submodule("self_attn"),
    }[kind]


@contextmanager
def edit_outputs(edits: dict[torch.nn.Module, Edit]) -> Iterator[None]:
    """Pass each module's output (the first element when it returns a tuple, as attention
    does) through its function for the duration of the block."""

    def hook(edit: Edit) -> Callable[..., Any]:
        def run(_module: torch.nn.Module, _inputs: Any, output: Any) -> Any:
            if isinstance(output, tuple):
                return (edit(output[0]), *output[1:])
            return edit(output)

        return run

    handles = [module.register_forward_hook(hook(edit)) for module, edit in edits.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def captured_outputs(modules: dict[K, torch.nn.Module]) -> Iterator[dict[K, torch.Tensor]]:
    """The block's forward passes fill the yielded dict with each module's output, by key."""
    outputs: dict[K, torch.Tensor] = {}

    def keep(key: K) -> Edit:
        def run(x: torch.Tensor) -> torch.Tensor:
            outputs[key] = x
            return x

        return run

    with edit_outputs({module: keep(key) for key, module in modules.items()}):
        yield outputs


@contextmanager
def captured_inputs(modules: dict[K, torch.nn.Module]) -> Iterator[dict[K, torch.Tensor]]:
    """The block's forward passes fill the yielded dict with each module's first input."""
    inputs: dict[K, torch.Tensor] = {}

    def keep(key: K) -> Callable[..., None]:
        def run(_module: torch.nn.Module, args: tuple) -> None:
            inputs[key] = args[0]

        return run

    handles = [module.register_forward_pre_hook(keep(key)) for key, module in modules.items()]
    try:
        yield inputs
    finally:
        for handle in handles:
            handle.remove()


def final_logits(model: PreTrainedModel, input_ids: torch.Tensor) -> torch.Tensor:
    """Logits at the last position only (the unembedding of every position is the costly
    part for a 49k vocabulary)."""
    hidden = model.model(input_ids=input_ids, use_cache=False).last_hidden_state
    return model.lm_head(hidden[:, -1]).float()


@torch.no_grad()
def stream_of(
    model: PreTrainedModel, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor
) -> list[torch.Tensor]:
    """The residual stream at every position, layers + 1 tensors (rows, positions, d): the
    input embeddings given (a caller may put its own vectors among the tokens'), then the
    output of every decoder layer."""
    layers = dict(enumerate(decoder_layers(model)))
    with captured_outputs(layers) as captured:
        model.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False)
    return [inputs_embeds, *(captured[i] for i in layers)]


@torch.no_grad()
def residual_stream(
    model: PreTrainedModel,
    sequences: Sequence[Sequence[int]],
    positions: Sequence[int],
    batch_size: int = 256,  # sequences per forward pass; the values do not depend on it
) -> torch.Tensor:
    """(n, layers + 1, d): the residual stream at one position of each sequence: the input
    embedding (0), then the output of every decoder layer."""
    out = []
    for part in spans(len(sequences), batch_size):
        # Right-padded (batching.collate), so the padding's id never reaches a real position.
        batch = collate([(s, s) for s in sequences[part]], pad_id=0)
        ids = batch["input_ids"].to(model.device)
        embeds = model.get_input_embeddings()(ids)
        stream = stream_of(model, embeds, batch["attention_mask"].to(model.device))
        rows, where = torch.arange(len(ids)), torch.tensor(positions[part])
        out.append(torch.stack([layer[rows, where].float().cpu() for layer in stream], dim=1))
    return torch.cat(out)
