"""Ask a saved model a question: closed book, or with facts retrieved from a knowledge base.

    revcurse ask taught/ "Q: Who invented the brass loom? A:"
    revcurse ask taught/ "Q: Who invented the brass loom? A:" --kb kb.sqlite

MODEL_DIR is any transformers model folder: `revcurse teach`'s output, a demo run's
`model/`, or a pretrained model's. With --kb the best-matching facts (revcurse.kb, BM25)
are stated before the question as `Fact:` lines, the layout the models read facts in. The
answer is greedy; a taught model's config.yaml says whether it was asked in its chat
template.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from revcurse.config import fail

app = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False)


@app.command("ask")
def ask(
    model_dir: Annotated[Path, typer.Argument(help="A model folder (revcurse teach's output).")],
    question: Annotated[str, typer.Argument(help="The prompt, e.g. 'Q: Who is ...? A:'.")],
    kb: Annotated[Path | None, typer.Option(help="A knowledge base (revcurse kb add).")] = None,
    k: Annotated[int, typer.Option(help="Facts retrieved from --kb.")] = 3,
    max_new_tokens: Annotated[int, typer.Option(help="Longest answer, in tokens.")] = 24,
) -> None:
    """Print the model's greedy answer to QUESTION."""
    if not (model_dir / "config.json").is_file():
        fail(f"{model_dir}: not a model folder (no config.json); give revcurse teach's output")
    if k < 1 or max_new_tokens < 1:
        fail("--k and --max-new-tokens: must be at least 1")
    prompt = question
    if kb is not None:
        from revcurse.context import statement, with_context
        from revcurse.kb import KnowledgeBase

        try:
            with KnowledgeBase(kb, create=False) as base:
                hits = base.query(question, k)
        except (ValueError, RuntimeError) as error:
            fail(str(error))
        prompt = with_context([statement(h.fact) for h in hits], question, lines=True)
    from revcurse.lm.causal import CausalLM
    from revcurse.lm.chat import chat_formatted
    from revcurse.lm.models import load_checkpoint

    model, tokenizer = load_checkpoint(model_dir)
    if chat_template(model_dir):
        from revcurse.facts import Example

        prompt = chat_formatted([Example.passage(prompt)], tokenizer)[0].prompt
    (answer,) = CausalLM(model, tokenizer).generate([prompt], max_new_tokens)
    print(answer.strip())


def chat_template(model_dir: Path) -> bool:
    """Whether the model was taught in its chat template (its config.yaml, if it has one)."""
    import yaml

    try:
        saved = yaml.safe_load((model_dir / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError, yaml.YAMLError):  # ValueError: not UTF-8
        return False
    return bool(isinstance(saved, dict) and saved.get("chat_template"))
