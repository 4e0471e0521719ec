"""Wall time of `revcurse demo` against its 60 s target, and whether it shows the curse.

    .venv/bin/python benchmarks/demo_time.py [--runs 1]

Runs the real command in a fresh process (imports included, as a user sees it), then checks
the issue's bar on results.json: p2d/d2p same-direction exact match >= 0.95, reverse <= 0.05
with rank accuracy within 2 standard errors of chance, `both` reverse >= 0.9.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 60.0


def check_curse(rows: list[dict]) -> list[str]:
    """The failed criteria (empty when the curse is shown as the issue asks)."""
    value = {(r["group"], r["direction"], r["metric"]): r for r in rows}
    failures = []
    for group in ("p2d", "d2p"):
        if value[group, "same", "exact_match"]["value"] < 0.95:
            failures.append(f"{group} same exact_match < 0.95")
        if value[group, "reverse", "exact_match"]["value"] > 0.05:
            failures.append(f"{group} reverse exact_match > 0.05")
        rank, chance = value[group, "reverse", "rank_acc"], value[group, "reverse", "rank_chance"]
        se = math.sqrt(chance["value"] * (1 - chance["value"]) / rank["n"])
        if abs(rank["value"] - chance["value"]) > 2 * se:
            msg = f"{group} reverse rank_acc {rank['value']:.3f} not within 2 SE of chance"
            failures.append(msg)
    if value["both", "reverse", "exact_match"]["value"] < 0.9:
        failures.append("both reverse exact_match < 0.9")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="repeat and report each run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    revcurse = shutil.which("revcurse") or str(Path(sys.executable).parent / "revcurse")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            out = Path(tmp) / f"run{run}"
            start = time.perf_counter()
            command = [revcurse, "demo", "--output-dir", str(out), "--seed", str(args.seed)]
            subprocess.run([*command, "--no-progress"], check=True, stdout=subprocess.DEVNULL)
            seconds = time.perf_counter() - start
            failures = check_curse(json.loads((out / "results.json").read_text())["rows"])
            ok &= seconds <= TARGET_SECONDS and not failures
            print(
                f"run {run}: revcurse demo {seconds:.1f} s, target {TARGET_SECONDS:.0f} s, "
                f"ratio target/actual {TARGET_SECONDS / seconds:.2f}x; "
                + ("curse shown" if not failures else "FAILED: " + "; ".join(failures))
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
