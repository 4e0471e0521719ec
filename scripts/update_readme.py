"""Put a real run's results table into README.md (numbers are regenerated, never typed).

    python scripts/update_readme.py runs/demo-20261126-093000

Replaces the text between `<!-- results:demo:start -->` and `<!-- results:demo:end -->`
with the run's table.txt and the command that reproduces it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def main(run_dir: Path) -> None:
    results = json.loads((run_dir / "results.json").read_text())
    table = (run_dir / "table.txt").read_text().rstrip()
    train, evaluation = results["train"]["seconds"], results["eval"]["seconds"]
    block = (
        f"<!-- results:demo:start -->\n```\n$ revcurse demo --seed {results['config']['seed']}\n"
        f"{table}\n```\n"
        f"Train {train:.0f} s + evaluation {evaluation:.0f} s = {train + evaluation:.0f} s "
        f"on 2 CPU cores (torch {results['versions']['torch']}).\n"
        "<!-- results:demo:end -->"
    )
    text = README.read_text()
    pattern = re.compile(r"<!-- results:demo:start -->.*?<!-- results:demo:end -->", re.DOTALL)
    if not pattern.search(text):
        sys.exit(f"{README}: no results:demo markers")
    README.write_text(pattern.sub(lambda _: block, text))
    print(f"{README}: table from {run_dir}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
