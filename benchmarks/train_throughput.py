"""Training tokens/s of revcurse's train() against a bare PyTorch loop, side by side.

    .venv/bin/python benchmarks/train_throughput.py                       # the demo's tiny model
    .venv/bin/python benchmarks/train_throughput.py --model smollm2-135m --steps 4 --batch-size 8
    .venv/bin/python benchmarks/train_throughput.py --model smollm2-135m --finetune lora \
        --steps 4 --batch-size 8                                # LoRA adapters, both loops
    .venv/bin/python benchmarks/train_throughput.py --model smollm2-135m --steps 4 \
        --batch-size 8 --profile                # and where one train() run spends its time
    # on a GPU: SmolLM2 fine-tuning tokens/s and its share of the matmul peak in bfloat16
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
counts. Prints tokens/s of each and the ratio train()/bare (target >= 0.9x), and each loop's
FLOP/s (6 x parameters x tokens/s, as compare's cost table counts them) as a share of this
machine's dense matmul throughput, measured in the same run (torch, the same dtype, device
and threads): how near the limit training runs. `--profile` adds where the time of one more
train() run goes, by operator (self time), and the matmuls' share of it. Exit status 1 below
the target.
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
MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")  # dense products


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_peak(dtype: torch.dtype, device: str, repeats: int = 5) -> float:
    """FLOP/s of the fastest of `repeats` n x n matrix products (2 n^3 each; n of 1024 and
    2048, the larger pays on big devices): the dense throughput torch reaches here, with the
    training loops' dtype, device and threads."""
    best = 0.0
    for n in (1024, 2048):
        a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
        torch.mm(a, b)  # first-touch allocations, untimed
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            torch.mm(a, b)
            sync(device)
            best = max(best, 2 * n**3 / (time.perf_counter() - start))
    return best


def time_shares(run: Callable[[], Any], top: int = 8) -> list[str]:
    """Lines saying where `run` spends its time: the matmuls' share of all operators' self
    time, then the `top` operators by self time (CPU and, on a GPU, device time)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as profiler:
        run()
    events = [e for e in profiler.key_averages() if e.key.startswith("aten::")]
    on_gpu = torch.cuda.is_available()

    def self_time(event: Any) -> float:
        return event.self_device_time_total if on_gpu else event.self_cpu_time_total

    total = sum(self_time(e) for e in events) or 1.0
    matmul = sum(self_time(e) for e in events if e.key in MATMULS)
    lines = [f"profile: matmuls {matmul / total:.0%} of operator time; the largest operators:"]
    for event in sorted(events, key=self_time, reverse=True)[:top]:
        lines.append(f"  {event.key:<40} {self_time(event) / total:>6.1%}  ({event.count} calls)")
    return lines


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
    parser.add_argument("--profile", action="store_true", help="where train()'s time goes")
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

    def train_once() -> Any:
        return train(model, tokenizer, examples, config, args.seed, False, pretrained=pretrained)

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
        took, trained = timed(train_once)
        seconds["train"].append(took)
    drift = max(abs(a - b) for a, b in zip(trained.losses, bare_losses, strict=True))
    bare_rate, train_rate = (trained.tokens / min(seconds[k]) for k in ("bare", "train"))
    ratio = train_rate / bare_rate
    params = sum(p.numel() for p in model.parameters())
    peak = matmul_peak(getattr(torch, args.dtype), device)
    print(
        f"{args.model} ({params / 1e6:.2f}M parameters, {args.dtype}, {args.finetune}) "
        f"on {device}, "
        f"{torch.get_num_threads()} threads: {args.steps} steps of {args.batch_size} examples, "
        f"{trained.tokens} tokens"
    )
    print(f"dense matmul peak, measured here: {peak / 1e9:,.1f} GFLOP/s")
    for name, rate in (("bare PyTorch loop", bare_rate), ("revcurse train()", train_rate)):
        flops = 6 * params * rate
        print(
            f"{name:<18} {rate:>12,.0f} tokens/s (best of {args.repeats}), "
            f"{flops / 1e9:,.1f} GFLOP/s = {flops / peak:.2f} of the matmul peak"
        )
    print(f"ratio train()/bare: {ratio:.2f}x (target >= {TARGET}x); losses differ by {drift:.1e}")
    if args.profile:
        model.load_state_dict(start_weights)
        print("\n".join(time_shares(train_once)))
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
