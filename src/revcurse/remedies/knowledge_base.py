"""Remedy 2, external knowledge base: retrieve the fact from a SQLite file into the prompt.

The facts go into a knowledge base (kb-seed<N>.sqlite in the run directory; BM25 through
SQLite FTS5 by default, or dense embeddings); each test question is the query, and the
top-k facts, stated in their trained direction, are placed before it. Retrieval recall@k is
reported beside the end-to-end accuracy: the KB finds a fact from either entity, so any
reversal failure left is the reader's.
"""

from __future__ import annotations

from dataclasses import replace

from revcurse.kb import KnowledgeBase
from revcurse.reading import statement, with_context
from revcurse.remedies.setting import Setting, Treatment
from revcurse.results import proportion_row


def apply(setting: Setting) -> Treatment:
    model, cost = setting.base
    k, retriever = setting.remedies.kb_top_k, setting.remedies.kb_retriever
    path = setting.workdir / f"kb-seed{setting.seed}.sqlite"
    path.unlink(missing_ok=True)  # this run's own file
    posed, found = [], []
    with KnowledgeBase(path) as kb:
        kb.add(setting.facts, embed=retriever == "dense")
        for example in setting.test:
            hits = kb.query(example.prompt, k, retriever)
            found.append(setting.facts[example.fact] in [h.fact for h in hits])
            statements = [statement(h.fact) for h in hits]
            posed.append(replace(example, prompt=with_context(statements, example.prompt)))
    rows = [
        proportion_row(
            "knowledge_base",
            group,
            rel,
            f"retrieval_recall@{k}",
            [
                hit
                for e, hit in zip(setting.test, found, strict=True)
                if (e.group, e.relation) == (group, rel)
            ],
        )
        for group, rel in dict.fromkeys((e.group, e.relation) for e in setting.test)
    ]
    return Treatment(setting.causal_lm(model), cost, posed, rows)
