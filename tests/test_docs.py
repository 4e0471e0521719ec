"""The README and the docs pages: short, their links resolve, their result blocks whole."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

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
    from conftest import script

    from revcurse.stats import row

    headline = script("headline")
    monkeypatch.setattr(headline, "ROOT", tmp_path)
    cells = headline.CELLS
    for age, (name, value) in enumerate((("runs/x-1", 0.0), ("runs/x-2", 1.0), ("runs/x-3", None))):
        run = tmp_path / name
        run.mkdir(parents=True)
        if value is not None:  # else not finished: no results.json
            rows = [
                row("baseline", g, d, "exact_match", value, 10, (value, value)) for g, d in cells
            ]
            (run / "results.json").write_text(json.dumps({"rows": rows}))
        os.utime(run, (1000 + age, 1000 + age))  # x-3 newest, x-2 the newest finished
    found = headline.collect(["tiny, 3 facts a group=runs/x-*:baseline"])
    assert [(panel, method, run.name) for panel, method, run, _ in found] == [
        ("tiny, 3 facts a group", "baseline", "x-2")
    ]
    lines = headline.table(found)
    assert (
        lines[2]
        == "| tiny, 3 facts a group | baseline | " + " | ".join(["1.00 [1.00, 1.00]"] * 4) + " |"
    )
    with pytest.raises(SystemExit, match="no one-way exact match rows for in_context"):
        headline.collect(["tiny, 3 facts a group=runs/x-*:in_context"])
