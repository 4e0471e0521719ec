"""How many worked examples a pretrained model needs to answer from its context.

    .venv/bin/python scripts/sweep_shots.py                        # smollm2-135m, ~3 min
    .venv/bin/python scripts/sweep_shots.py --model gemma3-270m --shots 0,3
    .venv/bin/python scripts/sweep_shots.py --readme               # and README's shots-sweep
    .venv/bin/python scripts/sweep_shots.py --model gemma3-270m --readme shots-sweep-gemma

The untrained model (no fine-tuning: this measures the skill in-context reversal relies
on) reads each of `--facts` fictitious facts of the generated world in its context and
answers every held-out question about it, both directions, with 0, 1, 3... worked
examples before the question (revcurse.context.worked_examples: other fictitious facts,
the same phrasing, answered). Prints exact match (Berglund's starts-with rule, final
punctuation aside) and the `anywhere` rule, per direction: the numbers behind
`--eval.shots`' default for pretrained models.
"""

from __future__ import annotations

import argparse

from revcurse.context import posed_in_context, worked_examples
from revcurse.evaluate import EvalConfig, answers, anywhere, starts_with
from revcurse.facts import expand
from revcurse.lm.causal import CausalLM
from revcurse.lm.pretrained import load_pretrained
from revcurse.world import TEMPLATES, WorldConfig, generate_facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="a pretrained --model")
    parser.add_argument("--facts", type=int, default=30, help="facts read (one group's worth)")
    parser.add_argument("--shots", default="0,1,3", help="worked example counts to try")
    parser.add_argument("--seed", type=int, default=0, help="the world and the examples")
    parser.add_argument(
        "--readme",
        nargs="?",
        const="shots-sweep",
        help="write this README block (default: shots-sweep)",
    )
    args = parser.parse_args()

    model, tokenizer = load_pretrained(args.model)
    lm = CausalLM(model, tokenizer, batch_size=32)
    facts = generate_facts(WorldConfig(facts_per_group=args.facts), args.seed)[: args.facts]
    _, test = expand(facts, TEMPLATES)  # the first group's facts: trained name first
    lines = [
        f"{args.model}, untrained, {len(facts)} facts in context, {len(test)} questions",
        "shots  direction  exact_match  anywhere",
    ]
    print(*lines, sep="\n")
    for shots in [int(k) for k in args.shots.split(",")]:
        posed = posed_in_context(test, facts, 0, args.seed, lines=shots > 0)  # as compare does
        asked = worked_examples(posed, TEMPLATES, shots, facts, args.seed)
        said = answers(lm, asked, EvalConfig())
        for direction in ("same", "reverse"):
            cell = [(o, e) for o, e in zip(said, test, strict=True) if e.sense == direction]
            exact = sum(starts_with(o, e.completion) for o, e in cell) / len(cell)
            found = sum(anywhere(o, e.completion) for o, e in cell) / len(cell)
            lines.append(f"{shots:>5}  {direction:<9}  {exact:>11.2f}  {found:>8.2f}")
            print(lines[-1], flush=True)
    if args.readme:
        from update_readme import replace_block

        command = f"$ .venv/bin/python scripts/sweep_shots.py --model {args.model}"
        replace_block(args.readme, "\n".join(["```", command, *lines, "```"]))
        print(f"README.md: {args.readme} block")


if __name__ == "__main__":
    main()
