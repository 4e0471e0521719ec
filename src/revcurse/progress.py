"""Progress bars: tqdm's on a terminal; in a log file or a pipe, a plain line every 5%.

    revcurse demo 2> demo.log     # ~20 lines per bar in the log, not hundreds of \\r updates

Every bar of revcurse comes from `bar`, so CI logs, `nohup` and files stay readable.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import IO, Any

from tqdm.auto import tqdm

SHARE = 0.05  # not a terminal: one line per 5% of the work


class Lines:
    """A stream for tqdm that writes each refresh as a line of its own (no carriage returns,
    no erased lines): what a log file can hold."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def bar(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str,
    unit: str,
    disable: bool = False,
    leave: bool = True,
    initial: int = 0,
) -> tqdm:
    """A tqdm bar on stderr; when stderr is not a terminal, one line per SHARE of `total`."""
    options: dict[str, Any] = {"desc": desc, "unit": unit, "disable": disable, "leave": leave}
    if not disable and not sys.stderr.isatty():
        size = total if total is not None else len(iterable)  # type: ignore[arg-type]
        options |= {
            "file": Lines(sys.stderr),
            "miniters": max(1, round(size * SHARE)),  # fixed: tqdm's own adapts to time
            "mininterval": 0.0,
            "maxinterval": float("inf"),
            "ncols": 100,
        }
    return tqdm(iterable, total=total, initial=initial, **options)
