"""Remedies that change the baseline's weights: self-distillation, Hebbian and ROME edits."""

from __future__ import annotations

import copy
import dataclasses
import re

import pytest
import torch

from revcurse.config import ConfigError, from_dict
from revcurse.context import posed_in_context
from revcurse.facts import Example
from revcurse.lm.batching import encode
from revcurse.lm.hooks import decoder_layers
from revcurse.reader import ReaderConfig
from revcurse.recipes.compare import CompareConfig
from revcurse.recipes.remedy_run import build_setting, starting_point
from revcurse.remedies import apply_remedy, memit
from revcurse.remedies import targets as remedy_targets
from revcurse.remedies.ffn import (
    TeacherForced,
    activity,
    delta_rule,
    down_proj,
    kept_keys,
    keys,
    parse_layers,
)
from revcurse.remedies.hebbian import contrasted, hebbian_edit, whitened
from revcurse.remedies.memit import HebbianMemitConfig, edit_sites, in_context_stream, memit_edit
from revcurse.remedies.own_words import (
    about,
    asking,
    name_slots,
    own_prior,
    own_questions,
    own_replies,
    own_statements,
    restating,
)
from revcurse.remedies.rome import (
    RomeConfig,
    edit_fact,
    edit_positions,
    second_moment,
    subject_of,
)
from revcurse.remedies.self_distill import (
    SelfDistillConfig,
    kl_objective,
    lesson,
    student_corpus,
    study,
    teach,
    teacher_logprobs,
)
from revcurse.remedies.targets import (
    first_sentence,
    hits,
    own_answers,
    reverse_phrasings,
    split_one_way,
    training_questions,
)
from revcurse.train import TrainConfig
from revcurse.world import WorldConfig


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    """A small world whose baseline model has learned its facts (~10 s)."""
    config = CompareConfig(world=WorldConfig(facts_per_group=4), progress=False)
    config.remedies.reading_documents = 200
    config.remedies.generic_documents = 50
    config.remedies.self_distill.steps = 20
    config.train = TrainConfig(steps=200, batch_size=32)
    folder = tmp_path_factory.mktemp("edits")
    config.reader = ReaderConfig(documents=50, train=TrainConfig(steps=5), cache_dir=folder)
    return build_setting(config, seed=0, workdir=folder, start=starting_point(config))


def changed_parameters(before: torch.nn.Module, after: torch.nn.Module) -> set[str]:
    """The names of the parameters an edit changed."""
    return {
        name
        for (name, p), q in zip(before.named_parameters(), after.parameters(), strict=True)
        if not torch.equal(p, q)
    }


def test_treated_and_control_facts_split_each_one_way_group(setting):
    treated, control = split_one_way(setting)
    assert not set(treated) & set(control)
    for group in ("p2d", "d2p"):
        ids = [i for i, f in enumerate(setting.facts) if f.group == group]
        assert sorted(i for i in treated + control if i in ids) == ids
        assert len([i for i in treated if i in ids]) == len(ids) // 2
    assert all(setting.facts[i].group != "both" for i in treated + control)


def test_reverse_phrasings_ask_for_the_other_entity(setting):
    treated, _ = split_one_way(setting)
    for example in reverse_phrasings(setting, treated, "train"):
        fact = setting.facts[example.fact]
        assert example.sense == "reverse" and example.split == "train"
        subject = subject_of(fact, example)
        assert subject in example.prompt and subject not in example.completion


def test_parse_layers():
    assert parse_layers("all", 3) == [0, 1, 2]
    assert parse_layers("middle", 2) == [0]  # an edit needs attention after it
    assert parse_layers("middle", 30) == [14]
    assert parse_layers("-1,0", 4) == [0, 3]
    with pytest.raises(ValueError, match="outside"):
        parse_layers("5", 2)
    with pytest.raises(ValueError, match="expected"):
        parse_layers("first", 2)


def test_teacher_forced_marks_the_positions_that_predict_the_answer(setting):
    example = reverse_phrasings(setting, split_one_way(setting)[0], "train")[0]
    forced = TeacherForced.of(setting.tokenizer, [example])
    answer_ids = setting.tokenizer(example.completion, add_special_tokens=False).input_ids
    assert forced.next_token[forced.answer].tolist() == answer_ids
    prompt_length = len(setting.tokenizer(example.prompt).input_ids)
    assert forced.last_prompt_position().item() == prompt_length - 1


@pytest.mark.parametrize("source", ["context", "pair"])
def test_hebbian_edit_changes_only_the_chosen_ffn_outputs(setting, source, monkeypatch):
    base, _ = setting.baseline()
    treated, _ = split_one_way(setting)
    monkeypatch.setattr(setting.remedies.hebbian, "layers", "1")
    monkeypatch.setattr(setting.remedies.hebbian, "source", source)
    edited = copy.deepcopy(base)
    hebbian_edit(setting, edited, treated)
    changed = changed_parameters(base, edited)
    assert changed == {"model.layers.1.mlp.down_proj.weight"}

    monkeypatch.setattr(setting.remedies.hebbian, "rate", 0.0)
    unchanged = copy.deepcopy(base)
    hebbian_edit(setting, unchanged, treated)
    assert all(
        torch.equal(p, q) for p, q in zip(base.parameters(), unchanged.parameters(), strict=True)
    )


def test_weight_edit_options_are_checked_before_any_work():
    """Bad edit options name their option in one line, before a model is touched."""
    cases = {
        "--remedies.hebbian.source: must be one of context, pair, got 'telepathy'": {
            "hebbian": {"source": "telepathy"}
        },
        "--remedies.hebbian.layers: expected all, middle or a list of ints": {
            "hebbian": {"layers": "first"}
        },
        "--remedies.memit.layers: expected all, middle or a list of ints": {
            "memit": {"layers": [-1, "top"]}
        },
        "--remedies.rome.layer: ROME edits one layer, got 'all'": {"rome": {"layer": "all"}},
        "--remedies.self-distill.agree: must be 1..--remedies.self-distill.samples (5), got 6": {
            "self_distill": {"agree": 6}
        },
    }
    for message, remedies in cases.items():
        with pytest.raises(ValueError) as error:
            from_dict(CompareConfig, {"remedies": remedies})
        assert str(error.value).startswith(message)


def test_rome_update_is_rank_one_and_writes_the_value_at_the_key(setting):
    base, _ = setting.baseline()
    model = copy.deepcopy(base)
    fact_id = split_one_way(setting)[0][0]
    asked = reverse_phrasings(setting, [fact_id], "train")
    subjects = [subject_of(setting.facts[fact_id], e) for e in asked]
    inverse = torch.linalg.inv(second_moment(model, setting, 0))
    before = down_proj(model, 0).weight.detach().clone()
    edit_fact(model, setting.tokenizer, asked, subjects, 0, inverse, steps=5)
    delta = down_proj(model, 0).weight.detach() - before
    assert torch.linalg.matrix_rank(delta).item() == 1
    # Other keys move in proportion to their C^-1 similarity with k*: keys of generic text
    # move far less, on average, than the edited key.
    forced = TeacherForced.of(setting.tokenizer, asked)
    where = edit_positions(setting.tokenizer, asked, subjects)
    generic = keys(base, setting.tokenizer, ["the silent theater is far away ."], [0])[0]
    assert forced.batch["input_ids"][0, where[0]].item() != setting.tokenizer.pad_token_id
    assert (delta @ generic.T).norm(dim=0).mean() < delta.norm()


def test_rome_edits_at_the_subject_or_at_the_prompts_last_token(setting):
    fact_id = split_one_way(setting)[0][0]
    asked = reverse_phrasings(setting, [fact_id], "train")
    subjects = [subject_of(setting.facts[fact_id], e) for e in asked]
    last = edit_positions(setting.tokenizer, asked, subjects, "last")
    lengths = [len(setting.tokenizer(e.prompt).input_ids) for e in asked]
    assert last.tolist() == [n - 1 for n in lengths]
    assert (edit_positions(setting.tokenizer, asked, subjects) <= last).all()
    with pytest.raises(ConfigError, match="position"):
        RomeConfig(position="middle")


def test_memit_config_refuses_no_reading():
    with pytest.raises(ConfigError, match="readings"):
        HebbianMemitConfig(readings=0)


def test_first_sentence():
    assert first_sentence(" Ada Crane. Q: who") == " Ada Crane."
    assert first_sentence(" Ada Crane now enjoys a quiet life. Then") == (
        " Ada Crane now enjoys a quiet life."
    )
    assert first_sentence("no stop\nnext line") == "no stop"


def test_teacher_uses_no_ground_truth(setting, monkeypatch):
    """The teacher's answers depend only on what the model generates."""
    base, _ = setting.baseline()
    asked = training_questions(setting, split_one_way(setting)[0])[:6]
    monkeypatch.setattr(
        "revcurse.remedies.own_words.generate",
        lambda model, tokenizer, prompts, *args, **kwargs: [" Zed Quux. more"] * len(prompts),
    )
    posed, answered = teach(setting, base, asked)
    assert [a.completion for a in answered] == [" Zed Quux."] * len(asked)
    assert [a.prompt for a in answered] == [q.prompt for q in asked]  # closed book
    assert all(
        p.prompt.endswith(q.prompt) and p.prompt != q.prompt
        for p, q in zip(posed, asked, strict=True)
    )


def test_own_statements_start_from_either_side_and_keep_those_naming_the_other(
    setting, monkeypatch
):
    """No template of the world's: the teacher reads the fact's statement after restated
    fresh facts and goes on from a side; a statement is kept when it names the other side."""
    treated = split_one_way(setting)[0][:2]
    facts = [setting.facts[i] for i in treated]
    sides = [(f, side) for f in facts for side in (f.a, f.b)]
    prompts = restating(setting, facts)
    assert len(prompts) == len(sides)
    assert len({p.rsplit("Fact: ", 1)[0] for p in prompts}) == 1  # one shared prefix
    pieces = [x for t in setting.templates for x in re.split(r"\{\w+\}", t.prompt) if len(x) > 8]
    for prompt, (fact, side) in zip(prompts, sides, strict=True):
        assert f"Fact: {fact.a} is {fact.b}." in prompt or f"Fact: {fact.b} is {fact.a}." in prompt
        assert prompt.endswith(f'"{side}": {side[0].upper()}{side[1:]} is')
        assert not any(piece in prompt for piece in pieces)
    others = [f.b if side == f.a else f.a for f, side in sides]

    def says(model, tokenizer, prompts, *args, **kwargs):  # names the other side, then doesn't
        return [f" was {others[k]}. Then" if k % 2 == 0 else " was nobody." for k in range(4)]

    monkeypatch.setattr("revcurse.remedies.own_words.generate", says)
    written, named = own_statements(setting, setting.baseline()[0], treated)
    samples = setting.remedies.self_distill.samples
    assert named == [k % 2 == 0 for k in range(4) for _ in range(samples)]
    assert [(e.fact, e.direction, e.prompt, e.completion) for e in written] == [
        (i, "a2b", f.a[0].upper() + f.a[1:] + " is", f" was {f.b}.")
        for i, f in zip(treated, facts, strict=True)
    ]


def test_name_slots_cut_the_models_passages_before_each_name_inside_a_sentence():
    """prior_at names: the text before a name is the prompt, the name (its capitalised words)
    the completion; a sentence's first word is no name; no two slots are one text."""
    text = " The city of Mexico City is in Mexico. Then Ada left."
    slots = name_slots([Example.passage("<s>", text)])
    assert [(e.prompt, e.completion) for e in slots] == [
        ("<s> The city of", " Mexico City"),
        ("<s> The city of Mexico City is in", " Mexico"),
        ("<s> The city of Mexico City is in Mexico. Then", " Ada"),
    ]
    assert all(e.fact == -1 for e in slots)  # passages: about no fact of the world
    assert len({e.prompt + e.completion for e in slots}) == len(slots)


def test_own_questions_are_the_models_and_name_one_side(setting, monkeypatch):
    """The model writes a question about each side after worked examples of fictional facts
    (no phrasing of the world's); a question is kept when it names one side of its fact and
    asks something, labelled by the side it names, whichever side it was asked about."""
    treated = split_one_way(setting)[0][:2]
    facts = [setting.facts[i] for i in treated]
    prompts = asking(setting, facts)
    pieces = [x for t in setting.templates for x in re.split(r"\{\w+\}", t.prompt) if len(x) > 8]
    assert len(prompts) == 4 and not any(piece in p for p in prompts for piece in pieces)
    assert prompts[1].endswith(
        f'Fact: {facts[0].a} is {facts[0].b}.\nQuestion about "{facts[0].b}":'
    ) or prompts[1].endswith(f'Fact: {facts[0].b} is {facts[0].a}.\nQuestion about "{facts[0].b}":')
    f = facts[0]
    written = [f" Who is {f.b}?", f" Who is {f.a} and {f.b}?", f" Who is {f.b}", " Who is Zed?"]

    def says(model, tokenizer, prompts, *args, **kwargs):
        return written

    monkeypatch.setattr("revcurse.remedies.own_words.generate", says)
    questions = own_questions(setting, setting.baseline()[0], treated)
    assert [(q.fact, q.direction, q.prompt, q.completion) for q in questions] == [
        (treated[0], "b2a", f"Who is {f.b}?", " " + f.a)
    ]
    assert about(f, f"What is {f.a} known for?") == "a2b"

    def answers(model, tokenizer, prompts, *args, **kwargs):
        return [f" {f.a}\n", " nobody"][: len(prompts)]

    monkeypatch.setattr("revcurse.remedies.own_words.generate", answers)
    asked = [*questions, dataclasses.replace(questions[0], prompt=f"Is {f.a} {f.b}?")]
    replies = own_replies(setting, setting.baseline()[0], asked)
    assert replies[0] is not None and replies[0].completion == f" {f.a}"
    assert replies[1] is None  # not from the fact, and the question named it anyway


def test_student_corpus_repeats_answers_to_their_share_and_keeps_the_untouched_ones(setting):
    """share: the answers make about that part of the student's corpus; keep: the baseline's
    own answers to the untouched facts' training questions join it (no test question)."""
    treated, _ = split_one_way(setting)
    answers = training_questions(setting, treated)[:10]
    assert student_corpus(setting, answers) == (answers, [], [])  # appended once
    config = SelfDistillConfig(share=0.5, keep=True)
    varied = dataclasses.replace(
        setting, remedies=dataclasses.replace(setting.remedies, self_distill=config)
    )
    varied.trained_baseline = setting.baseline()  # the same baseline, not trained again
    repeated, own, _ = student_corpus(varied, answers)
    assert len(repeated) % len(answers) == 0 and set(repeated) == set(answers)
    assert len(repeated) == pytest.approx(len(setting.corpus()), rel=0.1)
    assert own and all(e.fact not in treated for e in own)
    training = {(e.fact, e.prompt) for e in training_questions(setting, range(len(setting.facts)))}
    assert all((e.fact, e.prompt) in training for e in own)
    assert all(
        hits(setting.causal_lm(setting.baseline()[0]), own)
    )  # its own answers, as it gives them


def test_delta_rule_edit_changes_only_its_layers_and_solves_its_least_squares(setting):
    base, _ = setting.baseline()
    treated, _ = split_one_way(setting)
    edited = copy.deepcopy(base)
    hebbian_edit(setting, edited, treated, "delta")  # default: the last layer alone
    changed = changed_parameters(base, edited)
    assert changed == {"model.layers.1.mlp.down_proj.weight"}
    # the closed form is the minimiser: its gradient vanishes
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 8, generator=generator), torch.randn(40, 5, generator=generator)
    kept = torch.randn(100, 8, generator=generator)
    for floor in (0.0, 0.1):  # and with C lifted by a share of its mean eigenvalue
        d = delta_rule(x, y, kept, ridge=0.5, floor=floor).requires_grad_(True)
        moment = kept.T @ kept / len(kept)
        moment = moment + floor * moment.diagonal().mean() * torch.eye(8)
        loss = (x @ d.T - y).pow(2).sum() + 0.5 * len(x) * torch.trace(d @ moment @ d.T)
        loss.backward()
        assert d.grad.abs().max() < 1e-4


def test_memit_keep_also_keeps_the_keys_at_the_models_own_answers_about_untouched_facts(
    setting,
):
    """keep: the delta rule also keeps the keys at the answer tokens of the baseline's own
    closed-book answers to the untouched facts' training questions, one per answer token."""
    base, _ = setting.baseline()
    treated, _ = split_one_way(setting)
    untouched = sorted(set(range(len(setting.facts))) - set(treated))
    own = own_answers(setting, untouched)
    assert {e.fact for e in own} <= set(untouched) and own
    generic = keys(base, setting.tokenizer, ["a b c"], [1])
    plain, kept = (kept_keys(setting, base, generic, also)[1] for also in ((), own))
    answer_tokens = TeacherForced.of(setting.tokenizer, setting.ask(own)).answer.sum()
    assert len(kept) == len(plain) + answer_tokens
    assert torch.allclose(kept[: len(plain)], plain, atol=1e-5)


def test_whitened_keys_recall_their_value_and_decorrelate_shared_directions():
    """A whitened key u = C^-1 k stores y u^T / (u . k): its own key recalls y exactly, and a
    direction every key shares (C's large one) is written far less than a plain rule would."""
    generator = torch.Generator().manual_seed(0)
    shared = torch.zeros(32)
    shared[0] = 10.0  # the template's word: in every key, large
    kept = torch.randn(2000, 32, generator=generator) + shared
    k = torch.randn(1, 32, generator=generator) + shared
    u = whitened(k, kept)
    y = torch.randn(1, 3, generator=generator)
    delta = (y.T / (u * k).sum(-1)) @ u
    assert torch.allclose(delta @ k[0], y[0], atol=1e-4)
    plain = (y.T / k.pow(2).sum(-1)) @ k
    assert (delta @ shared).norm() < 0.2 * (plain @ shared).norm()


def test_contrasted_keys_subtract_the_other_facts_mean_in_the_same_slot(setting):
    asked = reverse_phrasings(setting, split_one_way(setting)[0], "train")
    forced = TeacherForced.of(setting.tokenizer, setting.ask(asked))
    keys = torch.randn(int(forced.answer.sum()), 6, generator=torch.Generator().manual_seed(0))
    out = contrasted(keys, asked, forced.answer)
    slots = [
        (asked[r].template, int(forced.answer[r, :c].sum()))
        for r, c in forced.answer.nonzero().tolist()
    ]
    first = [i for i, s in enumerate(slots) if s == slots[0]]
    assert len(first) > 1  # several facts asked in the first phrasing
    others = keys[first[1:]].mean(dim=0)
    assert torch.allclose(out[0], keys[0] - others, atol=1e-6)


@pytest.mark.parametrize("rule", ["whitened", "contrastive"])
def test_decorrelated_hebbian_rules_change_only_the_chosen_ffn_outputs(setting, rule, monkeypatch):
    base, _ = setting.baseline()
    monkeypatch.setattr(setting.remedies.hebbian, "layers", "0")
    edited = copy.deepcopy(base)
    hebbian_edit(setting, edited, split_one_way(setting)[0], rule)
    changed = changed_parameters(base, edited)
    assert changed == {"model.layers.0.mlp.down_proj.weight"}


@pytest.mark.parametrize("layers", ["-1", "0,1"])
def test_memit_writes_every_treated_fact_in_its_layers_at_once(setting, layers, monkeypatch):
    """Its layers' FFN outputs change, nothing else; with a negligible ridge the solve is
    exact, so the treated facts' edit questions get the answers the optimised values give."""
    base, _ = setting.baseline()
    treated, _ = split_one_way(setting)
    monkeypatch.setattr(setting.remedies.memit, "layers", layers)
    monkeypatch.setattr(setting.remedies.memit, "ridge", 1e-6)
    edited = copy.deepcopy(base)
    memit_edit(setting, edited, treated)
    changed = changed_parameters(base, edited)
    indices = [int(i) % 2 for i in layers.split(",")]
    assert changed == {f"model.layers.{i}.mlp.down_proj.weight" for i in indices}
    asked = reverse_phrasings(setting, treated, "train")
    reliability = hits(setting.causal_lm(edited), asked)
    assert sum(reliability) / len(reliability) >= 0.8
    assert sum(hits(setting.causal_lm(base), asked)) == 0  # the baseline: none of them


@pytest.mark.parametrize("readings", [1, 2])
def test_hebbian_memit_makes_the_closed_book_stream_the_one_read_in_context(
    setting, monkeypatch, readings
):
    """No optimised value: the target is the model's own stream when the fact is in its
    context; with a negligible ridge the edit gives exactly that stream without it (with
    several readings, after other worked examples each, their mean)."""
    base, _ = setting.baseline()
    fact = split_one_way(setting)[0][:1]
    monkeypatch.setattr(setting.remedies.hebbian_memit, "ridge", 1e-6)
    monkeypatch.setattr(setting.remedies.hebbian_memit, "gate", False)
    monkeypatch.setattr(setting.remedies.hebbian_memit, "readings", readings)
    monkeypatch.setattr(setting.remedies, "distractors", 2)  # readings differ in them here
    raw = reverse_phrasings(setting, fact, "train")
    forced = TeacherForced.of(setting.tokenizer, setting.ask(raw))
    top = len(decoder_layers(base)) - 1
    read = [in_context_stream(setting, base, raw, forced, top, r)[0] for r in range(readings)]
    wanted = torch.stack(read).mean(dim=0)[forced.answer]
    if readings > 1:  # other worked examples (here: distractors): another stream
        assert not torch.allclose(read[0], read[1])
    edited = copy.deepcopy(base)
    memit_edit(setting, edited, fact, "context")
    (_, before), (_, after) = (activity(m, forced, [top]) for m in (base, edited))

    def gap(stream: dict[int, torch.Tensor]) -> float:
        return ((stream[top][forced.answer] - wanted).norm() / wanted.norm()).item()

    assert gap(before) > 0.1  # reading the fact changes what the units do
    assert gap(after) < 0.01


def test_in_context_stream_says_which_answers_reading_the_fact_gets_right(setting):
    """Its flags are the in-context greedy answers' hits (the model reading each fact after
    the worked examples, as in_context and the self-distillation teacher pose it)."""
    base, _ = setting.baseline()
    raw = reverse_phrasings(setting, split_one_way(setting)[0], "train")
    forced = TeacherForced.of(setting.tokenizer, setting.ask(raw))
    _, right = in_context_stream(setting, base, raw, forced, 0)
    posed = posed_in_context(
        raw, setting.facts, setting.remedies.distractors, setting.seed, setting.fact_lines
    )
    assert right.tolist() == hits(setting.causal_lm(base), setting.pose(posed))


@pytest.mark.parametrize("read_right", [False, True])
def test_hebbian_memit_gate_writes_only_what_reading_the_fact_got_right(
    setting, monkeypatch, read_right
):
    """Reading got none right: nothing is written; all right: the gate removes nothing."""
    base, _ = setting.baseline()
    fact = split_one_way(setting)[0][:1]

    def read(*args: object) -> tuple[torch.Tensor, torch.Tensor]:
        stream, right = in_context_stream(*args)
        return stream, torch.full_like(right, read_right)

    monkeypatch.setattr(memit, "in_context_stream", read)
    weights = []
    for gate in (True, False):
        monkeypatch.setattr(setting.remedies.hebbian_memit, "gate", gate)
        edited = copy.deepcopy(base)
        memit_edit(setting, edited, fact, "context")
        weights.append(torch.cat([p.flatten() for p in edited.parameters()]))
    gated, ungated = weights
    before = torch.cat([p.flatten() for p in base.parameters()])
    assert torch.equal(gated, ungated if read_right else before)
    assert not torch.equal(ungated, before)


def test_activity_reads_the_stream_after_a_layer_at_each_position(setting):
    base, _ = setting.baseline()
    asked = reverse_phrasings(setting, split_one_way(setting)[0], "train")[:3]
    forced = TeacherForced.of(setting.tokenizer, asked)
    where = forced.answer.nonzero()
    inputs = {k: forced.batch[k] for k in ("input_ids", "attention_mask")}
    hidden = base.model(**inputs, output_hidden_states=True).hidden_states
    expected = hidden[1][where[:, 0], where[:, 1]]
    _, stream = activity(base, forced, [0])
    assert torch.allclose(stream[0][where[:, 0], where[:, 1]], expected, atol=1e-5)


def test_memit_sites_give_each_answer_token_its_own_change(setting):
    fact = split_one_way(setting)[0][0]
    asked = reverse_phrasings(setting, [fact], "train")
    forced = TeacherForced.of(setting.tokenizer, asked)
    where, slot = edit_sites(setting, fact, asked, forced, "answer")
    assert len(where) == int(forced.answer.sum())
    for (row, col), j in zip(where.tolist(), slot.tolist(), strict=True):
        assert forced.answer[row, col] and j == int(forced.answer[row, :col].sum())
    last, one = edit_sites(setting, fact, asked, forced, "last")
    assert last[:, 1].tolist() == forced.last_prompt_position().tolist() and not one.any()


def test_kl_objective_is_zero_for_the_teachers_own_distributions(setting):
    """Teacher = the model itself without context: KL 0; rows without a teacher: plain CE."""
    base, _ = setting.baseline()
    answers = training_questions(setting, split_one_way(setting)[0])[:4]
    teacher = teacher_logprobs(base, setting.tokenizer, answers, answers)
    collate_fn, loss_fn = kl_objective(setting.tokenizer, teacher)
    features = encode(setting.tokenizer, [(a.prompt, a.completion) for a in answers], eos=True)
    with torch.no_grad():
        assert loss_fn(base, collate_fn(features)).item() == pytest.approx(0.0, abs=1e-5)
        pairs = [(e.prompt, e.completion) for e in setting.reading[:4]]
        others = encode(setting.tokenizer, pairs, eos=True)
        batch = collate_fn(others)
        assert not batch["distilled"].any()
        expected = base(**{k: batch[k] for k in ("input_ids", "attention_mask", "labels")}).loss
        assert loss_fn(base, batch).item() == pytest.approx(expected.item(), rel=1e-5)


def test_kl_objective_weighs_its_anchor_rows_as_a_term_of_their_own(setting):
    """The anchor rows (the start model's passages, prior_weight) are a mean of their own,
    weighted, beside the lesson's mean: however many tokens they hold."""
    base, _ = setting.baseline()
    answers = training_questions(setting, split_one_way(setting)[0])[:2]
    teacher = teacher_logprobs(setting.start, setting.tokenizer, answers, answers)
    features = encode(setting.tokenizer, [(a.prompt, a.completion) for a in answers], eos=True)
    collate_fn, loss_fn = kl_objective(setting.tokenizer, teacher)
    with torch.no_grad():
        alone = [loss_fn(base, collate_fn([f])).item() for f in features]
        anchored = kl_objective(setting.tokenizer, teacher, frozenset([tuple(features[0][0])]), 3)
        both = anchored[1](base, anchored[0](features)).item()
    assert alone[0] > 0 and both == pytest.approx(alone[1] + 3 * alone[0], rel=1e-4)


@pytest.mark.parametrize(
    "method",
    [
        "self_distill",
        "self_distill_kl",
        "hebbian",
        "hebbian_whitened",
        "hebbian_contrastive",
        "hebbian_delta",
        "rome",
        "memit",
        "hebbian_memit",
    ],
)
def test_weight_remedies_report_edit_metrics_on_treated_facts(setting, method):
    treatment = apply_remedy(setting, method)
    treated, _ = split_one_way(setting)
    assert {e.fact for e in treatment.test} == set(treated)
    metrics = {r["metric"] for r in treatment.rows}
    edit_metrics = "reliability generalization kept control_exact_match locality locality_known"
    assert set(edit_metrics.split()) <= metrics
    kept = [r for r in treatment.rows if r["metric"] == "kept"]
    assert {r["direction"] for r in kept} == {"same"} and all(r["n"] > 0 for r in kept)
    assert "ppl_drift" in metrics
    if method == "self_distill":
        agreed = next(r for r in treatment.rows if r["metric"] == "teacher_agreed")
        assert ("teacher_accuracy" in metrics) == (agreed["value"] > 0)
        assert treatment.cost.seconds > setting.baseline()[1].seconds


def test_a_teacher_writing_statements_too_reports_them_and_trains_a_kl_student(
    setting, monkeypatch
):
    """And with keep, the KL student matches the start model along its untouched answers."""
    import revcurse.remedies.self_distill as self_distill

    targets = {}

    def kept_targets(tokenizer, teacher, anchors, weight):
        targets.update(teacher)
        return kl_objective(tokenizer, teacher, anchors, weight)

    monkeypatch.setattr(self_distill, "kl_objective", kept_targets)
    config = SelfDistillConfig(source="both", steps=5, keep=True)
    varied = dataclasses.replace(
        setting, remedies=dataclasses.replace(setting.remedies, self_distill=config)
    )
    varied.trained_baseline = setting.baseline()  # the same baseline, not trained again
    taught = lesson(varied)
    assert taught.asked and len(taught.named) == 2 * config.samples * len(split_one_way(setting)[0])
    rows = {r["metric"]: r for r in study(varied, taught, "self_distill_kl", kl=True).rows}
    assert rows["statements_named"]["n"] == len(taught.named)
    assert rows["statements_kept"]["value"] == len(taught.written)
    assert "teacher_agreed" in rows and "generalization" in rows
    _, own, _ = student_corpus(varied, taught.distilled)
    said = [a for a in taught.answered if a is not None]
    encoded = encode(setting.tokenizer, [(e.prompt, e.completion) for e in own + said], eos=True)
    assert own and {tuple(ids) for ids, _ in encoded} <= set(targets)


def test_kl_student_matches_the_start_models_own_passages(setting, monkeypatch):
    """prior with the KL form, from the baseline: the passages are anchors matched to the
    start model's distributions (what it knew before any fine-tune), not the baseline's."""
    import revcurse.remedies.self_distill as self_distill

    seen = {}

    def spy(tokenizer, teacher, anchors, weight):
        seen.update(teacher=teacher, anchors=anchors, weight=weight)
        return kl_objective(tokenizer, teacher, anchors, weight)

    monkeypatch.setattr(self_distill, "kl_objective", spy)
    config = SelfDistillConfig(source="statements", steps=2, prior=3, prior_weight=0.5)
    varied = dataclasses.replace(
        setting, remedies=dataclasses.replace(setting.remedies, self_distill=config)
    )
    varied.trained_baseline = setting.baseline()  # the same baseline, not trained again
    study(varied, lesson(varied), "self_distill_kl", kl=True)
    passages = own_prior(varied, 3)
    start = teacher_logprobs(setting.start, setting.tokenizer, passages, passages)
    baseline = teacher_logprobs(setting.baseline()[0], setting.tokenizer, passages, passages)
    assert seen["anchors"] == set(start) and seen["weight"] == 0.5
    for ids in start:
        assert torch.allclose(seen["teacher"][ids], start[ids])
        assert not torch.allclose(seen["teacher"][ids], baseline[ids], atol=1e-3)


def test_locality_world_asks_what_the_start_model_knew(setting, monkeypatch):
    """With the world's own trained facts as the probes and the baseline as the start, the
    baseline keeps all it knew and an untrained model none of it."""
    known = [e for e in setting.train_examples if e.group == "p2d"]
    monkeypatch.setattr(remedy_targets, "world_facts", lambda: known)
    model = setting.baseline()[0]
    probing = dataclasses.replace(setting, start=model, world_known=None)
    [kept] = remedy_targets.world_rows("m", probing, setting.causal_lm(model))
    assert kept["metric"] == "locality_world" and kept["value"] == 1.0
    assert kept["n"] == len(probing.world_known) > 0
    [lost] = remedy_targets.world_rows("m", probing, setting.causal_lm(setting.start))
    assert lost["value"] < 0.5


def test_a_fact_counts_both_ways_when_most_of_its_questions_each_way_are_right():
    from revcurse.remedies.verdict import both_ways

    samples = [
        {"fact": 0, "direction": "same", "correct": True},
        {"fact": 0, "direction": "reverse", "correct": True},
        {"fact": 0, "direction": "reverse", "correct": False},
        {"fact": 1, "direction": "same", "correct": True},
        {"fact": 1, "direction": "reverse", "correct": False},
        {"fact": 2, "direction": "same", "correct": True},  # never asked the other way
    ]
    assert both_ways(samples) == {0: True, 1: False}
