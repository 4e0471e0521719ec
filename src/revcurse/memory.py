"""A ceiling on a run's memory, so that running out is an error this program reports, not
the kernel's out-of-memory kill, which takes the rest of the machine's work with it.

    revcurse demo --max-memory 4   # GiB; default: held at start + 90% of what is available

On CPU, a process that outgrows the machine's memory is killed without a word (a large
batch, a long prompt, a 262k-word vocabulary). Under `memory_cap`:
- a watch reads the process's resident memory every 50 ms and, past the cap, raises
  MemoryCapReached in the main thread (like Ctrl-C: a BaseException, which no
  `except Exception` in a library swallows);
- an allocation far past it (one huge tensor between two reads) fails instead of being
  granted: the address space is limited (Linux's RLIMIT_AS, as `prlimit --as`) to what the
  process maps at the start plus the larger of the cap and the memory available. Not on a
  machine with a CUDA GPU, whose driver reserves far more address space than it uses.
Every command turns either into one line and exit status 3 (revcurse.recipes.run). Worker
processes inherit the address-space limit, not the watch.
"""

from __future__ import annotations

import errno
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

EXIT_OUT_OF_MEMORY = 3
GIB = 2**30
DEFAULT_SHARE = 0.9  # of the memory available at the start: the rest for everything else
EVERY = 0.05  # seconds between reads of the resident memory


class MemoryCapReached(BaseException):
    """The run's resident memory passed --max-memory."""


def _kib_line(path: str, key: str) -> int | None:
    """A `key: N kB` line of a /proc file, in bytes (None where there is none: not Linux)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    for text in lines:
        name, _, value = text.partition(":")
        if name == key:
            return int(value.split()[0]) * 1024
    return None


def resident() -> int | None:
    return _kib_line("/proc/self/status", "VmRSS")


@contextmanager
def memory_cap(gib: float | None) -> Iterator[float | None]:
    """Within the block, this process holds at most `gib` GiB (default: what it holds now
    plus 90% of the memory available); yields the cap in GiB, None where the system cannot
    say how much memory there is (then nothing is capped). The main thread only."""
    import resource

    available, held = _kib_line("/proc/meminfo", "MemAvailable"), resident()
    if (
        available is None
        or held is None
        or threading.current_thread() is not threading.main_thread()
    ):
        yield None
        return
    cap = int(gib * GIB) if gib is not None else held + int(DEFAULT_SHARE * available)
    previous_limit = resource.getrlimit(resource.RLIMIT_AS)
    _limit_address_space(max(cap, available))
    stop = threading.Event()

    def reached(signum: int, frame: object) -> None:
        used = (resident() or 0) / GIB
        raise MemoryCapReached(f"{used:.2f} GiB in use, over the cap of {cap / GIB:.2f} GiB")

    def watch() -> None:
        while not stop.wait(EVERY):
            if (resident() or 0) > cap:
                signal.pthread_kill(main, signal.SIGUSR1)
                stop.wait(1.0)  # once a second at most: its clean-up runs undisturbed

    main = threading.main_thread().ident or 0  # never 0: the main thread runs
    previous_handler = signal.signal(signal.SIGUSR1, reached)  # the watch's way in
    watcher = threading.Thread(target=watch, name="memory-cap", daemon=True)
    watcher.start()
    try:
        yield cap / GIB
    finally:
        stop.set()
        watcher.join()
        signal.signal(signal.SIGUSR1, previous_handler)
        resource.setrlimit(resource.RLIMIT_AS, previous_limit)


def _limit_address_space(extra: int) -> None:
    """What the process maps now plus `extra` bytes; unchanged beside a CUDA GPU."""
    import resource

    import torch

    mapped = _kib_line("/proc/self/status", "VmSize")
    if mapped is None or torch.cuda.is_available():
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = mapped + extra
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    if soft == resource.RLIM_INFINITY or limit < soft:
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


# What an allocation refused under the limit raises, besides MemoryError: torch's
# allocator, a thread that could not get its stack
OUT_OF_MEMORY_WORDS = ("can't allocate memory", "cannot allocate memory", "can't start new thread")


def out_of_memory(error: BaseException) -> bool:
    """Whether `error`, or an error it came from, is memory that ran out."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, MemoryError | MemoryCapReached):
            return True
        if isinstance(seen, OSError) and seen.errno == errno.ENOMEM:
            return True
        if any(words in str(seen).lower() for words in OUT_OF_MEMORY_WORDS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
