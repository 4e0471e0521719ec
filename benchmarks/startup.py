"""How fast a bad option is refused, against the time of importing torch, side by side.

    .venv/bin/python benchmarks/startup.py      # ~15 s: 3 runs of each, fresh processes

`revcurse compare --train.decay nope` must exit with status 2, leave no run directory and
take less than twice `python -c "import torch"` (the options are checked when the config is
built, before the reader is loaded or anything trained). Prints the median of each, the
ratio and whether it meets the target; exits 1 when it does not.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 2.0  # bad option / import torch
RUNS = 3  # fresh processes each; the median evens out a busy core
REVCURSE = str(Path(sys.executable).parent / "revcurse")


def timed(command: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    return time.perf_counter() - start, done


def main() -> None:
    out = Path(tempfile.mkdtemp()) / "never"
    bad = [REVCURSE, "compare", "--train.decay", "nope", "--output-dir", str(out)]
    torch_times, bad_times = [], []
    for _ in range(RUNS):  # interleaved, so both see the same machine
        torch_times.append(timed([sys.executable, "-c", "import torch"])[0])
        seconds, done = timed(bad)
        bad_times.append(seconds)
        if done.returncode != 2 or out.exists():
            sys.exit(f"bad option: exit {done.returncode}, run dir left: {out.exists()}")
    torch_s, bad_s = statistics.median(torch_times), statistics.median(bad_times)
    ratio = bad_s / torch_s
    print(f"import torch: {torch_s:.2f} s; compare --train.decay nope: {bad_s:.2f} s (exit 2)")
    verdict = "meets" if ratio < TARGET else "MISSES"
    print(f"ratio {ratio:.2f}x import torch, target < {TARGET:.1f}x: {verdict}")
    sys.exit(0 if ratio < TARGET else 1)


if __name__ == "__main__":
    main()
