"""Berglund's Experiment 1 on SmolLM2-135M: wall time against its target, and the curse.

    .venv/bin/python benchmarks/berglund_smollm2.py                  # ~10 min on 2 CPU cores
    .venv/bin/python benchmarks/berglund_smollm2.py --facts-per-group 1 --train.steps 2   # smoke
    .venv/bin/python benchmarks/berglund_smollm2.py --keep runs/berglund-smollm2   # keep the run

Runs `revcurse berglund --model smollm2-135m` in a fresh process on a subset that shows the
curse: 8 facts a group (24) with 5 training paraphrases each, full fine-tuning at lr 1e-4,
batch 8, 60 steps (3 passes), 2 held-out paraphrases per fact and direction, each ranked
against 3 other facts' completions; one batch of 128 generates all 96 answers. Any further
`revcurse berglund` option given here overrides these (the last occurrence wins). Prints the
wall time with the ratio target / actual (>= 1 meets the 600 s target) and whether the
trained model shows the curse: same-direction exact match >= 0.5 for p2d and d2p, reverse
<= 0.05.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 600.0
REVCURSE = str(Path(sys.executable).parent / "revcurse")
SUBSET = (
    "--model smollm2-135m --facts-per-group 8 --train-phrasings 5 --test-phrasings 2 "
    "--train.finetune full --train.lr 1e-4 --train.batch-size 8 --train.steps 60 "
    "--train.warmup-steps 5 --eval.max-candidates 4 --eval.batch-size 128"
).split()


def check_curse(rows: list[dict]) -> list[str]:
    """The failed criteria of the trained model (empty when the curse is shown)."""
    value = {(r["method"], r["group"], r["direction"], r["metric"]): r["value"] for r in rows}
    failures = []
    for group in ("p2d", "d2p"):
        same = value["trained", group, "same", "exact_match"]
        reverse = value["trained", group, "reverse", "exact_match"]
        if same < 0.5:
            failures.append(f"{group} same exact_match {same:.2f} < 0.5")
        if reverse > 0.05:
            failures.append(f"{group} reverse exact_match {reverse:.2f} > 0.05")
    return failures


def main() -> int:
    args = sys.argv[1:]
    keep = None
    if "--keep" in args:  # --keep DIR: the run directory stays there (e.g. for the README)
        at = args.index("--keep")
        keep, args = Path(args[at + 1]), args[:at] + args[at + 2 :]
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = keep or Path(tmp) / "berglund"
        command = [REVCURSE, "berglund", *SUBSET, *args]
        start = time.perf_counter()
        subprocess.run([*command, "--output-dir", str(run_dir), "--no-progress"], check=True)
        seconds = time.perf_counter() - start
        results = json.loads((run_dir / "results.json").read_text())
    verdict = "meets" if seconds <= TARGET else "MISSES"
    print(
        f"revcurse berglund --model smollm2-135m: {seconds:.1f} s (train "
        f"{results['train']['seconds']:.0f} s, eval {results['eval']['seconds']:.0f} s), "
        f"target {TARGET:.0f} s, ratio target/actual {TARGET / seconds:.2f}x "
        f"({verdict} the target)"
    )
    failures = check_curse(results["rows"])
    print("result: " + ("curse shown" if not failures else "FAILED: " + "; ".join(failures)))
    return 0 if seconds <= TARGET and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
