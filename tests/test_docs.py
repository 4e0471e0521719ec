"""The README and the docs pages: short, their links resolve, their result blocks whole."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from revcurse.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")  # markdown links and images


def test_the_readme_is_at_most_250_lines():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    text = page.read_text()
    missing = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):  # a web address, an anchor
            continue
        path = target.split("#", 1)[0]
        if not (page.parent / path).exists():
            missing.append(target)
    assert not missing, f"{page.relative_to(ROOT)}: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_results_block_is_closed(page):
    text = page.read_text()
    starts = re.findall(r"<!-- results:([\w-]+):start -->", text)
    ends = re.findall(r"<!-- results:([\w-]+):end -->", text)
    assert starts == ends and len(set(starts)) == len(starts)


def test_the_demo_and_analysis_blocks_are_somewhere():
    text = "".join(page.read_text() for page in PAGES)
    for name in ("demo", "analyze"):
        assert f"<!-- results:{name}:start -->" in text


def test_the_headline_takes_each_method_from_the_newest_finished_run(tmp_path, monkeypatch):
    """Its cells pool the newest finished run's samples over seeds, with intervals over facts;
    a remedy that treated some facts comes after the baseline on those same facts."""
    from conftest import script

    headline = script("headline")
    monkeypatch.setattr(headline, "ROOT", tmp_path)
    cells = headline.CELLS

    def samples(method: str, right: bool, facts: range) -> list[dict]:
        return [
            {
                "method": method,
                "seed": seed,
                "fact": f,
                "group": g,
                "direction": d,
                "correct": right,
            }
            for seed in (0, 1)
            for f in facts
            for g, d in cells
            for _ in range(2)  # two phrasings of each fact
        ]

    for age, (name, right) in enumerate(
        (("runs/x-1", False), ("runs/x-2", True), ("runs/x-3", None))
    ):
        run = tmp_path / name
        run.mkdir(parents=True)
        if right is not None:  # else not finished: no results.json
            (run / "results.json").write_text(json.dumps({"rows": []}))
            lines = samples("baseline", right, range(10)) + samples("rome", not right, range(5))
            (run / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in lines))
        os.utime(run, (1000 + age, 1000 + age))  # x-3 newest, x-2 the newest finished
    found = headline.collect(["tiny, 3 facts a group=runs/x-*:baseline,rome"])
    assert [(panel, method, run.name) for panel, method, run, _ in found] == [
        ("tiny, 3 facts a group", "baseline", "x-2"),
        ("tiny, 3 facts a group", "baseline, same facts", "x-2"),
        ("tiny, 3 facts a group", "rome", "x-2"),
    ]
    lines = headline.table(found)
    # 20 facts a cell (two seeds'), their 40 questions agreeing in pairs: Wilson on 20
    assert lines[2].startswith("| tiny, 3 facts a group | baseline | 40 | 1.00 [0.84, 1.00] |")
    assert lines[3].startswith("| tiny, 3 facts a group | baseline, same facts | 20 | 1.00 [0.72")
    assert lines[4].startswith("| tiny, 3 facts a group | rome | 20 | 0.00 [0.00, 0.28] |")
    with pytest.raises(SystemExit, match="no one-way samples for in_context"):
        headline.collect(["tiny, 3 facts a group=runs/x-*:in_context"])


def test_the_python_api_example_runs(tmp_path, monkeypatch):
    """docs/your-facts.md's API block, as written, on small budgets (a keyword the block gives
    wins): it returns the results and the taught transformers model."""
    import revcurse
    from revcurse import api

    text = (ROOT / "docs" / "your-facts.md").read_text(encoding="utf-8")
    block = text.split("<!-- api-example:start -->")[1].split("<!-- api-example:end -->")[0]
    code = block.split("```python\n")[1].split("```")[0]
    small = {
        "world__facts_per_group": 4,
        "train__steps": 30,
        "train__batch_size": 32,
        "remedies__reading_documents": 20,
        "reader__documents": 20,
        "reader__world_facts": 0,
        "reader__train__steps": 2,
        "reader__cache_dir": tmp_path / "reader",
    }
    runs = iter(["compare", "teach"])

    def smaller(command):
        def run(*args, **options):
            return command(*args, **{**small, "output_dir": tmp_path / next(runs), **options})

        return run

    monkeypatch.setattr(revcurse, "compare", smaller(api.compare), raising=False)
    monkeypatch.setattr(revcurse, "teach", smaller(api.teach), raising=False)
    namespace: dict = {}
    exec(compile(code, "docs/your-facts.md", "exec"), namespace)
    assert 0 <= namespace["curse"] <= 1 and 0 <= namespace["cured"] <= 1
    assert namespace["model"].num_parameters() > 0 and namespace["tokenizer"] is not None
    assert (tmp_path / "teach" / "model.safetensors").is_file()
    assert "baseline" in namespace["results"].table
    with pytest.raises(UserError, match=r"--train\.steps: must be at least 1"):
        api.compare("baseline", train__steps=0)
