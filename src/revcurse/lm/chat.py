"""Prompts as user turns of a tokenizer's chat template (`--chat-template`, instruct models)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

from revcurse.errors import UserError
from revcurse.facts import Example

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def chat_formatted(
    examples: Sequence[Example], tokenizer: PreTrainedTokenizerBase
) -> list[Example]:
    """Each prompt as a user turn of the tokenizer's chat template, ready for the assistant's
    answer: the completion, unchanged. A BOS the template writes is left to the tokenizer,
    which adds its own when it encodes the prompt."""
    if not tokenizer.chat_template:
        raise UserError("--chat-template: this model's tokenizer has no chat template")
    bos = tokenizer.bos_token if tokenizer("").input_ids[:1] == [tokenizer.bos_token_id] else None

    def chat(prompt: str) -> str:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        return text.removeprefix(bos) if bos else text

    return [dataclasses.replace(e, prompt=chat(e.prompt)) for e in examples]
