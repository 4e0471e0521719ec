"""The Hebbian edit on a pretrained model: where its in-context answer lives, and what
writing that activity into the FFN memories installs.

    .venv/bin/python scripts/sweep_hebbian.py                # smollm2-135m, 10 facts a group
    .venv/bin/python scripts/sweep_hebbian.py --readme       # the README's sweep-hebbian block

One seed's world (10 facts a group, as `make readme-smollm2-edits`) and its baseline (kept in
the cache by revcurse.trained). Two parts, each line written to the results file as soon as
it is measured (default runs/sweep-hebbian-MODEL.jsonl) and skipped when run again:

1. patching: for the treated facts' reverse questions (training phrasings, closed book),
   the residual stream after one layer at one kind of site (the subject's last token, the
   prompt's last token, every token that predicts an answer token, every token of the
   question) is replaced by the model's own stream there when it reads the fact first, as
   in_context poses it. The share of questions whose answer tokens all come out right
   (teacher-forced) says where the in-context answer is: what a Hebbian edit at that site
   and layer could at best copy into the weights.
2. edits: `hebbian_memit` (revcurse.remedies.memit: that in-context stream as the target,
   written by the delta rule into the FFN output matrices, no gradient) over sites, layers,
   ridge, the success gate, keeping the model's own answers about untouched facts, and the
   number of readings, with the edit metrics of revcurse.remedies.targets (EDITS). compare's
   pretrained defaults for hebbian_memit come from this sweep.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from revcurse.config import default_values, from_dict, typed_options
from revcurse.lm.hooks import decoder_layers, edit_outputs
from revcurse.recipes.compare import CompareConfig
from revcurse.recipes.remedy_run import build_setting, starting_point
from revcurse.records import read_records
from revcurse.remedies.ffn import TeacherForced
from revcurse.remedies.memit import HebbianMemitConfig, edit_sites, in_context_stream, memit_edit
from revcurse.remedies.setting import Setting
from revcurse.remedies.targets import effect_rows, reverse_phrasings, split_one_way
from revcurse.results import EDIT_COLUMNS, column_values, metric_legend

SITES = ("subject", "last", "answer", "question")
PATCH_POINTS = 9  # layers patched, evenly from the first to the last
# --remedies.hebbian-memit.* (the others as its class defaults: one reading, ungated,
# nothing kept): MEMIT's own site (the subject's last token over the middle layers), then
# where the patching finds the in-context answer (the tokens that predict the answer, the
# last layers), over layers and ridge, gated by success, keeping the model's own answers
# about the untouched facts, and from several readings
LATE = "layers=-5,-4,-3,-2,-1"  # the last five (SmolLM2: 25-29)
EDITS = [
    "position=subject layers=10,11,12,13,14 ridge=3 gate=0",
    "position=last layers=-10,-9,-8,-7,-6 ridge=3 gate=0",
    "position=last layers=-5,-4,-3,-2,-1 ridge=3 gate=0",
    "position=answer layers=-10,-9,-8,-7,-6 ridge=3 gate=0",
    f"position=answer {LATE} ridge=3 gate=0",
    f"position=answer {LATE} ridge=3 gate=1",
    "position=answer layers=-10,-9,-8,-7,-6 ridge=3 gate=1",
    "position=answer layers=-8,-7,-6,-5,-4,-3,-2,-1 ridge=3 gate=1",
    f"position=answer {LATE} ridge=1 gate=1",
    f"position=answer {LATE} ridge=10 gate=1",
    f"position=answer {LATE} ridge=30 gate=1",
    f"position=answer {LATE} ridge=3 gate=1 keep=1",
    f"position=answer {LATE} ridge=1 gate=1 keep=1",
    f"position=answer {LATE} ridge=10 gate=1 keep=1",
    f"position=answer {LATE} ridge=1 gate=1 keep=1 readings=3",
    f"position=answer {LATE} ridge=1 gate=1 keep=1 readings=6",
    f"position=answer {LATE} ridge=3 gate=1 keep=1 readings=6",
    f"position=answer {LATE} ridge=3 gate=0 keep=1 readings=6",
    f"position=answer {LATE} ridge=3 gate=1 keep=0 readings=6",
]
COLUMNS = EDIT_COLUMNS


def config_for(model: str) -> CompareConfig:
    values = default_values(CompareConfig, model)
    values.update(model=model, seeds=1, progress=False, methods=["baseline", "hebbian_memit"])
    values["world"]["facts_per_group"] = 10
    return from_dict(CompareConfig, values)


def memit_config(start: HebbianMemitConfig, setting: str) -> HebbianMemitConfig:
    """`start` with the setting's 'KEY=VALUE ...' options, each of its field's type."""
    values = asdict(start)
    return from_dict(HebbianMemitConfig, {**values, **typed_options(values, setting)})


def sites_of(setting: Setting, fact_id: int, forced: TeacherForced, site: str) -> torch.Tensor:
    """(m, 2) row and position of each patched token of `forced`, one fact's questions."""
    if site == "question":  # every real token
        return forced.batch["attention_mask"].nonzero()
    questions = setting.ask(reverse_phrasings(setting, [fact_id], "train"))
    return edit_sites(setting, fact_id, questions, forced, site)[0]


@torch.no_grad()
def patched_right(
    setting: Setting, model: torch.nn.Module, layer: int, site: str, treated: list[int]
) -> dict[str, int]:
    """How many of the treated facts' reverse questions get their answer's first token and
    all of its tokens as the teacher-forced argmax, closed book and with `layer`'s stream at
    `site` taken from the run that reads the fact."""
    counts = dict.fromkeys(("closed first", "closed all", "first", "all", "read", "total"), 0)
    for fact_id in treated:
        raw = reverse_phrasings(setting, [fact_id], "train")
        forced = TeacherForced.of(setting.tokenizer, setting.ask(raw))
        stream, right = in_context_stream(setting, model, raw, forced, layer)
        counts["read"] += int(right.sum())
        rows, cols = sites_of(setting, fact_id, forced, site).unbind(dim=1)

        def patch(
            x: torch.Tensor, at: tuple = (rows, cols), read: torch.Tensor = stream
        ) -> torch.Tensor:
            x = x.clone()
            x[at] = read[at].to(x.dtype)
            return x

        inputs = {k: forced.batch[k] for k in ("input_ids", "attention_mask")}
        first = torch.arange(len(raw)), forced.last_prompt_position()
        plain = model(**inputs).logits.argmax(-1)
        with edit_outputs({decoder_layers(model)[layer]: patch}):
            edited = model(**inputs).logits.argmax(-1)
        for predicted, prefix in ((plain, "closed "), (edited, "")):
            right = (predicted == forced.next_token) | ~forced.answer
            counts[prefix + "first"] += int(right[first].sum())
            counts[prefix + "all"] += int(right.all(dim=1).sum())
        counts["total"] += len(raw)
    return counts


def patching_table(done: dict[str, dict]) -> list[str]:
    """Per site (rows) and layer (columns): the questions answered right with that stream
    patched in, of all, and how many reading the fact answers right."""
    cells = {tuple(k.split()[1:]): r for k, r in done.items() if k.startswith("patch ")}
    layers = sorted({int(layer) for _, layer in cells}, key=int)
    if not cells:
        return []
    some = next(iter(cells.values()))
    lines = [
        f"patched: answers right closed book with one layer's stream read in context"
        f" ({some['total']} questions; closed book {some['closed all']}, in context"
        f" {some['read']})",
        f"{'site / layer':<14}" + "".join(f"{layer:>5}" for layer in layers),
    ]
    for site in SITES:
        row = [cells.get((site, str(layer))) for layer in layers]
        lines.append(f"{site:<14}" + "".join(f"{r['all'] if r else '-':>5}" for r in row))
    return lines


KEY_WIDTH = max(len(key) for key in EDITS) + 1


def edit_line(key: str, rows: list[dict]) -> str:
    cells = column_values(rows, COLUMNS)
    return f"{key:<{KEY_WIDTH}}" + "".join(
        "-".rjust(10) if v is None else f"{v:>10.2f}" for v in cells
    )


def edit_table(done: dict[str, dict]) -> list[str]:
    """One line per edit setting measured, in EDITS' order."""
    title = "hebbian_memit (--remedies.hebbian-memit.*)"
    head = f"{title:<{KEY_WIDTH}}" + "".join(h.rjust(10) for *_, h in COLUMNS)
    lines = [head, *(edit_line(k, done[k]["rows"]) for k in EDITS if k in done)]
    return [*lines, "", *metric_legend([metric for metric, *_ in COLUMNS])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="a pretrained --model")
    parser.add_argument("--results", type=Path, help="default runs/sweep-hebbian-MODEL.jsonl")
    parser.add_argument("--part", choices=("patching", "edits", "both"), default="both")
    parser.add_argument("--readme", action="store_true", help="write the README block only")
    args = parser.parse_args()
    results = args.results or Path("runs") / f"sweep-hebbian-{args.model}.jsonl"
    # a damaged results file: its FILE:LINE, not a traceback
    done = {r["key"]: r for _, r in read_records(results)} if results.exists() else {}
    if args.readme:
        sys.path.insert(0, str(Path(__file__).parent))
        from update_readme import replace_block

        command = f"$ .venv/bin/python scripts/sweep_hebbian.py --model {args.model}"
        lines = ["```", command, *patching_table(done), "", *edit_table(done), "```"]
        replace_block("sweep-hebbian", "\n".join(lines))
        print("README.md: sweep-hebbian block")
        return
    config = config_for(args.model)
    workdir = results.parent / f"sweep-hebbian-{args.model}-work"
    setting = build_setting(config, config.seed, workdir, starting_point(config))
    base, _ = setting.baseline()
    treated, control = split_one_way(setting)

    def save(record: dict) -> None:
        results.parent.mkdir(parents=True, exist_ok=True)
        with results.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
        done[record["key"]] = record

    if args.part in ("patching", "both"):
        n = len(decoder_layers(base))
        layers = sorted({round(i * (n - 1) / (PATCH_POINTS - 1)) for i in range(PATCH_POINTS)})
        for site in SITES:
            for layer in layers:
                key = f"patch {site} {layer}"
                if key not in done:
                    save({"key": key, **patched_right(setting, base, layer, site, treated)})
                r = done[key]
                print(
                    f"{key:<24} of {r['total']}: first token {r['first']} (closed book"
                    f" {r['closed first']}), whole answer {r['all']} ({r['closed all']};"
                    f" reading the fact {r['read']})",
                    flush=True,
                )
    if args.part in ("edits", "both"):
        for key in EDITS:
            if key not in done:
                setting.remedies.hebbian_memit = memit_config(HebbianMemitConfig(), key)
                began = time.perf_counter()
                edited = copy.deepcopy(base)
                memit_edit(setting, edited, treated, "context")
                before, after = setting.causal_lm(base), setting.causal_lm(edited)
                rows = effect_rows("hebbian_memit", setting, before, after, treated, control)
                save({"key": key, "rows": rows, "seconds": time.perf_counter() - began})
            seconds = done[key]["seconds"]
            print(f"{edit_line(key, done[key]['rows'])}  {seconds:>5.0f} s", flush=True)


if __name__ == "__main__":
    main()
