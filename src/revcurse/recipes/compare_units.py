"""`revcurse compare`'s units of work: one seed's setting, its methods, here or on workers.

    revcurse compare --workers 2   # the units of work, side by side on two processes

A unit is one seed's methods that share its baseline model, or one method that trains its
own model (revcurse.remedies.Remedy.own_model); units run in this process, or spread over
spawned worker processes that each get an equal share of torch's threads.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

from revcurse.errors import UserError
from revcurse.evaluate import evaluate
from revcurse.progress import bar as progress_bar
from revcurse.recipes.remedy_run import build_setting
from revcurse.remedies import REMEDIES, apply_remedy
from revcurse.remedies.setting import Setting
from revcurse.results import kept_model_dir, run_directory

if TYPE_CHECKING:
    from revcurse.lm.causal import LanguageModel
    from revcurse.recipes.remedy_run import RemedyRun, Start


@dataclass
class MethodRun:
    """One method on one seed: its result rows, answers, cost and a one-line summary."""

    method: str
    seed: int
    rows: list[dict]
    samples: list[dict]
    cost: dict
    summary: str


def run_methods(
    setting: Setting, methods: Sequence[str], keep: Sequence[str] = ()
) -> Iterator[MethodRun]:
    """Apply and score each method on one seed's setting, in order (later ones may reuse the
    baseline model an earlier one trained), each run as soon as it is done; the models of
    the methods in `keep` are saved in the run folder (kept_model_dir)."""
    for method in methods:
        start = time.perf_counter()
        treatment = apply_remedy(setting, method)
        if method in keep:
            keep_model(treatment.lm, kept_model_dir(setting.workdir, setting.seed, method))
        # with its fact in context, a question comes after the worked examples; closed book,
        # as the facts were trained (examples that answer from a context pull a fine-tuned
        # SmolLM2's closed-book answers down: same direction 0.28 -> 0.07)
        questions = treatment.test or setting.test_examples
        test = setting.pose(questions) if treatment.in_context else setting.ask(questions)
        rows, samples = evaluate(treatment.lm, test, setting.eval, method, setting.seed)
        seconds = time.perf_counter() - start
        cost = {
            "method": method,
            "seed": setting.seed,
            "train_seconds": treatment.cost.seconds,
            "train_tokens": treatment.cost.tokens,
            "train_flops": treatment.cost.flops,
            "train_steps": len(treatment.cost.losses),
            "train_curve": treatment.cost.curve,  # --budget converged: (step, exact match)
            # its (start) model was loaded from the cache: what training it took then
            "cached_seconds": treatment.cost.cached_seconds,
            "final_loss": treatment.cost.losses[-1],
            "wall_seconds": seconds,
        }
        one_way = [r for r in rows if r["metric"] == "exact_match" and r["group"] != "both"]
        summary = ", ".join(f"{r['group']} {r['direction']} {r['value']:.2f}" for r in one_way)
        yield MethodRun(
            method,
            setting.seed,
            [{**r, "seed": setting.seed} for r in [*rows, *treatment.rows]],
            [{**s, "seed": setting.seed} for s in samples],
            cost,
            f"seed {setting.seed} {method:<16} {summary}  ({seconds:.0f} s)",
        )


@runtime_checkable
class Keepable(Protocol):
    def save(self, folder: Path) -> None: ...


def keep_model(lm: LanguageModel, folder: Path) -> None:
    """`lm`'s model saved in `folder`, whole or not at all (a kill mid-write leaves none; a
    resumed run that trains the model again replaces one a killed run kept)."""
    if not isinstance(lm, Keepable):
        raise UserError(f"--keep-models: {type(lm).__name__} has no model of its own to keep")
    shutil.rmtree(folder, ignore_errors=True)
    with run_directory(folder) as scratch:
        lm.save(scratch)


def work_units(methods: Sequence[str], seeds: Sequence[int]) -> list[tuple[int, list[str]]]:
    """What can run side by side: per seed, the methods that share its baseline model
    together, and each method that trains its own model from the start alone; largest first."""
    shared = [m for m in methods if not REMEDIES[m].own_model]
    units = [(seed, shared) for seed in seeds if shared]
    return units + [(seed, [m]) for m in methods if REMEDIES[m].own_model for seed in seeds]


def worker_count(workers: int, model: str, units: int) -> int:
    """`workers` (--workers), or by default (0) one process per core (torch's threads) for
    the tiny model; one for a pretrained model, whose every process would hold its own copy."""
    wanted = workers or (torch.get_num_threads() if model == "tiny" else 1)
    return max(1, min(wanted, units))


_worker_start: Start | None = None


def _start_worker(start: Start, threads: int, parent: int) -> None:
    global _worker_start
    end_with_parent(parent)
    torch.set_num_threads(threads)  # the cores are shared out among the workers
    _worker_start = start


def end_with_parent(parent: int, every: float = 0.5) -> None:
    """This process exits within `every` seconds of its parent's end, whatever ended it
    (`kill -9`, the kernel's out-of-memory kill, a crash): an orphan is handed to another
    parent, so its parent's pid changes. Workers ignore Ctrl-C and are ended by their
    parent; without this watch a parent's death would leave them training on every core."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()


def _run_in_worker(
    config: RemedyRun, seed: int, methods: list[str], workdir: Path, keep: Sequence[str]
) -> list[MethodRun]:
    """One unit of work in a worker process, whose starting point came with _start_worker."""
    assert _worker_start is not None, "a worker process starts with _start_worker"
    setting = build_setting(config, seed, workdir, _worker_start)
    return list(run_methods(setting, methods, keep))


@contextmanager
def ctrl_c_held_back() -> Iterator[None]:
    """Ctrl-C in this block is held back until it ends, then delivered as usual. Processes
    started in it never see it (a blocked signal stays blocked across fork and exec), so
    it stops only this process, which ends them: no half-imported worker prints a
    traceback. Nor does it cut short this process's work in the block, whichever of its
    threads (torch's, a pool's) the signal reached. A no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    usual = signal.signal(signal.SIGINT, lambda number, _: came.append(number))
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # one that came: noted
        signal.signal(signal.SIGINT, usual)
        if came:
            signal.raise_signal(signal.SIGINT)


def run_units(
    config: RemedyRun,
    units: list[tuple[int, list[str]]],
    workdir: Path,
    start: Start,
    workers: int,
    keep: Sequence[str] = (),
) -> Generator[MethodRun]:
    """Every method's run: in this process, each as it is done, or spread over `workers`
    processes that each get an equal share of the threads (small models use many threads
    poorly), a unit's runs as the unit is done. Ctrl-C or an error at any moment ends the
    workers at once; so does this process's death (end_with_parent)."""
    if workers == 1:
        for seed, methods in units:
            setting = build_setting(config, seed, workdir, start)
            yield from run_methods(setting, methods, keep)
        return
    threads = max(1, torch.get_num_threads() // workers)
    quiet = replace(config, progress=False)  # one bar here instead of one per worker
    with worker_pool(workers, _start_worker, (start, threads, os.getpid())) as pool:
        bar = progress_bar(
            total=len(units), desc="compare", unit="unit", disable=not config.progress
        )
        try:
            with ctrl_c_held_back():  # the workers start as the units are submitted
                futures = [
                    pool.submit(_run_in_worker, quiet, *unit, workdir, keep) for unit in units
                ]
            for future in as_completed(futures):
                bar.update()
                yield from future.result()
        finally:
            bar.close()


@contextmanager
def worker_pool(
    workers: int, initializer: Callable[..., None], initargs: tuple
) -> Iterator[ProcessPoolExecutor]:
    """A pool of `workers` spawned processes (fork is unsafe once torch has threads) that
    ends whole. An error or Ctrl-C in the block ends its workers at once (else leaving the
    pool would wait for every unit to finish). Its shutdown is never cut short by Ctrl-C:
    an interrupted shutdown leaves the pool's own thread closing its pipe while Python
    exits, and CPython 3.11 may then write to the closed pipe (a traceback at exit)."""
    spawn = multiprocessing.get_context("spawn")
    others = set(multiprocessing.active_children())
    pool = ProcessPoolExecutor(workers, spawn, initializer, initargs)
    try:
        yield pool
    except BaseException:
        for process in set(multiprocessing.active_children()) - others:
            process.terminate()
        raise
    finally:
        with ctrl_c_held_back():  # a Ctrl-C meanwhile is raised as the shutdown ends
            pool.shutdown(wait=True)
