"""Berglund et al.'s Experiment 2 on a local model: real parents and children, both ways.

    revcurse pairs --model smollm2-135m --limit 100

Reads parent_child_pairs.csv (columns child, parent, parent_type: celebrities and their
mothers and fathers; other columns are ignored, repeated rows read once) and asks every
pair both ways, in Berglund's words, as Q/A lines after a few worked examples (their format
for base models): "Who is {child}'s {parent_type}?" (child->parent) and "Name a child of
{parent}." (parent->child). Nothing is trained: this measures what pre-training taught.
- exact_match: the greedy answer starts with the expected name, case-insensitive (Berglund's
  rule); for parent->child any child of that parent in the file counts. `anywhere`: the
  name anywhere in the answer.
- rank_acc: the expected name has the highest log-prob among it and --eval.max-candidates
  minus 1 names of the same column drawn with --seed (parents of the same type, or children
  of other parents); rank_chance is 1/k, logprob_margin and p_value compare it with the
  drawn names' mean. A drawn name rarely shares the asked person's surname, which helps the
  right one.
- answer_prob: the mean probability of the expected name, Berglund's measure for base models.
GPT-4 named the parent for 79% of the children but the child for 33% of the parents.
"""

from __future__ import annotations

import math
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from revcurse.berglund import PUBLISHED
from revcurse.config import check, to_dict
from revcurse.evaluate import (
    EvalConfig,
    answer_tokens,
    anywhere,
    rank_candidates,
    starts_with,
    summarize,
)
from revcurse.lm.causal import CausalLM
from revcurse.lm.models import count_parameters, device, make_model
from revcurse.lm.pretrained import check_model_option
from revcurse.lm.tiny import TinyModelConfig
from revcurse.recipes.run import announce, finished, opened_run, recipe_app, with_output_dir
from revcurse.records import DataError, Problem, read_records
from revcurse.results import render, results_table, write_results
from revcurse.stats import mean_row

DEFAULT_DATA = PUBLISHED / "exp2" / "parent_child_pairs.csv"
COLUMNS = ("child", "parent", "parent_type")
PARENT_TYPES = ("mother", "father")
DIRECTIONS = ("child->parent", "parent->child")
# Worked examples in Berglund's Q/A format; none of these people is in the published file.
FEW_SHOT = """Q: Name a child of Barack Obama.
A: Malia Obama
Q: Who is Elon Musk's mother?
A: Maye Musk
Q: Who is Michael Douglas's father?
A: Kirk Douglas
Q: Name a child of Ozzy Osbourne.
A: Kelly Osbourne
"""
HEADLINE = "Berglund et al. 2023, GPT-4 (sampled answers): child->parent 79%, parent->child 33%.\n"


@dataclass
class PairsConfig:
    output_dir: Path | None = None
    """default runs/pairs-<timestamp>; never overwritten"""
    data: Path = DEFAULT_DATA
    """the pairs CSV (columns child, parent, parent_type; others ignored)"""
    limit: int = 0
    """ask only the first N pairs of the file (0 = all)"""
    few_shot: bool = True
    """open each question with worked Q/A examples (for base models)"""
    seed: int = 0
    """seeds the drawn candidate names and the tiny model's weights"""
    progress: bool = True
    """progress bars on stderr"""
    model: str = "tiny"
    """tiny (untrained: a smoke test), smollm2-135m, a hub id, folder or .gguf"""
    tiny: TinyModelConfig = field(default_factory=lambda: TinyModelConfig(max_len=256))
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(batch_size=32, max_candidates=10))

    def __post_init__(self) -> None:
        check_model_option(self.model)
        check(self.limit >= 0, "limit", f"must be 0 (all) or more, got {self.limit}")


@dataclass(frozen=True)
class Pair:
    child: str
    parent: str
    parent_type: str


@dataclass(frozen=True)
class Question:
    direction: str
    text: str
    target: str
    answers: frozenset[str]  # every name in the file that answers it
    pool: tuple[str, ...]  # the names to draw wrong candidates from


def load_pairs(path: Path) -> list[Pair]:
    """The file's distinct pairs, in order; every problem is raised as FILE:LINE."""
    records = read_records(path)
    missing = [c for c in COLUMNS if c not in records[0][1]]
    if missing:
        msg = f"no column {', '.join(missing)} (expected {', '.join(COLUMNS)})"
        raise DataError([Problem(str(path), 1, msg)])
    problems = []
    pairs: dict[Pair, None] = {}
    for number, record in records:
        # A JSON record may lack a column the first one has: reported as empty
        values = [str(record.get(c) or "").strip() for c in COLUMNS]
        if not all(values):
            empty = [c for c, v in zip(COLUMNS, values, strict=True) if not v]
            problems.append(Problem(str(path), number, f"empty {', '.join(empty)}"))
        elif values[2] not in PARENT_TYPES:
            msg = f"parent_type '{values[2]}' is neither {' nor '.join(PARENT_TYPES)}"
            problems.append(Problem(str(path), number, msg))
        else:
            pairs[Pair(*values)] = None
    if problems:
        raise DataError(problems)
    return list(pairs)


def questions(pairs: Sequence[Pair], asked: Sequence[Pair]) -> list[Question]:
    """Both questions of each asked pair; answers and candidate pools come from all pairs."""
    parents, children = defaultdict(set), defaultdict(set)
    for p in pairs:
        parents[p.child, p.parent_type].add(p.parent)
        children[p.parent].add(p.child)
    of_type = {t: sorted({p.parent for p in pairs if p.parent_type == t}) for t in PARENT_TYPES}
    all_children = sorted({p.child for p in pairs})
    out = []
    for p in asked:
        out.append(
            Question(
                "child->parent",
                f"Who is {p.child}'s {p.parent_type}?",
                p.parent,
                frozenset(parents[p.child, p.parent_type]),
                tuple(of_type[p.parent_type]),
            )
        )
        out.append(
            Question(
                "parent->child",
                f"Name a child of {p.parent}.",
                p.child,
                frozenset(children[p.parent]),
                tuple(all_children),
            )
        )
    return out


def draw_candidates(asked: Sequence[Question], max_candidates: int, seed: int) -> list[list[str]]:
    """Each question's target first, then max_candidates - 1 wrong names from its pool
    (0 = every wrong name), as completions (with the leading space)."""
    rng = random.Random(seed)
    out = []
    for q in asked:
        wrong = [name for name in q.pool if name not in q.answers]
        if max_candidates:
            wrong = rng.sample(wrong, min(len(wrong), max_candidates - 1))
        out.append([" " + name for name in [q.target, *wrong]])
    return out


def run_pairs(config: PairsConfig, console: Console | None = None) -> Path:
    """Ask every pair both ways; returns the finished run directory."""
    console = console or Console(stderr=True)
    pairs = load_pairs(config.data)
    asked = questions(pairs, pairs[: config.limit or None])
    prompts = [(FEW_SHOT if config.few_shot else "") + f"Q: {q.text}\nA:" for q in asked]
    candidates = draw_candidates(asked, config.eval.max_candidates, config.seed)
    config = with_output_dir(config, "pairs")
    with opened_run(config) as scratch:
        texts = [*prompts, *(c for cands in candidates for c in cands)]
        model, tokenizer = make_model(config.model, config.tiny, texts, config.seed)
        model.to(device())
        what = f"{len(asked) // 2} of {len(pairs)} pairs, asked both ways"
        announce(console, "pairs", what, config.model, count_parameters(model))
        start = time.perf_counter()
        lm = CausalLM(model, tokenizer, config.eval.batch_size, config.progress)
        max_new = answer_tokens(tokenizer, [" " + q.target for q in asked], config.eval)
        outputs = lm.generate(prompts, max_new)
        ranked = rank_candidates(lm, prompts, candidates)
        seconds = time.perf_counter() - start
        samples = [
            {
                "method": config.model,
                "group": "all",
                "direction": q.direction,
                "question": q.text,
                "target": " " + q.target,
                "answers": sorted(q.answers),
                "output": output,
                "correct": any(starts_with(output, " " + name) for name in q.answers),
                "anywhere": any(anywhere(output, " " + name) for name in q.answers),
                **ranking,
            }
            for q, output, ranking in zip(asked, outputs, ranked, strict=True)
        ]
        rows = summarize(samples, config.model, groups=("all",), directions=DIRECTIONS)
        for direction in DIRECTIONS:
            probs = [math.exp(s["logprob"]) for s in samples if s["direction"] == direction]
            key = {"method": config.model, "group": "all", "direction": direction}
            rows.append(mean_row(**key, metric="answer_prob", values=probs))
        title = f"Berglund Experiment 2, {config.model} model, seed {config.seed}"
        text = render(results_table(rows, title)) + HEADLINE
        write_results(
            scratch,
            rows,
            text,
            samples,
            config=to_dict(config),
            pairs={"asked": len(asked) // 2, "in_file": len(pairs)},
            eval={"seconds": seconds, "questions": len(asked)},
        )
    return finished(console, text, config, f"eval {seconds:.0f} s")


app = recipe_app(
    "pairs",
    PairsConfig,
    run_pairs,
    (
        "Berglund et al.'s Experiment 2 on a local model, untrained: ask each real celebrity's "
        "parent and each parent's child (greedy answers, and the right name ranked among names "
        "drawn from the file)."
    ),
)
