"""A GGUF model's first load (dequantise, keep as safetensors) against its second (the copy).

    .venv/bin/python benchmarks/model_load.py                     # smollm2-135m, ~30 s
    .venv/bin/python benchmarks/model_load.py --model gemma3-270m

Loads the model twice with revcurse.lm.pretrained.load_pretrained, each time in a fresh
process and with an empty cache folder of its own (REVCURSE_CACHE), so the first load
dequantises the GGUF file and the second reads the safetensors copy the first one kept.
Prints both times and the ratio second / first (target <= 0.2); exit status 1 if missed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

TARGET = 0.2
LOAD = (
    "import sys, time; from revcurse.lm.pretrained import load_pretrained; "
    "t = time.perf_counter(); load_pretrained(sys.argv[1]); print(time.perf_counter() - t)"
)


def timed_load(model: str, cache: str) -> float:
    env = {**os.environ, "REVCURSE_CACHE": cache}
    done = subprocess.run(
        [sys.executable, "-c", LOAD, model], env=env, capture_output=True, text=True, check=True
    )
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="a preset or a .gguf file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        first = timed_load(args.model, cache)
        second = timed_load(args.model, cache)
    ratio = second / first
    print(f"{args.model}: first load {first:.1f} s (dequantise, cache), second {second:.2f} s")
    verdict = "ok" if ratio <= TARGET else "MISSED"
    print(f"second / first = {ratio:.3f} (target <= {TARGET}, imports included): {verdict}")
    sys.exit(0 if ratio <= TARGET else 1)


if __name__ == "__main__":
    main()
