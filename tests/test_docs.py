"""The README and the docs pages: short, their links resolve, their result blocks whole."""

from __future__ import annotations

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
