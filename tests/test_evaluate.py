"""Evaluation: Berglund's matching rule, batch-size-independent scores, tidy rows."""

from __future__ import annotations

import pytest
import torch
from conftest import ROW_KEYS

from revcurse.evaluate import EvalConfig, alternatives, anywhere, evaluate, starts_with
from revcurse.lm.batching import encode
from revcurse.lm.causal import CausalLM, generate
from revcurse.lm.scoring import common_starts, completion_logprobs, prompt_sharing_pays


def test_starts_with_is_berglunds_rule():
    assert starts_with("Ada Crane now enjoys", " ada crane")
    assert starts_with("  ADA   Crane .", "Ada Crane.")
    assert starts_with('the maker of "Echo ." , and', ' the maker of "Echo.",')
    assert not starts_with("Crane Ada", " Ada Crane")
    assert not starts_with("Ada Cranes", " Ada Crane")
    assert not starts_with("", " Ada Crane")


def test_a_name_then_a_line_break_is_the_name():
    """A completion's final full stop is not part of the answer: pretrained models end an
    answer with a line break, a comma or the next sentence as often as with a stop."""
    for output in (" Ada Crane\n\nFact:", " Ada Crane, who", " Ada Crane. She", " ada crane"):
        assert starts_with(output, " Ada Crane."), output
    assert not starts_with(" Ada", " Ada Crane.")
    assert not starts_with(" anything", " .")  # a completion without words matches nothing


def test_anywhere_finds_the_whole_name_in_order():
    assert anywhere(" I think it is Ada Crane.", " Ada Crane.")
    assert anywhere(" Ada Crane", " Ada Crane.")
    assert not anywhere(" Crane, Ada", " Ada Crane.")
    assert not anywhere(" Ada Cranes", " Ada Crane.")
    assert not anywhere(" Ada", " Ada Crane.")


def test_scores_do_not_depend_on_batch_size(trained, small_world):
    model, tokenizer = trained
    _, _, test_examples, _ = small_world
    candidates = alternatives(test_examples[:12], max_candidates=0, seed=0)
    pairs = [
        (e.prompt, c) for e, cs in zip(test_examples[:12], candidates, strict=True) for c in cs
    ]
    reference = completion_logprobs(model, tokenizer, pairs, batch_size=1)
    # the sum of log p over the completion's tokens, from the model's logits at every position
    for (ids, labels), score in zip(
        encode(tokenizer, pairs[:5], eos=False), reference, strict=False
    ):
        with torch.no_grad():
            logprobs = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, :-1], -1)
        scored = [(t, label) for t, label in enumerate(labels[1:]) if label != -100]
        assert score == pytest.approx(
            sum(logprobs[t, label].item() for t, label in scored), abs=1e-4
        )
    for batch_size in (3, 16, 1000):
        scores = completion_logprobs(model, tokenizer, pairs, batch_size=batch_size)
        assert scores == pytest.approx(reference, abs=1e-5)


def test_a_shared_prompt_is_run_once_and_scores_as_if_whole(trained, small_world):
    """Long prompts (here: six questions run together) before many completions: each prompt
    once, its cache reused, scores equal to whole-sequence ones, for any batch size."""
    model, tokenizer = trained
    examples = small_world[2][:8]
    preamble = " ".join(e.prompt + e.completion for e in small_world[2][8:14])
    candidates = alternatives(small_world[2], max_candidates=0, seed=0)[:8]
    pairs = [
        (f"{preamble} {e.prompt}", c)
        for e, cs in zip(examples, candidates, strict=True)
        for c in cs
    ]
    features = encode(tokenizer, pairs, eos=False)
    assert prompt_sharing_pays(features)
    assert not prompt_sharing_pays(
        encode(tokenizer, [(e.prompt, e.completion) for e in examples], False)
    )
    whole = [completion_logprobs(model, tokenizer, [pair], batch_size=1)[0] for pair in pairs]
    for batch_size in (1, 3, 1000):
        shared = completion_logprobs(model, tokenizer, pairs, batch_size=batch_size)
        assert shared == pytest.approx(whole, abs=1e-4)


def test_prompts_that_begin_alike_are_answered_from_one_run_of_their_start(
    trained, small_world, monkeypatch
):
    """Long common starts (worked examples): run once, its cache continued for each prompt;
    the greedy answers are those of transformers' generate, for any batch size, and a
    sampled answer depends on the torch seed alone."""
    from revcurse.lm import causal

    model, tokenizer = trained
    preamble = " ".join(e.prompt + e.completion for e in small_world[2][8:14])
    prompts = [f"{preamble} {e.prompt}" for e in small_world[2][:10]]
    prompts += [small_world[2][0].prompt]  # one that shares nothing, in the same call
    used = []
    shared = causal.shared_start_generate
    monkeypatch.setattr(causal, "shared_start_generate", lambda *a: used.append(1) or shared(*a))
    alone = [generate(model, tokenizer, [p], 6)[0] for p in prompts]  # transformers' generate
    assert not used
    for batch_size in (1, 4, 100):
        assert generate(model, tokenizer, prompts, 6, batch_size) == alone
    assert used
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        runs.append(generate(model, tokenizer, prompts * 2, 6, 4, temperature=1.0))
    assert runs[0] == runs[1] and all(isinstance(r, str) for r in runs[0])


def test_answers_end_at_their_first_line_break_after_text(trained, small_world, monkeypatch):
    """With first_line, an answer ends at its first line break once it has text, in both
    generation paths alike; a line break before any text does not end it."""
    from revcurse.lm import causal

    model, tokenizer = trained
    preamble = " ".join(e.prompt + e.completion for e in small_world[2][8:14])
    prompts = [f"{preamble} {e.prompt}" for e in small_world[2][:10]]
    whole = [generate(model, tokenizer, [p], 8)[0].split() for p in prompts]
    stop = whole[0][1]  # a word the answers say: made a line break of the tiny vocabulary
    breaks = torch.zeros(len(tokenizer), dtype=torch.bool)
    breaks[tokenizer.convert_tokens_to_ids(stop)] = True
    end = causal.AnswerEnd(breaks, text=torch.ones(len(tokenizer), dtype=torch.bool))
    monkeypatch.setattr(causal.AnswerEnd, "of", staticmethod(lambda tokenizer: end))
    alone = [generate(model, tokenizer, [p], 8, first_line=True)[0] for p in prompts]
    assert generate(model, tokenizer, prompts, 8, 4, first_line=True) == alone  # shared start
    for words, answer in zip(whole, alone, strict=True):
        upto = words.index(stop) + 1 if stop in words else len(words)
        assert answer.split() == words[:upto]
    lead_in = causal.AnswerEnd(breaks=torch.tensor([True, False]), text=torch.tensor([False, True]))
    assert lead_in.ended(torch.tensor([[0, 1, 0], [0, 1, 1], [1, 0, 1]])).tolist() == [
        True,
        False,
        True,
    ]


def test_prompts_that_begin_alike_share_their_start():
    examples = tuple(range(100, 120))  # twenty tokens of worked examples
    a, b, c = (*examples, 1, 2), (*examples, 1, 3), (*examples[:5], 4, 5)
    groups = common_starts([c, b, a])
    assert groups == [((*examples[:5], 4), [c]), ((*examples, 1), [a, b])]  # sorted
    assert common_starts([examples, (*examples, 7)]) == [
        (examples[:-1], [examples, (*examples, 7)])
    ]


def test_generation_does_not_depend_on_batch_size(trained, small_world):
    model, tokenizer = trained
    prompts = [e.prompt for e in small_world[2][:10]]
    one = generate(model, tokenizer, prompts, max_new_tokens=8, batch_size=1)
    assert generate(model, tokenizer, prompts, max_new_tokens=8, batch_size=4) == one


def test_alternatives_are_the_same_phrasing_for_other_facts_of_the_group(small_world):
    _, _, test_examples, _ = small_world
    for example, candidates in zip(test_examples, alternatives(test_examples, 0, 0), strict=True):
        assert candidates[0] == example.completion
        assert len(candidates) == len(set(candidates)) == 8  # facts_per_group
    sampled = alternatives(test_examples, 4, 0)
    assert all(
        len(c) == 4 and c[0] == e.completion for e, c in zip(test_examples, sampled, strict=True)
    )


def test_evaluate_rows_and_samples(trained, small_world):
    model, tokenizer = trained
    _, _, test_examples, _ = small_world
    rows, samples = evaluate(CausalLM(model, tokenizer), test_examples, EvalConfig(), "baseline")
    assert len(samples) == len(test_examples)
    assert {"prompt", "target", "output", "correct"} <= set(samples[0])
    keys = {(r["group"], r["direction"], r["metric"]) for r in rows}
    for group in ("p2d", "d2p", "both"):
        for direction in ("same", "reverse"):
            for metric in ("exact_match", "rank_acc", "rank_chance", "logprob_margin", "p_value"):
                assert (group, direction, metric) in keys
    for row in rows:
        assert set(row) == ROW_KEYS
        if row["metric"] in ("exact_match", "rank_acc"):
            assert 0 <= row["ci_low"] <= row["value"] <= row["ci_high"] <= 1
        if row["metric"] == "rank_chance":
            assert row["value"] == pytest.approx(1 / 8)
    exact = {(r["group"], r["direction"]): r["value"] for r in rows if r["metric"] == "exact_match"}
    assert exact[("p2d", "same")] == pytest.approx(
        sum(s["correct"] for s in samples if s["group"] == "p2d" and s["direction"] == "same") / 16
    )
