"""A word-level tokenizer built from the world's own text (the tiny model's vocabulary).

One token per word or punctuation mark keeps every entity a few tokens long, so a model of
~100k parameters can learn hundreds of facts in seconds; names and descriptions never
share sub-word pieces that would leak one direction into the other.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

SPECIAL = {
    "pad_token": "<pad>",
    "unk_token": "<unk>",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "mask_token": "<mask>",  # only the masked (MLM-U) model uses it
}


def build_word_tokenizer(texts: Iterable[str]) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel(unk_token=SPECIAL["unk_token"]))
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    words = sorted({w for text in texts for w, _ in backend.pre_tokenizer.pre_tokenize_str(text)})
    vocab = {tok: i for i, tok in enumerate([*SPECIAL.values(), *words])}
    backend.model = models.WordLevel(vocab=vocab, unk_token=SPECIAL["unk_token"])
    bos = SPECIAL["bos_token"]
    # Like Llama's tokenizers: a prompt starts with <s>; completions are encoded without it.
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, vocab[bos])]
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **SPECIAL)
    tokenizer.padding_side = "left"  # generation appends on the right
    return tokenizer
