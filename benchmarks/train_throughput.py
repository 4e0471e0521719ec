"""Training tokens/s of revcurse's train() against a bare PyTorch loop, side by side.

    .venv/bin/python benchmarks/train_throughput.py                       # the demo's tiny model
    .venv/bin/python benchmarks/train_throughput.py --model smollm2-135m --steps 4 --batch-size 8
    .venv/bin/python benchmarks/train_throughput.py --model smollm2-135m --finetune lora \
        --steps 4 --batch-size 8                                # LoRA adapters, both loops
    # on a GPU: SmolLM2 fine-tuning tokens/s and MFU in bfloat16 (H100 peak by default)
    .venv/bin/python benchmarks/train_throughput.py --model smollm2-135m --dtype bfloat16 \
        --steps 30 --batch-size 64 --facts-per-group 100

Both loops start from the same weights and take the same batches (the same shuffle) through
forward, backward and an AdamW step with the same warm-up, in the same dtype (--dtype) on the
same device, and with `--finetune lora` through the same peft adapters (the bare loop wraps
the model with peft itself, from the same seed, and steps only the adapters); the bare loop
leaves out everything else train() does (accelerate, the progress bar, the per-step loss and
token bookkeeping), and computes the model's own loss over every position, where train()
runs a pretrained model's output layer only where a label is predicted (`completion_loss`,
the same loss): for those, the ratio includes that saving. The default is the demo's
workload: its tiny model, world and batch size.
After an untimed warm-up, each loop runs `--repeats` times, alternating, and its fastest run
counts. Prints tokens/s of each and the ratio train()/bare (target >= 0.9x), and the model
FLOPs utilisation of each (6 x parameters x tokens/s over
--peak-tflops); exit status 1 below the target.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader

from revcurse.facts import expand
from revcurse.lm.batching import collate, encode
from revcurse.lm.models import make_model
from revcurse.lm.tiny import TinyModelConfig
from revcurse.train import FINETUNE_MODES, TrainConfig, adamw, train, with_lora
from revcurse.world import TEMPLATES, WorldConfig, generate_facts

TARGET = 0.9


def bare_loop(
    model, features, config: TrainConfig, seed: int, pad_id: int, fused: bool
) -> list[float]:
    """The textbook loop: DataLoader, forward, backward, AdamW, warm-up; one sync at the end.
    Under LoRA it wraps `model` in the adapters train() gives it, from the same seed, and
    merges them back at the end as train() does (the next run starts from reset weights)."""
    if config.finetune == "lora":
        torch.manual_seed(seed)  # train() seeds before it makes the adapters
        model = with_lora(model, config)
    device = next(model.parameters()).device
    loader = DataLoader(
        features,
        batch_size=config.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        collate_fn=lambda batch: collate(batch, pad_id),
    )
    optimizer = adamw(model, config.lr, 0.0, fused=fused)  # train()'s: the loops are compared
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / max(1, config.warmup_steps))
    )
    model.train()
    losses = []
    while len(losses) < config.steps:
        for batch in loader:
            loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach())
            if len(losses) == config.steps:
                break
    model.eval()
    if config.finetune == "lora":
        model.merge_and_unload()
        model.requires_grad_(True)
    return torch.stack(losses).tolist()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny, or a pretrained --model name")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    parser.add_argument("--facts-per-group", type=int, default=WorldConfig.facts_per_group)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--finetune", default="full", choices=FINETUNE_MODES[1:])
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    # H100 SXM dense bfloat16; for other devices pass theirs (MFU is only a ratio to it)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    args = parser.parse_args()

    facts = generate_facts(WorldConfig(facts_per_group=args.facts_per_group), args.seed)
    examples, _ = expand(facts, TEMPLATES)
    texts = (e.prompt + " " + e.completion for e in examples)
    model, tokenizer = make_model(args.model, TinyModelConfig(), texts, args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device, getattr(torch, args.dtype))
    start_weights = {k: v.clone() for k, v in model.state_dict().items()}
    config = TrainConfig(
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, finetune=args.finetune
    )  # no checkpoint folder: no checkpoints
    features = encode(tokenizer, [(e.prompt, e.completion) for e in examples], eos=True)

    def timed(run: Callable[[], Any]) -> tuple[float, Any]:
        model.load_state_dict(start_weights)
        start = time.perf_counter()
        out = run()  # both end on the host: losses as Python floats
        return time.perf_counter() - start, out

    pretrained = args.model != "tiny"  # train() fuses AdamW for pretrained models
    warm_up = dataclasses.replace(config, steps=2)  # first-touch allocations, untimed
    bare_loop(model, features, warm_up, args.seed, tokenizer.pad_token_id, pretrained)
    seconds: dict[str, list[float]] = {"bare": [], "train": []}
    for _ in range(args.repeats):
        took, bare_losses = timed(
            lambda: bare_loop(
                model, features, config, args.seed, tokenizer.pad_token_id, pretrained
            )
        )
        seconds["bare"].append(took)
        took, trained = timed(
            lambda: train(
                model, tokenizer, examples, config, args.seed, False, pretrained=pretrained
            )
        )
        seconds["train"].append(took)
    drift = max(abs(a - b) for a, b in zip(trained.losses, bare_losses, strict=True))
    bare_rate, train_rate = (trained.tokens / min(seconds[k]) for k in ("bare", "train"))
    ratio = train_rate / bare_rate
    params = sum(p.numel() for p in model.parameters())
    print(
        f"{args.model} ({params / 1e6:.2f}M parameters, {args.dtype}, {args.finetune}) "
        f"on {device}, "
        f"{torch.get_num_threads()} threads: {args.steps} steps of {args.batch_size} examples, "
        f"{trained.tokens} tokens"
    )
    for name, rate in (("bare PyTorch loop", bare_rate), ("revcurse train()", train_rate)):
        mfu = 6 * params * rate / (args.peak_tflops * 1e12)
        print(f"{name:<18} {rate:>12,.0f} tokens/s (best of {args.repeats}), MFU {mfu:.2%}")
    print(f"ratio train()/bare: {ratio:.2f}x (target >= {TARGET}x); losses differ by {drift:.1e}")
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
