"""Run a `revcurse compare` for a make target, or finish the one it left stopped.

    dir=$(.venv/bin/python scripts/compare_or_resume.py runs/readme-smollm2-edits \
        --model smollm2-135m --seeds 1 --methods baseline,rome)

A new run goes to PREFIX-<date>-<time>. If a run of the same PREFIX was stopped (killed,
out of memory, Ctrl-C after a method finished), its partial folder is there instead, and it
is finished with `--resume` (its saved config; the options given now must agree with it).
compare's table and progress go to stderr; stdout gets one line: the finished run's folder,
for the make target's next step. Exits with compare's status if compare fails.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path


def stopped_run(prefix: Path) -> Path | None:
    """The newest partial folder that a compare into `prefix-<date>-<time>` left."""
    ours = re.compile(re.escape(f".{prefix.name}-") + r"\d{8}-\d{6}\.partial-\w+")
    found = [p for p in prefix.parent.glob(f".{prefix.name}-*") if ours.fullmatch(p.name)]
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


def output_dir(partial: Path) -> Path:
    """Where a partial run `.NAME.partial-XXXX` becomes a run: NAME, beside it."""
    return partial.parent / partial.name[1:].rsplit(".partial-", 1)[0]


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        raise SystemExit(__doc__.split("\n\n")[1])
    prefix, options = Path(sys.argv[1]), sys.argv[2:]
    compare = [str(Path(sys.executable).parent / "revcurse"), "compare", "--no-progress"]
    partial = stopped_run(prefix)
    if partial:
        print(f"finishing the stopped run {partial}", file=sys.stderr)
        command, out = [*compare, "--resume", str(partial), *options], output_dir(partial)
    else:
        out = prefix.parent / f"{prefix.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        command = [*compare, *options, "--output-dir", str(out)]
    status = subprocess.call(command, stdout=sys.stderr)
    if status:
        raise SystemExit(status)
    print(out)


if __name__ == "__main__":
    main()
