"""What a pretrained model knew before any treatment, shipped with the project (`data/`):

- world_facts.jsonl: real-world facts (capitals, authors, landmarks, official languages,
  chemical symbols), each a plain sentence to continue ("The capital of France is" ->
  "Paris"): `locality_world` asks them before and after a treatment;
- held_out.txt: paragraphs of plain encyclopedic English written for the project, which
  no model here trains on and no edit keeps: `ppl_drift` is measured on them.

    revcurse compare --model smollm2-135m   # locality_world and ppl_drift rows
"""

from __future__ import annotations

import json
from importlib import resources

from revcurse.facts import Example


def _read(name: str) -> str:
    return resources.files("revcurse").joinpath("data", name).read_text(encoding="utf-8")


def world_facts() -> list[Example]:
    """The real-world probe facts as questions (group `world`, relation its kind)."""
    records = [json.loads(line) for line in _read("world_facts.jsonl").splitlines() if line]
    return [
        Example(k, "world", "a2b", "test", -1, r["prompt"], " " + r["answer"], r["kind"])
        for k, r in enumerate(records)
    ]


def held_out_text() -> list[str]:
    """The held-out paragraphs, one text each."""
    return [p.strip() for p in _read("held_out.txt").split("\n\n") if p.strip()]
