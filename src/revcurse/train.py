"""One training loop for every model: completion-only loss, seeded, accelerate-ready.

    accelerate launch -m revcurse.cli demo   # the same loop on several GPUs, unchanged

Prompt tokens are masked out of the loss (label -100), as in Berglund et al.: training
asks only for p(completion | prompt), which is what makes the stored map one-way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from revcurse.facts import Example

IGNORE = -100  # label value that torch's cross-entropy (and transformers' loss) skips


@dataclass
class TrainConfig:
    steps: int = 400  # enough for 100% recall of the trained facts at lr 3e-3
    lr: float = 3e-3  # AdamW; tiny models from scratch tolerate (and need) a high rate
    batch_size: int = 256  # examples per step (0 = all); 8x cheaper than all, same recall
    weight_decay: float = 0.0  # decay erodes memorised facts; the curse needs none
    warmup_steps: int = 20  # linear warm-up keeps the first high-lr steps stable


def encode(
    tokenizer: PreTrainedTokenizerBase, pairs: Sequence[tuple[str, str]], eos: bool
) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) for each (prompt, completion): the prompt with its special tokens,
    masked; the completion scored. Each distinct text is tokenized once (scoring repeats
    every prompt with dozens of alternative completions)."""

    def token_ids(texts: set[str], special: bool) -> dict[str, list[int]]:
        unique = sorted(texts)
        ids = tokenizer(unique, add_special_tokens=special).input_ids if unique else []
        return dict(zip(unique, ids, strict=True))

    prompt_ids = token_ids({p for p, _ in pairs}, special=True)
    completion_ids = token_ids({c for _, c in pairs}, special=False)
    tail = [tokenizer.eos_token_id] if eos else []
    return [
        (
            prompt_ids[p] + completion_ids[c] + tail,
            [IGNORE] * len(prompt_ids[p]) + completion_ids[c] + tail,
        )
        for p, c in pairs
    ]


def collate(
    features: Sequence[tuple[list[int], list[int]]], pad_id: int
) -> dict[str, torch.Tensor]:
    """Right-padded batch: positions start at 0 for every row, so padding changes nothing."""
    width = max(len(ids) for ids, _ in features)
    input_ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    labels = torch.full((len(features), width), IGNORE, dtype=torch.long)
    attention_mask = torch.zeros((len(features), width), dtype=torch.long)
    for row, (ids, labs) in enumerate(features):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(labs)] = torch.tensor(labs)
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@dataclass
class TrainResult:
    losses: list[float]  # one per step
    tokens: int  # real (non-padding) tokens processed
    seconds: float
    flops: float  # 6 x parameters x tokens (forward + backward; Kaplan et al. 2020)


Collate = Callable[[Sequence[tuple[list[int], list[int]]]], dict[str, torch.Tensor]]


def train(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    config: TrainConfig,
    seed: int,
    progress: bool = True,
    collate_fn: Collate | None = None,
) -> TrainResult:
    """Train in place. `collate_fn` turns encoded examples into a batch with labels; the
    default is the causal LM's right-padded batch (other objectives, e.g. MLM-U, pass theirs)."""
    accelerator = Accelerator()
    set_seed(seed)
    features = encode(tokenizer, [(e.prompt, e.completion) for e in examples], eos=True)
    batch_size = config.batch_size or len(features)
    loader = DataLoader(
        features,
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        collate_fn=collate_fn or (lambda batch: collate(batch, tokenizer.pad_token_id)),
    )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / max(1, config.warmup_steps))
    )
    model, optimizer, loader, schedule = accelerator.prepare(model, optimizer, loader, schedule)
    model.train()
    losses: list[float] = []
    tokens = 0
    start = time.perf_counter()
    bar = tqdm(
        total=config.steps,
        desc="train",
        unit="step",
        disable=not progress or not accelerator.is_main_process,
    )
    while len(losses) < config.steps:
        for batch in loader:
            loss = model(**batch).loss
            accelerator.backward(loss)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            tokens += int(batch["attention_mask"].sum())
            bar.update()
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if len(losses) == config.steps:
                break
    bar.close()
    model.eval()
    accelerator.free_memory()
    n_params = sum(p.numel() for p in model.parameters())
    return TrainResult(losses, tokens, time.perf_counter() - start, 6.0 * n_params * tokens)
