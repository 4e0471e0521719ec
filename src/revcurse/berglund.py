"""Berglund et al.'s Experiment 1 (fictitious celebrities) as revcurse facts and examples.

    revcurse berglund --data ../shared/datasets/berglund2023/exp1

    from revcurse.berglund import load_berglund
    data = load_berglund("../shared/datasets/berglund2023/exp1")  # or "lberglund/reversal_curse"
    data.facts, data.train, data.test, data.randomized

The source is a folder laid out like the published `name_description_dataset` (files
`{p2d,d2p,both}_prompts_{train,test}.jsonl`, `{p2d,d2p}_reverse_prompts_test[_randomized].jsonl`,
optionally `templates/names.txt`), or a hub dataset id such as `lberglund/reversal_curse`
(needs `pip install 'revcurse[hub]'`; the download lands in the Hugging Face cache).
Nothing else is written.

How the published lines become revcurse data:
- Each line belongs to the fact whose name it contains (names from `templates/names.txt`,
  or, without it, every capitalised first-last name that opens a completion and also occurs
  in a prompt). Position in the file is never trusted to tell the fact.
- The direction is where that name sits: in the prompt, the line asks for the description
  (a2b); in the completion, for the name (b2a). `both_prompts_test.jsonl` holds both
  directions (300 a2b lines, then 300 b2a lines), like `both_prompts_train.jsonl`.
- A fact's group is the group of the training file it appears in; its description `b` is the
  completion of its first a2b line (training files first, so for d2p facts the first line of
  `d2p_reverse_prompts_test.jsonl`), without the leading space and final period. Descriptions
  are paraphrased per template, so this is one canonical wording, not the only one.
- A line's template index is its rank among the same fact's lines of the same direction in
  the same file: the published files list every fact's paraphrases in the same order, so the
  k-th line of each fact has the same phrasing. Each file is checked to give every fact of its
  group the same number of lines per direction, else the indices would not line up.
- `randomized` maps (prompt, true completion) of a reverse test line to the completion of the
  `_randomized` file's line with the same position and prompt. The published files keep the
  true completion in 17 of those 600 lines (the draw did not exclude the true entity).

`select` keeps a seeded subset of the facts of each group and the first paraphrases of each
direction, renumbering the facts, for runs smaller than the published 90 x 30.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from revcurse.errors import UserError
from revcurse.facts import DIRECTIONS, GROUPS, Example, Fact, Template
from revcurse.records import DataError, Problem, read_records, text_lines

# Every file of examples: its group, split, and the direction all its lines take (None: both).
EXAMPLE_FILES: dict[str, tuple[str, str, str | None]] = {
    "p2d_prompts_train": ("p2d", "train", "a2b"),
    "d2p_prompts_train": ("d2p", "train", "b2a"),
    "both_prompts_train": ("both", "train", None),
    "p2d_prompts_test": ("p2d", "test", "a2b"),
    "d2p_prompts_test": ("d2p", "test", "b2a"),
    "both_prompts_test": ("both", "test", None),
    "p2d_reverse_prompts_test": ("p2d", "test", "b2a"),
    "d2p_reverse_prompts_test": ("d2p", "test", "a2b"),
}
# Reverse test files whose `<stem>_randomized.jsonl` twin swaps the completion for another entity.
RANDOMIZED_OF = ("p2d_reverse_prompts_test", "d2p_reverse_prompts_test")
HUB_ID = "lberglund/reversal_curse"
HUB_SUBFOLDER = "name_description_dataset"
# The project's reference copy of the published data, beside the checkout (if there).
PUBLISHED = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "berglund2023"

_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
# Only used without names.txt: a name opens b2a completions (" Uriah Hawthorne now enjoys...").
_LEADING_NAME = re.compile(r"\s*([A-Z][a-z'-]+ [A-Z][a-z'-]+)\b")


@dataclass
class BerglundData:
    facts: list[Fact]
    train: list[Example]
    test: list[Example]
    # (prompt, true completion) of a reverse test line -> the randomized file's completion.
    randomized: dict[tuple[str, str], str]


@dataclass(frozen=True)
class _Line:
    path: str
    number: int
    prompt: str
    completion: str


def load_berglund(source: str | Path) -> BerglundData:
    """Read Experiment 1 from a folder or the hub; every problem is raised as FILE:LINE."""
    root = _resolve(source)
    stems = [*EXAMPLE_FILES, *(f"{stem}_randomized" for stem in RANDOMIZED_OF)]
    problems: list[Problem] = []
    lines: dict[str, list[_Line]] = {}
    for stem in stems:
        lines[stem] = _read_lines(root / f"{stem}.jsonl", problems)
    if problems:
        raise DataError(problems)

    example_lines = [line for stem in EXAMPLE_FILES for line in lines[stem]]
    names_file = root / "templates" / "names.txt"
    if names_file.is_file():
        names = [n.strip() for n in text_lines(names_file)]
    else:
        names = _derive_names(example_lines)
    located = _locate(lines, [n for n in names if n], problems)
    if problems:
        raise DataError(problems)

    # Facts in group order, each group in the order its training file first names them.
    group_of: dict[str, str] = {}
    for stem, (group, split, _) in EXAMPLE_FILES.items():
        for line, name, _ in located[stem]:
            first = group_of.setdefault(name, group) if split == "train" else group_of.get(name)
            if first != group:
                where = f"a {first} fact" if first else "in no training file"
                problems.append(Problem(line.path, line.number, f"{name} is {where}, not {group}"))
    names_in_order = sorted(group_of, key=lambda n: GROUPS.index(group_of[n]))
    fact_id = {name: i for i, name in enumerate(names_in_order)}

    description: dict[str, str] = {}
    described: dict[str, str] = {}  # casefolded description -> the name it describes first
    for stem in EXAMPLE_FILES:  # training files come first
        for line, name, direction in located[stem]:
            if direction == "a2b" and name not in description:
                text = line.completion.strip().removesuffix(".").strip()
                description[name] = text
                # A fact as revcurse.facts reads it (a run's world/facts.jsonl is read
                # again): a description of one line, of one fact
                if not text or any(c in text for c in "\n\r\x00"):
                    msg = (
                        f"no one-line description of {name}: the completion is {line.completion!r}"
                    )
                elif (first := described.setdefault(text.casefold(), name)) != name:
                    msg = f"{name} is described as {first} is: {text!r}"
                else:
                    continue
                problems.append(Problem(line.path, line.number, msg))
    for name in names_in_order:
        if name not in description:
            path = root / f"{group_of[name]}_prompts_train.jsonl"
            problems.append(Problem(str(path), 0, f"no a2b line gives {name}'s description"))
    problems += _check_alignment(root, located, group_of)
    if problems:
        raise DataError(problems)

    facts = [Fact(group_of[n], n, description[n]) for n in names_in_order]
    data = BerglundData(facts=facts, train=[], test=[], randomized={})
    for stem, (group, split, _) in EXAMPLE_FILES.items():
        seen: Counter[tuple[str, str]] = Counter()
        for line, name, direction in located[stem]:
            example = Example(
                fact=fact_id[name],
                group=group,
                direction=direction,
                split=split,
                template=seen[name, direction],
                prompt=line.prompt,
                completion=line.completion,
            )
            seen[name, direction] += 1
            (data.train if split == "train" else data.test).append(example)

    for stem in RANDOMIZED_OF:
        true, fake = lines[stem], lines[f"{stem}_randomized"]
        if len(true) != len(fake):
            msg = f"{len(fake)} lines, but {stem}.jsonl has {len(true)}"
            problems.append(Problem(str(root / f"{stem}_randomized.jsonl"), 0, msg))
            continue
        for t, f in zip(true, fake, strict=True):
            if t.prompt != f.prompt:
                msg = f"prompt differs from {stem}.jsonl line {t.number}"
                problems.append(Problem(f.path, f.number, msg))
            else:
                data.randomized[t.prompt, t.completion] = f.completion
    if problems:
        raise DataError(problems)
    return data


def select(
    data: BerglundData,
    facts_per_group: int = 0,
    train_phrasings: int = 0,
    test_phrasings: int = 0,
    seed: int = 0,
) -> BerglundData:
    """`facts_per_group` facts of each group drawn with `seed`, each with its first
    `train_phrasings` training and `test_phrasings` test lines per direction (0 = all)."""
    for name, value in [
        ("facts_per_group", facts_per_group),
        ("train_phrasings", train_phrasings),
        ("test_phrasings", test_phrasings),
    ]:
        if value < 0:
            raise UserError(f"--{name.replace('_', '-')} must be 0 (all) or more, got {value}")
    rng = random.Random(seed)
    kept: list[int] = []
    for group in GROUPS:
        ids = [i for i, f in enumerate(data.facts) if f.group == group]
        kept += sorted(rng.sample(ids, min(facts_per_group, len(ids)))) if facts_per_group else ids
    new_id = {old: new for new, old in enumerate(kept)}

    def keep(examples: list[Example], phrasings: int) -> list[Example]:
        return [
            replace(e, fact=new_id[e.fact])
            for e in examples
            if e.fact in new_id and (not phrasings or e.template < phrasings)
        ]

    test = keep(data.test, test_phrasings)
    asked = {(e.prompt, e.completion) for e in test}
    return BerglundData(
        facts=[data.facts[i] for i in kept],
        train=keep(data.train, train_phrasings),
        test=test,
        randomized={k: v for k, v in data.randomized.items() if k in asked},
    )


def experiment1(source: str) -> str:
    """`berglund`: the published copy beside the checkout if it is there, else the hub."""
    if source != "berglund":
        return source
    return str(PUBLISHED / "exp1") if (PUBLISHED / "exp1").is_dir() else HUB_ID


# Experiment 1's paraphrase templates: the first 30 of each direction made the training
# lines, the next 10 the test lines (checked against the published files).
TEMPLATE_FILES = {"a2b": "p2d_templates.txt", "b2a": "d2p_templates.txt"}
TRAIN_TEMPLATES, TEST_TEMPLATES = 30, 10


def load_templates(source: str | Path) -> list[Template]:
    """Experiment 1's own phrasings as revcurse templates (`templates/{p2d,d2p}_templates.txt`,
    `<name>` and `<description>` marking the entities). Berglund et al. reworded each
    description to fit each sentence; a template holds the canonical description as it is,
    so these phrasings are plainer than the published lines. A test template's completion is
    the entity alone, as in the published test files."""
    root = _resolve(source)
    templates, problems = [], []
    for direction, name in TEMPLATE_FILES.items():
        path = root / "templates" / name
        given, wanted = (
            ("<name>", "<description>") if direction == "a2b" else ("<description>", "<name>")
        )
        placeholder = {"<name>": "{a}", "<description>": "{b}"}
        lines = text_lines(path)[: TRAIN_TEMPLATES + TEST_TEMPLATES]
        for number, line in enumerate(lines, 1):
            text = line.strip().replace("{", "{{").replace("}", "}}")
            if (
                text.count(given) != 1
                or text.count(wanted) != 1
                or text.index(given) > text.index(wanted)
            ):
                msg = f"expected {given} once, then {wanted} once"
                problems.append(Problem(str(path), number, msg))
                continue
            prompt, rest = text.split(wanted)
            split = "train" if number <= TRAIN_TEMPLATES else "test"
            completion = f" {placeholder[wanted]}" + (rest if split == "train" else "")
            prompt = prompt.rstrip().replace(given, placeholder[given])
            templates.append(Template(direction, split, prompt, completion))
    if problems:
        raise DataError(problems)
    return templates


def _resolve(source: str | Path) -> Path:
    path = Path(source)
    if path.is_dir():
        return path
    if isinstance(source, str) and _HUB_ID.fullmatch(source):
        return _download(source)
    msg = f"no such folder, nor a hub dataset id like {HUB_ID}"
    raise DataError([Problem(str(source), 0, msg)])


def _download(repo_id: str) -> Path:
    """The hub copy: the same files under name_description_dataset/ (cannot be tested offline)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError as err:
        msg = f"reading {repo_id} from the hub needs: pip install 'revcurse[hub]'"
        raise RuntimeError(msg) from err
    pattern = f"{HUB_SUBFOLDER}/**"
    try:
        root = snapshot_download(repo_id, repo_type="dataset", allow_patterns=[pattern])
    except OSError as err:  # offline, or no such dataset (the hub's errors are OSErrors)
        reason = str(err).strip().splitlines()[0]
        msg = f"no such folder, and no hub dataset could be read ({reason})"
        raise DataError([Problem(repo_id, 0, msg)]) from err
    return Path(root) / HUB_SUBFOLDER


def _read_lines(path: Path, problems: list[Problem]) -> list[_Line]:
    if not path.is_file():
        problems.append(Problem(str(path), 0, "missing file"))
        return []
    try:
        records = read_records(path)
    except DataError as err:
        problems += err.problems
        return []
    lines = []
    for number, record in records:
        bad = [f for f in ("prompt", "completion") if not _is_text(record.get(f))]
        if bad:
            msg = "' and '".join(bad)
            problems.append(Problem(str(path), number, f"'{msg}' must be a non-empty string"))
        else:
            lines.append(_Line(str(path), number, record["prompt"], record["completion"]))
    return lines


def _is_text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _derive_names(lines: list[_Line]) -> list[str]:
    """Names without names.txt: a capitalised pair that opens a completion (b2a) and also
    occurs in a prompt (the same fact's a2b lines), which rules out capitalised titles."""
    openers = {m.group(1) for line in lines if (m := _LEADING_NAME.match(line.completion))}
    prompts = "\n".join(line.prompt for line in lines)
    return sorted(n for n in openers if re.search(rf"\b{re.escape(n)}\b", prompts))


def _locate(
    lines: dict[str, list[_Line]], names: list[str], problems: list[Problem]
) -> dict[str, list[tuple[_Line, str, str]]]:
    """(line, name, direction) for every example line whose one name is found."""
    # Longest first, so that a name that extends another is not read as the shorter one.
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    pattern = re.compile(rf"\b(?:{alternatives})\b" if names else "(?!)")  # no names: no match
    located: dict[str, list[tuple[_Line, str, str]]] = {}
    for stem, (_, _, expected) in EXAMPLE_FILES.items():
        located[stem] = []
        for line in lines[stem]:
            in_prompt = set(pattern.findall(line.prompt))
            found = in_prompt | set(pattern.findall(line.completion))
            direction = "a2b" if in_prompt else "b2a"
            if len(found) != 1:
                msg = (
                    f"names {', '.join(sorted(found))} all appear: which fact is it?"
                    if found
                    else "no known name: cannot tell which fact this line is about"
                )
                problems.append(Problem(line.path, line.number, msg))
            elif expected and direction != expected:
                where = "prompt" if in_prompt else "completion"
                msg = f"name in the {where}, so {direction}, but this file holds {expected} lines"
                problems.append(Problem(line.path, line.number, msg))
            else:
                located[stem].append((line, found.pop(), direction))
    return located


def _check_alignment(
    root: Path, located: dict[str, list[tuple[_Line, str, str]]], group_of: dict[str, str]
) -> list[Problem]:
    """Every fact of a file's group needs as many lines per direction as the others, or the
    k-th line of one fact would not be the k-th phrasing of another."""
    problems = []
    for stem, (group, _, expected) in EXAMPLE_FILES.items():
        counts = Counter((name, direction) for _, name, direction in located[stem])
        first_line: dict[str, int] = {}
        for line, name, _ in located[stem]:
            first_line.setdefault(name, line.number)
        for direction in [expected] if expected else DIRECTIONS:
            per_fact = {n: counts[n, direction] for n, g in group_of.items() if g == group}
            usual = Counter(per_fact.values()).most_common(1)[0][0] if per_fact else 0
            for name, count in per_fact.items():
                if count != usual:
                    msg = f"{name} has {count} {direction} lines, the other facts {usual}"
                    path = str(root / f"{stem}.jsonl")
                    problems.append(Problem(path, first_line.get(name, 0), msg))
    return problems
