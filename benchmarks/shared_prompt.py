"""Scoring candidates after one shared prompt: the prompt's cache reused, against each
sequence whole.

    .venv/bin/python benchmarks/shared_prompt.py                   # smollm2-135m, ~2 min
    .venv/bin/python benchmarks/shared_prompt.py --questions 4 --candidates 5   # smoke

The prompts are compare's in-context questions on a pretrained model: three worked
examples (revcurse.context.worked_examples), the fact as a `Fact:` line, the question;
each is scored with `--candidates` completions of its phrasing. Scored both ways by
revcurse.lm.causal: shared_prompt_logprobs (each prompt once, its key-value cache
repeated for the completions) and batched whole sequences. Prints pairs/s of each, the
speed ratio (target >= 3x) and the largest absolute difference of a score (<= 1e-4);
exit status 1 if either is missed.
"""

from __future__ import annotations

import argparse
import sys
import time

from revcurse.context import posed_in_context, worked_examples
from revcurse.evaluate import alternatives
from revcurse.facts import expand
from revcurse.lm import causal
from revcurse.lm.batching import encode
from revcurse.lm.pretrained import load_pretrained
from revcurse.world import TEMPLATES, WorldConfig, generate_facts

SPEEDUP_TARGET = 3.0
TOLERANCE = 1e-4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="a pretrained --model")
    parser.add_argument("--questions", type=int, default=20, help="prompts scored")
    parser.add_argument("--candidates", type=int, default=10, help="completions per prompt")
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per pass")
    args = parser.parse_args()

    model, tokenizer = load_pretrained(args.model)
    facts = generate_facts(WorldConfig(facts_per_group=args.candidates), seed=0)
    _, test = expand(facts, TEMPLATES)
    candidates = alternatives(test, args.candidates, seed=0)[: args.questions]
    test = test[: args.questions]
    posed = worked_examples(posed_in_context(test, facts, 0, 0, True), TEMPLATES, 3, facts, 0)
    pairs = [(e.prompt, c) for e, cs in zip(posed, candidates, strict=True) for c in cs]
    features = encode(tokenizer, pairs, eos=False)

    start = time.perf_counter()
    shared = causal.shared_prompt_logprobs(model, features, args.batch_size, progress=False)
    shared_s = time.perf_counter() - start
    start = time.perf_counter()
    whole = causal.whole_sequence_logprobs(model, tokenizer, features, args.batch_size, False)
    whole_s = time.perf_counter() - start

    speedup = whole_s / shared_s
    worst = max(abs(a - b) for a, b in zip(shared, whole, strict=True))
    print(
        f"{args.model}: {len(pairs)} pairs, {len(posed)} prompts of ~{len(features[0][0])} tokens"
    )
    print(f"shared prompt {len(pairs) / shared_s:.1f} pairs/s, whole {len(pairs) / whole_s:.1f}")
    print(f"speed-up {speedup:.1f}x (target >= {SPEEDUP_TARGET}x), max |diff| {worst:.1e}")
    sys.exit(0 if speedup >= SPEEDUP_TARGET and worst <= TOLERANCE else 1)


if __name__ == "__main__":
    main()
