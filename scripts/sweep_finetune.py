"""Fine-tuning recipes for a pretrained model: does it learn the facts and keep reading?

    .venv/bin/python scripts/sweep_finetune.py                 # smollm2-135m, ~8 min a recipe
    .venv/bin/python scripts/sweep_finetune.py --recipes "lora 3e-4 0" "full 3e-4 400 300 0.4"
    .venv/bin/python scripts/sweep_finetune.py --model gemma3-270m \
        --recipes "lora 1e-4 200 lora_targets=gate_proj,up_proj,down_proj"

Each recipe (fine-tuning mode, rate, reading documents replayed, and optionally steps and
the reading documents' share of the corpus, then any --train option as KEY=VALUE, e.g. the
modules given LoRA adapters) trains revcurse compare's
baseline on one seed's world (30 facts a group, the compare defaults for pretrained models
otherwise), then asks the p2d and d2p facts every held-out phrasing each way, greedy:
closed book as trained, and with the fact in context after the worked examples. Prints
exact match per group and direction: the facts learned (closed book,
same direction) and the reading skill kept (in context, reverse) — the numbers behind
`revcurse compare`'s defaults for pretrained models.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from revcurse.config import default_values, from_dict, typed_options
from revcurse.context import posed_in_context
from revcurse.evaluate import EvalConfig, answers, starts_with
from revcurse.recipes.compare import CompareConfig
from revcurse.recipes.remedy_run import build_setting, starting_point

RECIPES = ["lora 3e-4 0", "full 1e-4 0", "full 1e-4 200", "full 3e-4 200"]


def recipe_config(model: str, recipe: str) -> CompareConfig:
    """'MODE RATE DOCUMENTS [STEPS [SHARE]] [KEY=VALUE ...]'; steps and share default to
    compare's, KEY=VALUE sets --train.KEY."""
    words = recipe.split()
    finetune, lr, documents, *rest = [w for w in words if "=" not in w]
    values = default_values(CompareConfig, model)
    values.update(model=model, seeds=1, progress=False)
    options = " ".join(w for w in words if "=" in w)
    values["train"].update(typed_options(values["train"], options))
    values["train"].update(finetune=finetune, lr=float(lr))
    if rest:
        values["train"]["steps"] = int(rest[0])
    share = float(rest[1]) if len(rest) > 1 else values["remedies"]["reading_share"]
    values["remedies"].update(
        reading_documents=int(documents), reading_share=share * (documents != "0")
    )
    return from_dict(CompareConfig, values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="a pretrained --model")
    parser.add_argument(
        "--recipes",
        nargs="+",
        default=RECIPES,
        help="'MODE RATE DOCUMENTS [STEPS [SHARE]] [KEY=VALUE ...]' (KEY: a --train option)",
    )
    args = parser.parse_args()
    cells = [(g, r) for g in ("p2d", "d2p") for r in ("same", "reverse")]
    print(f"{'recipe':<24} {'asked':<12} " + "  ".join(f"{g} {r:<7}" for g, r in cells))
    for recipe in args.recipes:
        config = recipe_config(args.model, recipe)
        with TemporaryDirectory() as workdir:
            setting = build_setting(config, 0, Path(workdir), starting_point(config))
            start = time.perf_counter()
            model, _ = setting.baseline()
            trained = time.perf_counter() - start
        lm = setting.causal_lm(model)
        # every held-out phrasing of the one-way facts, as compare asks them
        test = [e for e in setting.test_examples if e.group != "both"]
        read = posed_in_context(test, setting.facts, 0, 0, lines=True)
        for asked, questions in [
            ("closed book", setting.ask(test)),
            ("in context", setting.pose(read)),
        ]:
            said = answers(lm, questions, EvalConfig())
            scores = []
            for group, sense in cells:
                hits = [
                    starts_with(o, e.completion)
                    for o, e in zip(said, test, strict=True)
                    if (e.group, e.sense) == (group, sense)
                ]
                scores.append(f"{sum(hits) / len(hits):>11.2f}")
            print(f"{recipe:<24} {asked:<12} " + "  ".join(scores), flush=True)
        print(f"{recipe:<24} (trained in {trained:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
