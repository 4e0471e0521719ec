"""Every bad input a user may type ends in one line naming the problem and exit status 2,
before any work, with nothing written: no run directory, no partial folder, no changed file.

Each case: the command line ({d} is the case's own folder, the working directory), the
files it needs there, and the words its one line must hold.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from revcurse.cli import app
from revcurse.records import dumps_records
from revcurse.world import TEMPLATES, WorldConfig, generate_facts

FACTS = dumps_records(generate_facts(WorldConfig(facts_per_group=2), 0))
TEMPLATES_TEXT = dumps_records(TEMPLATES)
FACT = {"group": "p2d", "a": "Ada Crane", "b": "the pilot of the glass river"}
TEMPLATE = {"direction": "a2b", "split": "train", "prompt": "{a} is", "completion": " {b}."}


def jsonl(*records: object) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def template(**changes: str) -> str:
    return jsonl({**TEMPLATE, **changes})


VALIDATE = ["facts", "validate", "{d}/f.jsonl"]
DEMO = ["demo", "--no-progress", "--output-dir", "{d}/run"]
COMPARE = ["compare", "--no-progress", "--output-dir", "{d}/run"]
QUERY = ["kb", "query", "who", "--db"]

# (id, command line, files {name: content}, words of the message)
CASES = [
    # facts and templates files
    ("missing-file", VALIDATE, {}, "f.jsonl: cannot read file"),
    ("empty-file", VALIDATE, {"f.jsonl": ""}, "f.jsonl:1: empty file"),
    ("malformed-json", VALIDATE, {"f.jsonl": jsonl(FACT, '{"a":')}, "f.jsonl:2: malformed JSON"),
    ("json-array-line", VALIDATE, {"f.jsonl": "[1, 2]\n"}, "expected a JSON object"),
    ("missing-field", VALIDATE, {"f.jsonl": jsonl({"group": "p2d", "a": "X"})}, "missing field"),
    ("unknown-group", VALIDATE, {"f.jsonl": jsonl({**FACT, "group": "x"})}, "unknown group 'x'"),
    ("duplicate-fact", VALIDATE, {"f.jsonl": jsonl(FACT, FACT)}, "duplicate fact: first on line 1"),
    ("duplicate-entity", VALIDATE, {"f.jsonl": jsonl(FACT, {**FACT, "b": "y"})}, "duplicate a="),
    ("not-utf8", VALIDATE, {"f.jsonl": b'{"a": "Zo\xeb"}\n'}, "f.jsonl:1: not UTF-8 (byte 0xeb"),
    ("number-field", VALIDATE, {"f.jsonl": jsonl({**FACT, "a": 3})}, "field 'a' must be a string"),
    ("empty-field", VALIDATE, {"f.jsonl": jsonl({**FACT, "a": " "})}, "empty field 'a'"),
    ("line-break", VALIDATE, {"f.jsonl": jsonl({**FACT, "a": "X\nY"})}, "holds a line break"),
    ("csv-quote", [*VALIDATE[:2], "{d}/f.csv"], {"f.csv": 'group,a,b\np2d,"x\r,y\n'}, "f.csv"),
    ("unknown-field", VALIDATE, {"f.jsonl": jsonl({**FACT, "c": "x"})}, "unknown field 'c'"),
    ("csv-columns", [*VALIDATE[:2], "{d}/f.csv"], {"f.csv": "group,a,b\np2d,X\n"}, "2 columns"),
    ("csv-header-only", [*VALIDATE[:2], "{d}/f.csv"], {"f.csv": "group,a,b\n"}, "header but no"),
    ("no-placeholder", VALIDATE, {"f.jsonl": template(prompt="Who?")}, "must hold {a} exactly"),
    ("format-spec", VALIDATE, {"f.jsonl": template(prompt="{a:>2000000}")}, "without a format"),
    ("conversion", VALIDATE, {"f.jsonl": template(prompt="{a!r} is")}, "without a format spec"),
    ("bad-brace", VALIDATE, {"f.jsonl": template(prompt="{a is")}, "bad prompt template"),
    ("unknown-direction", VALIDATE, {"f.jsonl": template(direction="up")}, "unknown direction"),
    ("unknown-split", VALIDATE, {"f.jsonl": template(split="dev")}, "unknown split 'dev'"),
    ("many-problems", VALIDATE, {"f.jsonl": jsonl(*["[1]"] * 30)}, "... and 20 more problems"),
    # demo: files
    (
        "swapped-facts",
        [*DEMO, "--facts", "{d}/t.jsonl"],
        {"t.jsonl": TEMPLATES_TEXT},
        "this is a templates file",
    ),
    (
        "swapped-templates",
        [*DEMO, "--templates", "{d}/f.jsonl"],
        {"f.jsonl": FACTS},
        "this is a facts file",
    ),
    ("facts-missing", [*DEMO, "--facts", "{d}/none.jsonl"], {}, "none.jsonl: cannot read file"),
    # demo: options
    ("steps-0", [*DEMO, "--train.steps", "0"], {}, "--train.steps: must be at least 1, got 0"),
    ("steps-negative", [*DEMO, "--train.steps", "-5"], {}, "--train.steps: must be at least 1"),
    ("lr-negative", [*DEMO, "--train.lr", "-0.001"], {}, "--train.lr: must be positive"),
    ("batch-negative", [*DEMO, "--train.batch-size", "-1"], {}, "--train.batch-size: must be 0"),
    ("decay", [*DEMO, "--train.decay", "foo"], {}, "--train.decay: must be one of none"),
    ("finetune", [*DEMO, "--train.finetune", "qlora"], {}, "--train.finetune: must be one of"),
    ("checkpoint", [*DEMO, "--train.checkpoint-every", "-1"], {}, "--train.checkpoint-every:"),
    ("lora-rank", [*DEMO, "--train.lora-rank", "0"], {}, "--train.lora-rank: must be at least"),
    ("warmup", [*DEMO, "--train.warmup-steps", "-1"], {}, "--train.warmup-steps: must be 0"),
    ("heads", [*DEMO, "--tiny.n-heads", "3"], {}, "--tiny.n-heads: must divide --tiny.d-model"),
    ("width-0", [*DEMO, "--tiny.d-model", "0"], {}, "--tiny.d-model: must be at least 1"),
    ("eval-batch", [*DEMO, "--eval.batch-size", "0"], {}, "--eval.batch-size: must be at least"),
    ("candidates", [*DEMO, "--eval.max-candidates", "-1"], {}, "--eval.max-candidates: must be"),
    ("facts-0", [*DEMO, "--world.facts-per-group", "0"], {}, "--world.facts-per-group: must be"),
    ("facts-huge", [*DEMO, "--world.facts-per-group", "9999"], {}, "word lists hold"),
    ("steps-text", [*DEMO, "--train.steps", "abc"], {}, "Invalid value for '--train.steps'"),
    ("model-unknown", [*DEMO, "--model", "nosuch"], {}, "--model: model 'nosuch': not a preset"),
    ("model-hub", [*DEMO, "--model", "no-such-org/no-such-model"], {}, "cannot load"),
    ("gguf-missing", [*DEMO, "--model", "{d}/m.gguf"], {}, "no such GGUF file"),
    ("gguf-junk", [*DEMO, "--model", "{d}/m.gguf"], {"m.gguf": b"junk"}, "not a GGUF file"),
    ("model-folder", [*DEMO, "--model", "{d}/m"], {"m/weights.bin": b""}, "has no config.json"),
    ("output-below-file", [*DEMO[:2], "--output-dir", "{d}/f/run"], {"f": "x"}, "is a file"),
    ("output-taken", [*DEMO[:2], "--output-dir", "{d}/old"], {"old/x": "x"}, "already exists"),
    # demo: config files
    (
        "yaml-type",
        ["demo", "--config", "{d}/c.yaml"],
        {"c.yaml": "seed: abc\n"},
        "--seed: expected",
    ),
    (
        "yaml-nested-type",
        ["demo", "--config", "{d}/c.yaml"],
        {"c.yaml": "world:\n  facts_per_group: ten\n"},
        "c.yaml: --world.facts-per-group: expected int, got 'ten'",
    ),
    ("yaml-float", ["demo", "--config", "{d}/c.yaml"], {"c.yaml": "train:\n  steps: 2.5\n"}, "2.5"),
    ("yaml-scalar", ["demo", "--config", "{d}/c.yaml"], {"c.yaml": "train: 5\n"}, "a section"),
    ("yaml-key", ["demo", "--config", "{d}/c.yaml"], {"c.yaml": "trian: {}\n"}, "unknown key"),
    ("yaml-list", ["demo", "--config", "{d}/c.yaml"], {"c.yaml": "- 1\n"}, "expected a mapping"),
    ("yaml-syntax", ["demo", "--config", "{d}/c.yaml"], {"c.yaml": "a: [\n"}, "cannot read"),
    ("yaml-missing", ["demo", "--config", "{d}/none.yaml"], {}, "none.yaml: cannot read config"),
    ("resume-missing", ["demo", "--resume", "{d}/gone"], {}, "config.yaml: cannot read config"),
    # compare
    ("compare-decay", [*COMPARE, "--train.decay", "nope"], {}, "--train.decay: must be one of"),
    ("methods", [*COMPARE, "--methods", "nope"], {}, "unknown nope (known: thesis, all,"),
    ("methods-empty", [*COMPARE, "--methods", ""], {}, "--methods: unknown"),
    ("seeds", [*COMPARE, "--seeds", "0"], {}, "--seeds: must be at least 1, got 0"),
    ("workers", [*COMPARE, "--workers", "-1"], {}, "--workers: must be 0 (auto) or more"),
    ("hebbian-source", [*COMPARE, "--remedies.hebbian.source", "x"], {}, "hebbian.source: must"),
    ("hebbian-layers", [*COMPARE, "--remedies.hebbian.layers", "top"], {}, "hebbian.layers"),
    ("rome-layer", [*COMPARE, "--remedies.rome.layer", "0,1"], {}, "ROME edits one layer"),
    ("distill-agree", [*COMPARE, "--remedies.self-distill.agree", "9"], {}, "self-distill.agree"),
    ("temperature", [*COMPARE, "--remedies.self-distill.temperature", "0"], {}, "positive"),
    ("distill-source", [*COMPARE, "--remedies.self-distill.source", "x"], {}, "questions, "),
    ("compare-resume-gone", ["compare", "--resume", "{d}/gone"], {}, "not a partial compare"),
    (
        "compare-resume-changed",
        ["compare", "--resume", "{d}/p", "--seeds", "2"],
        {"p/config.yaml": "seeds: 1\n"},
        "--seeds: --resume finishes a run with its saved config",
    ),
    ("retriever", [*COMPARE, "--remedies.knowledge-base.retriever", "faiss"], {}, "bm25, dense"),
    ("top-k", [*COMPARE, "--remedies.knowledge-base.top-k", "0"], {}, "top-k: must be at least"),
    ("reversal", [*COMPARE, "--remedies.reverse-training.reversal", "up"], {}, "token, word"),
    ("share", [*COMPARE, "--remedies.reading-share", "1.5"], {}, "reading-share: must be in"),
    ("reader-docs", [*COMPARE, "--reader.documents", "0"], {}, "--reader.documents: must be"),
    (
        "mlm-u-pretrained",
        [*COMPARE, "--methods", "mlm_u", "--model", "{d}/m"],
        {"m/config.json": "{}"},
        "mlm_u runs on the tiny model only: use --model tiny",
    ),
    # berglund, pairs, analyze
    ("berglund-data", ["berglund", "--data", "{d}/none"], {}, "none: no such folder"),
    (
        "berglund-not-utf8",
        ["berglund", "--data", "{d}/b"],
        {"b/p2d_prompts_train.jsonl": b'{"prompt": "\xff"}\n'},
        "p2d_prompts_train.jsonl:1: not UTF-8",
    ),
    ("berglund-facts", ["berglund", "--facts-per-group", "-1"], {}, "--facts-per-group: must be"),
    ("berglund-tests", ["berglund", "--test-phrasings", "-2"], {}, "--test-phrasings: must be 0"),
    ("pairs-limit", ["pairs", "--limit", "-1"], {}, "--limit: must be 0 (all) or more, got -1"),
    ("pairs-data", ["pairs", "--data", "{d}/none.csv"], {}, "none.csv: cannot read file"),
    ("analyze-missing", ["analyze", "{d}/none"], {}, "none: no such run directory"),
    ("analyze-not-run", ["analyze", "{d}/r"], {"r/x": "x"}, "not a revcurse run directory"),
    ("analyze-file", ["analyze", "{d}/r"], {"r": "x"}, "not a directory"),
    ("trace-facts", ["analyze", "{d}/r", "--trace.facts-per-group", "0"], {}, "--trace.facts-per"),
    ("threads", ["analyze", "{d}/r", "--cpu-threads", "-1"], {}, "--cpu-threads: must be 0"),
    # facts generate
    ("generate-taken", ["facts", "generate", "--out-dir", "{d}"], {"facts.jsonl": "x"}, "--force"),
    ("generate-file", ["facts", "generate", "--out-dir", "{d}/f/w"], {"f": "x"}, "is a file"),
    (
        "generate-0",
        ["facts", "generate", "--out-dir", "{d}/w", "--facts-per-group", "0"],
        {},
        "1..",
    ),
    # the knowledge base
    ("kb-bad-facts", ["kb", "add", "{d}/f.jsonl"], {"f.jsonl": "[1]\n"}, "f.jsonl:1: expected"),
    (
        "kb-no-folder",
        ["kb", "add", "{d}/f.jsonl", "--db", "{d}/no/kb.sqlite"],
        {"f.jsonl": FACTS},
        "does not exist",
    ),
    (
        "kb-parent-file",
        ["kb", "add", "{d}/f.jsonl", "--db", "{d}/f.jsonl/kb.sqlite"],
        {"f.jsonl": FACTS},
        "is a file, not a folder",
    ),
    (
        "kb-folder",
        ["kb", "add", "{d}/f.jsonl", "--db", "{d}/k"],
        {"f.jsonl": FACTS, "k/x": "x"},
        "is a folder",
    ),
    (
        "kb-not-sqlite",
        ["kb", "add", "{d}/f.jsonl", "--db", "{d}/k"],
        {"f.jsonl": FACTS, "k": "x"},
        "not a knowledge base",
    ),
    ("query-missing", [*QUERY, "{d}/none.sqlite"], {}, "no such knowledge base"),
    ("query-empty-file", [*QUERY, "{d}/kb.sqlite"], {"kb.sqlite": ""}, "an empty file"),
    ("query-not-sqlite", [*QUERY, "{d}/kb.sqlite"], {"kb.sqlite": "hello"}, "not a knowledge"),
    ("query-not-ours", [*QUERY, "{d}/other.sqlite"], {}, "not a revcurse knowledge base"),
    ("query-k", [*QUERY, "{d}/kb.sqlite", "--k", "-1"], {"kb.sqlite": FACTS}, "--k: must be"),
    (
        "query-dense",
        [*QUERY, "{d}/kb.sqlite", "--retriever", "dense"],
        {"kb.sqlite": FACTS},
        "no embeddings stored",
    ),
    (
        "query-retriever",
        [*QUERY, "{d}/kb.sqlite", "--retriever", "x"],
        {"kb.sqlite": FACTS},
        "--retriever: unknown retriever 'x'",
    ),
]


def make_files(folder: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".sqlite") and content == FACTS:  # a real knowledge base
            (folder / "facts.tmp.jsonl").write_text(FACTS)
            assert (
                CliRunner()
                .invoke(app, ["kb", "add", str(folder / "facts.tmp.jsonl"), "--db", str(path)])
                .exit_code
                == 0
            )
            (folder / "facts.tmp.jsonl").unlink()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    other = sqlite3.connect(folder / "other.sqlite")  # any case may ask for it
    other.execute("CREATE TABLE IF NOT EXISTS notes (x)")
    other.commit()
    other.close()


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file and folder under `folder`, with its bytes: nothing may change."""
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"<dir>")
        for p in sorted(folder.rglob("*"))
    }


@pytest.mark.parametrize(
    ("args", "files", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, files, message):
    make_files(tmp_path, files)
    before = snapshot(tmp_path)
    cwd = os.getcwd()
    os.chdir(tmp_path)  # a default runs/ folder would land here
    try:
        result = CliRunner().invoke(app, [a.format(d=tmp_path) for a in args])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 2, (result.output, result.exception)
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) <= 11 or "Usage:" in result.output, result.output  # at most the capped 10
    assert snapshot(tmp_path) == before


def test_there_are_at_least_60_cases():
    assert len(CASES) >= 60
