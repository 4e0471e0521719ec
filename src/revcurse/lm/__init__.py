"""The language-model layer: the one place a model is built, batched, asked and hooked.

    revcurse demo --model smollm2-135m   # every stage gets its model through this package

- tokenizer.py   the tiny model's word-level tokenizer
- tiny.py        the tiny Llama, built from a config (TinyModelConfig)
- pretrained.py  presets, GGUF files, folders and hub ids behind `--model`
- models.py      `make_model` (tiny or pretrained), checkpoints, parameter counts
- chat.py        prompts as user turns of a chat template
- batching.py    (prompt, completion) -> token ids and labels, padded batches
- causal.py      scoring and generation: `CausalLM`, what the evaluator asks a model
- answer_end.py  where a generated answer ends (its first line)
- hooks.py       reading and rewriting hidden states (analyses and weight edits)

It imports no stage of the pipeline. transformers is imported where a model is built, so
that the command line can read these modules' configs without loading it.
"""
