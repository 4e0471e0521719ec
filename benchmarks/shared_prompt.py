"""Scoring candidates after one shared prompt: the prompt's cache reused, against each
sequence whole.

    .venv/bin/python benchmarks/shared_prompt.py                   # smollm2-135m, ~3 min
    .venv/bin/python benchmarks/shared_prompt.py --questions 4 --candidates 5   # smoke

The prompts are compare's in-context questions on a pretrained model: three worked
examples (revcurse.context.worked_examples), the fact as a `Fact:` line, the question;
each is scored with `--candidates` completions of its phrasing. Scored both ways by
revcurse.lm.scoring: shared_prompt_logprobs (each prompt once, several side by side, its
key-value cache selected for its completions) and batched whole sequences. Prints pairs/s
of each, the speed ratio (target >= 3x) and the largest absolute difference of a score
(<= 1e-4). Then every question of that world answered greedily: each phrasing's
worked-examples start run once and its cache continued (lm.causal.generate), against
transformers' generate on padded batches: prompts/s, the ratio (target >= 2x) and how many
answers agree (all). Exit status 1 if any is missed.
"""

from __future__ import annotations

import argparse
import sys
import time

from revcurse.context import posed_in_context, worked_examples
from revcurse.evaluate import EvalConfig, alternatives, answer_tokens
from revcurse.facts import expand
from revcurse.lm import causal, scoring
from revcurse.lm.batching import encode
from revcurse.lm.pretrained import load_pretrained
from revcurse.world import TEMPLATES, WorldConfig, generate_facts

SPEEDUP_TARGET = 3.0
# Answers are as many decoding passes either way (batches of one phrasing's questions), so
# only the prompts' reading is saved: measured 2.5x on 128 questions of two phrasings
GENERATION_TARGET = 2.0
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
    shared = scoring.shared_prompt_logprobs(model, features, args.batch_size, progress=False)
    shared_s = time.perf_counter() - start
    start = time.perf_counter()
    whole = scoring.whole_sequence_logprobs(model, tokenizer, features, args.batch_size, False)
    whole_s = time.perf_counter() - start

    speedup = whole_s / shared_s
    worst = max(abs(a - b) for a, b in zip(shared, whole, strict=True))
    print(
        f"{args.model}: {len(pairs)} pairs, {len(posed)} prompts of ~{len(features[0][0])} tokens"
    )
    print(f"shared prompt {len(pairs) / shared_s:.1f} pairs/s, whole {len(pairs) / whole_s:.1f}")
    print(f"speed-up {speedup:.1f}x (target >= {SPEEDUP_TARGET}x), max |diff| {worst:.1e}")

    # Every test question of the world answered, as compare asks them: each phrasing's
    # worked examples run once, or every prompt whole
    _, asked = expand(facts, TEMPLATES)
    asked_posed = posed_in_context(asked, facts, 0, 0, True)
    prompts = [e.prompt for e in worked_examples(asked_posed, TEMPLATES, 3, facts, 0)]
    max_new = answer_tokens(tokenizer, [e.completion for e in asked], EvalConfig())
    start = time.perf_counter()
    shared_answers = causal.generate(model, tokenizer, prompts, max_new, args.batch_size)
    shared_gen_s = time.perf_counter() - start
    start = time.perf_counter()
    padded = causal.padded_generate(model, tokenizer, prompts, max_new, args.batch_size, False, 0)
    padded_gen_s = time.perf_counter() - start
    same = sum(a == b for a, b in zip(shared_answers, padded, strict=True))
    gen_speedup = padded_gen_s / shared_gen_s
    print(
        f"generation: shared start {len(prompts) / shared_gen_s:.2f} prompts/s, padded "
        f"{len(prompts) / padded_gen_s:.2f}; speed-up {gen_speedup:.1f}x (target >= "
        f"{GENERATION_TARGET}x), same answers {same}/{len(prompts)}"
    )
    ok = speedup >= SPEEDUP_TARGET and worst <= TOLERANCE and gen_speedup >= GENERATION_TARGET
    sys.exit(0 if ok and same == len(prompts) else 1)


if __name__ == "__main__":
    main()
