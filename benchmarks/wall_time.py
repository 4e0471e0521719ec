"""Wall time of revcurse's commands against their targets, as a user runs them.

    .venv/bin/python benchmarks/wall_time.py                 # demo, then analyze on it
    .venv/bin/python benchmarks/wall_time.py --compare       # also compare (minutes)

Each command runs in a fresh process (imports included) on the embedded defaults and is
timed against its target: demo 60 s, analyze 60 s, compare 180 s. The demo's result is
also checked against the issue's bar: p2d/d2p same-direction exact match >= 0.95, reverse
<= 0.05 with rank accuracy within 2 standard errors of chance, `both` reverse >= 0.9.
Prints one line per command with the ratio target / actual (>= 1 meets the target).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"demo": 60.0, "analyze": 60.0, "compare": 180.0}
REVCURSE = str(Path(sys.executable).parent / "revcurse")


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
            failures.append(
                f"{group} reverse rank_acc {rank['value']:.3f} not within 2 SE of chance"
            )
    if value["both", "reverse", "exact_match"]["value"] < 0.9:
        failures.append("both reverse exact_match < 0.9")
    return failures


def timed(name: str, *args: str) -> float:
    start = time.perf_counter()
    subprocess.run([REVCURSE, name, *args, "--no-progress"], check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    target = TARGETS[name]
    verdict = "meets" if seconds <= target else "MISSES"
    print(
        f"revcurse {name}: {seconds:.1f} s, target {target:.0f} s, "
        f"ratio target/actual {target / seconds:.2f}x ({verdict} the target)"
    )
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", action="store_true", help="also time revcurse compare")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        demo, analysis = Path(tmp) / "demo", Path(tmp) / "analyze"
        ok &= timed("demo", "--output-dir", str(demo), "--seed", str(args.seed)) <= TARGETS["demo"]
        failures = check_curse(json.loads((demo / "results.json").read_text())["rows"])
        print(
            "demo result: " + ("curse shown" if not failures else "FAILED: " + "; ".join(failures))
        )
        ok &= not failures
        ok &= timed("analyze", str(demo), "--output-dir", str(analysis)) <= TARGETS["analyze"]
        if args.compare:
            out = Path(tmp) / "compare"
            ok &= timed("compare", "--output-dir", str(out)) <= TARGETS["compare"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
