"""Remedy 2, external knowledge base: retrieve the fact from a SQLite file into the prompt.

The facts go into a knowledge base (kb-seed<N>.sqlite in the run directory; BM25 through
SQLite FTS5 by default, or dense embeddings); each test question is the query, and the
top-k facts, stated in their trained direction, are placed before it. Retrieval recall@k is
reported beside the end-to-end accuracy: the KB finds a fact from either entity, so any
reversal failure left is the reader's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from revcurse.config import check, choice
from revcurse.context import statement, with_context
from revcurse.kb import RETRIEVERS, KnowledgeBase, Retriever
from revcurse.remedies.setting import Setting, Treatment
from revcurse.remedies.targets import cell_rows


@dataclass
class KnowledgeBaseConfig:
    top_k: int = 1
    """retrieved facts placed in the prompt"""
    retriever: Retriever = "bm25"
    """bm25 (SQLite FTS5) or dense (all-MiniLM-L6-v2)"""

    def __post_init__(self) -> None:
        check(self.top_k >= 1, "top_k", f"must be at least 1, got {self.top_k}")
        choice(self.retriever, "retriever", RETRIEVERS)


def apply(setting: Setting, method: str) -> Treatment:
    model, cost = setting.baseline()
    k, retriever = setting.remedies.knowledge_base.top_k, setting.remedies.knowledge_base.retriever
    path = setting.workdir / f"kb-seed{setting.seed}.sqlite"
    path.unlink(missing_ok=True)  # this run's own file
    posed, found = [], []
    with KnowledgeBase(path) as kb:
        kb.add(setting.facts, embed=retriever == "dense")
        for example in setting.test_examples:
            hits = kb.query(example.prompt, k, retriever)
            found.append(setting.facts[example.fact] in [h.fact for h in hits])
            statements = [statement(h.fact) for h in hits]
            prompt = with_context(statements, example.prompt, setting.fact_lines)
            posed.append(replace(example, prompt=prompt))
    rows = cell_rows(method, f"retrieval_recall@{k}", setting.test_examples, found)
    return Treatment(setting.causal_lm(model), cost, posed, rows, in_context=True)
