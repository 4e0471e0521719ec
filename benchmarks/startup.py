"""Start-up of revcurse's commands against the time of importing torch, side by side.

    .venv/bin/python benchmarks/startup.py      # ~30 s: 5 fresh processes of each

- `revcurse --help` and `revcurse facts validate` on a small file import no torch: each must
  take less than a third of `python -c "import torch"`;
- `revcurse compare --train.decay nope` must exit with status 2, leave no run directory and
  take less than twice `import torch` (the options are checked when the config is built,
  before the reader is loaded or anything trained).
Prints the median of each, its ratio and whether it meets its target; exits 1 if one does not.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = 5  # fresh processes each, interleaved; the median evens out a busy core
REVCURSE = str(Path(sys.executable).parent / "revcurse")


def timed(command: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    return time.perf_counter() - start, done


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    facts = folder / "facts.jsonl"
    facts.write_text(
        "".join(
            f'{{"group": "p2d", "a": "Person {i}", "b": "the keeper of lighthouse {i}"}}\n'
            for i in range(15)
        )
    )
    never = folder / "never"
    checks = {  # name: (command, target ratio to import torch, expected exit status)
        "revcurse --help": ([REVCURSE, "--help"], 1 / 3, 0),
        "revcurse facts validate (15 lines)": (
            [REVCURSE, "facts", "validate", str(facts)],
            1 / 3,
            0,
        ),
        "revcurse compare --train.decay nope": (
            [REVCURSE, "compare", "--train.decay", "nope", "--output-dir", str(never)],
            2.0,
            2,
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in ["import torch", *checks]}
    for _ in range(RUNS):
        times["import torch"].append(timed([sys.executable, "-c", "import torch"])[0])
        for name, (command, _, status) in checks.items():
            seconds, done = timed(command)
            if done.returncode != status or never.exists():
                sys.exit(f"{name}: exit {done.returncode} (expected {status}): {done.stderr}")
            times[name].append(seconds)
    torch_s = statistics.median(times["import torch"])
    print(f"import torch: {torch_s:.2f} s (median of {RUNS})")
    ok = True
    for name, (_, target, _) in checks.items():
        seconds = statistics.median(times[name])
        ratio = seconds / torch_s
        meets = ratio < target
        ok &= meets
        verdict = "meets" if meets else "MISSES"
        print(
            f"{name}: {seconds:.2f} s = {ratio:.2f}x import torch, target < {target:.2f}x:", verdict
        )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
