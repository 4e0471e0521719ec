"""Where a free-text answer ends: `AnswerEnd`, used by revcurse.lm.causal's generation."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class AnswerEnd:
    """Where a free-text answer ends besides </s>: at its first line break after some text
    (a line break before any text is the answer's lead-in, not its end). A model reading
    worked examples ends its answer with a line break and goes on to write the next example;
    generating that costs more steps than the answer (lm-evaluation-harness stops at "\n"
    too). Judged per token: which tokens hold a line break, and which hold any text."""

    breaks: torch.Tensor  # (vocabulary,) bool
    text: torch.Tensor  # (vocabulary,) bool

    @staticmethod
    @functools.cache
    def of(tokenizer: PreTrainedTokenizerBase) -> AnswerEnd:
        pieces = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        return AnswerEnd(
            torch.tensor(["\n" in piece for piece in pieces]),
            torch.tensor([bool(piece.strip()) for piece in pieces]),
        )

    def ended(self, new: torch.Tensor) -> torch.Tensor:
        """(rows,) bool: whether each row of new tokens (rows x steps) has ended its line."""
        new = new.cpu()
        begun = self.text[new].cumsum(-1) > 0
        return (self.breaks[new] & begun).any(-1)

    def criterion(self, prompt_width: int) -> Callable[..., torch.Tensor]:
        """transformers' stopping criterion for prompts padded to `prompt_width` tokens: rows
        stop one by one, as at </s>."""
        return lambda ids, scores, **kwargs: self.ended(ids[:, prompt_width:]).to(ids.device)
