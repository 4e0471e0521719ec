"""`revcurse kb`: a persistent knowledge base of facts (SQLite, revcurse.kb).

revcurse kb add world/facts.jsonl --db kb.sqlite
revcurse kb query "Who is the pilot of the glass river?" --db kb.sqlite --k 3
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from revcurse.config import fail
from revcurse.fact_files import load_facts
from revcurse.kb import KnowledgeBase
from revcurse.records import DataError

app = typer.Typer(
    help="A persistent knowledge base of facts (SQLite).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
DB_OPTION = typer.Option("--db", help="The knowledge base file (created if missing).")


@app.command("add")
def kb_add(
    files: Annotated[list[Path], typer.Argument(help="Facts files (.jsonl or .csv).")],
    db: Annotated[Path, DB_OPTION] = Path("kb.sqlite"),
    dense: Annotated[bool, typer.Option(help="Also store all-MiniLM-L6-v2 embeddings.")] = False,
) -> None:
    """Add facts to the knowledge base; bad files are reported as FILE:LINE: and add nothing."""
    facts = []
    problems = []
    for path in files:
        try:
            facts += load_facts(path)
        except DataError as error:
            problems += error.problems
    if problems:
        fail(str(DataError(problems)))
    try:
        with KnowledgeBase(db) as kb:
            added = kb.add(facts, embed=dense)
            total = len(kb)
    except (ValueError, RuntimeError) as error:
        fail(str(error))
    print(f"{db}: added {added} new facts ({len(facts) - added} already there), {total} in all")


@app.command("query")
def kb_query(
    text: Annotated[str, typer.Argument(help="A question or any text about an entity.")],
    db: Annotated[Path, DB_OPTION] = Path("kb.sqlite"),
    k: Annotated[int, typer.Option(help="How many facts to return.")] = 3,
    retriever: Annotated[str, typer.Option(help="bm25 or dense.")] = "bm25",
) -> None:
    """The k facts that best match TEXT, best first."""
    try:
        with KnowledgeBase(db, create=False) as kb:
            hits = kb.query(text, k, retriever)
    except (ValueError, RuntimeError) as error:
        fail(str(error))
    for hit in hits:
        print(f"{hit.score:.4f}\t{hit.fact.group}\t{hit.fact.a}\t{hit.fact.b}")
