"""Batched log-likelihood scoring against one example at a time: speed and agreement.

    .venv/bin/python benchmarks/scoring.py                        # the demo's tiny model
    .venv/bin/python benchmarks/scoring.py --model smollm2-135m --pairs 200

Scores a sample of the demo's evaluation pairs (a test prompt with one of the alternative
completions of its group) with evaluate.completion_logprobs, in batches of `--batch-size`
and one pair at a time. Fresh tiny weights serve: timing and agreement need no training.
Prints pairs/s of each, the speed ratio (target >= 5x) and the largest absolute difference
between the two scores of a pair (must be <= 1e-5); exit status 1 if either is missed.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import torch

from revcurse.evaluate import EvalConfig, alternatives
from revcurse.facts import expand
from revcurse.lm.models import make_model
from revcurse.lm.scoring import completion_logprobs
from revcurse.lm.tiny import TinyModelConfig
from revcurse.world import TEMPLATES, WorldConfig, generate_facts

SPEEDUP_TARGET = 5.0
TOLERANCE = 1e-5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny, or a pretrained --model name")
    parser.add_argument("--pairs", type=int, default=2000, help="(prompt, completion) pairs")
    parser.add_argument("--batch-size", type=int, default=EvalConfig.batch_size)
    parser.add_argument("--facts-per-group", type=int, default=WorldConfig.facts_per_group)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    facts = generate_facts(WorldConfig(facts_per_group=args.facts_per_group), args.seed)
    train_examples, test_examples = expand(facts, TEMPLATES)
    texts = (e.prompt + " " + e.completion for e in train_examples + test_examples)
    model, tokenizer = make_model(args.model, TinyModelConfig(), texts, args.seed)
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    candidates = alternatives(test_examples, 0, args.seed)
    pairs = sorted(
        {(e.prompt, c) for e, cs in zip(test_examples, candidates, strict=True) for c in cs}
    )
    pairs = random.Random(args.seed).sample(pairs, min(args.pairs, len(pairs)))

    seconds, scores = {}, {}
    for name, batch_size in (("batched", args.batch_size), ("one at a time", 1)):
        start = time.perf_counter()
        scores[name] = completion_logprobs(model, tokenizer, pairs, batch_size)
        seconds[name] = time.perf_counter() - start
    speedup = seconds["one at a time"] / seconds["batched"]
    diff = max(abs(a - b) for a, b in zip(*scores.values(), strict=True))
    print(
        f"{args.model} on {model.device}, {torch.get_num_threads()} threads: "
        f"{len(pairs)} pairs, batches of {args.batch_size}"
    )
    for name, took in seconds.items():
        print(f"{name:<14} {len(pairs) / took:>10,.0f} pairs/s ({took:.2f} s)")
    print(f"speed-up: {speedup:.1f}x (target >= {SPEEDUP_TARGET:.0f}x)")
    print(f"largest score difference: {diff:.1e} (must be <= {TOLERANCE:.0e})")
    return 0 if speedup >= SPEEDUP_TARGET and diff <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
