"""Fine-tuning recipes for a pretrained model: does it learn the facts and keep reading?

    .venv/bin/python scripts/sweep_finetune.py                 # smollm2-135m, ~8 min a recipe
    .venv/bin/python scripts/sweep_finetune.py --recipes "lora 3e-4 0" "full 3e-4 200"

Each recipe (fine-tuning mode, rate, reading documents replayed) trains revcurse compare's
baseline on one seed's world (30 facts a group, the compare defaults for pretrained models
otherwise), then asks the p2d and d2p facts one held-out phrasing each way, greedy:
closed book as trained, closed book after the worked examples, and with the fact in
context after them. Prints exact match per direction: the facts learned (closed book,
same direction) and the reading skill kept (in context, reverse) — the numbers behind
`revcurse compare`'s defaults for pretrained models.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from revcurse.config import default_values, from_dict
from revcurse.context import posed_in_context
from revcurse.evaluate import EvalConfig, answers, starts_with
from revcurse.recipes.compare import CompareConfig
from revcurse.recipes.compare_units import build_setting, starting_point

RECIPES = ["lora 3e-4 0", "full 1e-4 0", "full 1e-4 200", "full 3e-4 200"]


def recipe_config(model: str, finetune: str, lr: float, documents: int) -> CompareConfig:
    values = default_values(CompareConfig, model)
    values.update(model=model, seeds=1, progress=False)
    values["train"].update(finetune=finetune, lr=lr)
    values["remedies"].update(reading_documents=documents, reading_share=0.25 if documents else 0)
    return from_dict(CompareConfig, values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="a pretrained --model")
    parser.add_argument("--recipes", nargs="+", default=RECIPES, help="'MODE RATE DOCUMENTS'")
    args = parser.parse_args()
    print("recipe              asked                  same  reverse")
    for recipe in args.recipes:
        finetune, lr, documents = recipe.split()
        config = recipe_config(args.model, finetune, float(lr), int(documents))
        with TemporaryDirectory() as workdir:
            setting = build_setting(config, 0, Path(workdir), starting_point(config))
            start = time.perf_counter()
            model, _ = setting.base
            trained = time.perf_counter() - start
        lm = setting.causal_lm(model)
        held_out = {4, 10}  # one test phrasing each way (revcurse.world.TEMPLATES)
        test = [e for e in setting.test_examples if e.group != "both" and e.template in held_out]
        read = posed_in_context(test, setting.facts, 0, 0, lines=True)
        for asked, questions in [
            ("closed book", setting.ask(test)),
            ("closed, examples", setting.pose(test)),
            ("in context", setting.pose(read)),
        ]:
            said = answers(lm, questions, EvalConfig())
            hits = {
                rel: [
                    starts_with(o, e.completion)
                    for o, e in zip(said, test, strict=True)
                    if e.sense == rel
                ]
                for rel in ("same", "reverse")
            }
            same, reverse = (sum(h) / len(h) for h in hits.values())
            print(f"{recipe:<19} {asked:<22} {same:>4.2f}  {reverse:>7.2f}", flush=True)
        print(f"{recipe:<19} (trained in {trained:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
