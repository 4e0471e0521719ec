"""No test question reaches what any remedy learns from: its training corpus (replay
included), the texts it edits or keeps the keys of, or what its teacher reads; and the
check finds one that is planted."""

from __future__ import annotations

import dataclasses

import pytest

from revcurse.errors import UserError
from revcurse.reader import ReaderConfig
from revcurse.recipes.compare import CompareConfig
from revcurse.recipes.remedy_run import build_setting, starting_point
from revcurse.remedies import (
    REMEDIES,
    apply_remedy,
    hebbian,
    memit,
    own_words,
    rome,
    targets,
)
from revcurse.remedies import setting as setting_module
from revcurse.remedies.ffn import TeacherForced
from revcurse.train import TrainConfig
from revcurse.world import WorldConfig


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    """A small world (4 facts a group), every budget small: what is read matters, not how
    well it is learned."""
    config = CompareConfig(world=WorldConfig(facts_per_group=4), progress=False)
    config.remedies.reading_documents = 50
    config.remedies.generic_documents = 10
    config.remedies.self_distill.steps = 5
    config.remedies.mlm_u.steps = 5
    config.train = TrainConfig(steps=30, batch_size=32)
    folder = tmp_path_factory.mktemp("leaks")
    config.reader = ReaderConfig(documents=50, train=TrainConfig(steps=5), cache_dir=folder)
    return build_setting(config, seed=0, workdir=folder, start=starting_point(config))


@pytest.fixture
def read(monkeypatch) -> list[str]:
    """Every text a remedy trains on, teacher-forces (edit targets and kept keys), takes key
    statistics of or has its teacher continue, as it is read."""
    texts: list[str] = []
    trainer, forced, of = setting_module.train, TeacherForced.of.__func__, {}

    def train(model, tokenizer, examples, *args, **kwargs):
        texts.extend(e.prompt + e.completion for e in examples)
        return trainer(model, tokenizer, examples, *args, **kwargs)

    def teacher_forced(cls, tokenizer, examples):
        texts.extend(e.prompt + e.completion for e in examples)
        return forced(cls, tokenizer, examples)

    def keys_of(module):
        def keys(model, tokenizer, given, *args, **kwargs):
            texts.extend(given)
            return of[module](model, tokenizer, given, *args, **kwargs)

        return keys

    def generate(model, tokenizer, prompts, *args, **kwargs):
        texts.extend(prompts)
        return teacher(model, tokenizer, prompts, *args, **kwargs)

    teacher = own_words.generate
    monkeypatch.setattr(setting_module, "train", train)
    monkeypatch.setattr(TeacherForced, "of", classmethod(teacher_forced))
    for module in (hebbian, memit, rome):
        of[module] = module.keys
        monkeypatch.setattr(module, "keys", keys_of(module))
    monkeypatch.setattr(own_words, "generate", generate)
    return texts


def leaked(texts: list[str], setting) -> set[str]:
    """The one-way facts' test questions (treated or not) found in the texts read. (The
    `both` facts are trained on their test phrasings by design: revcurse.facts.expand.)"""
    questions = {e.prompt.strip() for e in setting.test_examples if e.group != "both"}
    return {q for q in questions if any(q in text for text in texts)}


@pytest.mark.parametrize("method", list(REMEDIES))
def test_no_test_question_reaches_what_a_remedy_learns_from(setting, read, method):
    """Its baseline trained anew (a replace()d setting), so that it is read here too: the
    prompting remedies (in_context, knowledge_base) learn nothing else."""
    apply_remedy(dataclasses.replace(setting), method)
    assert read, f"{method}: nothing was captured (the check would pass vacuously)"
    assert not leaked(read, setting)


def test_a_test_question_planted_in_the_corpus_is_found(setting, read):
    planted = dataclasses.replace(
        setting, train_examples=[*setting.train_examples, setting.test_examples[0]]
    )
    apply_remedy(planted, "baseline")
    assert leaked(read, setting) == {setting.test_examples[0].prompt.strip()}


def test_a_test_question_planted_in_an_edit_is_found(setting, read, monkeypatch):
    questions = memit.reverse_to_write
    planted = [e for e in setting.test_examples if e.group != "both"][-1]
    monkeypatch.setattr(memit, "reverse_to_write", lambda *args: [*questions(*args), planted])
    apply_remedy(setting, "memit")
    assert planted.prompt.strip() in leaked(read, setting)


@pytest.mark.parametrize("method", ["self_distill", "self_distill_kl", "hebbian_delta", "memit"])
def test_no_control_fact_is_replayed_or_kept(setting, read, method):
    """What `locality` asks about, nothing protects: a treatment (once the baseline has
    learned every fact) reads none of the controls' training sentences."""
    setting.baseline()
    read.clear()
    apply_remedy(setting, method)
    controls = targets.controls(setting)
    sentences = {e.prompt + e.completion for e in setting.train_examples if e.fact in controls}
    assert read and sentences
    assert not [s for s in sentences if any(s in text for text in read)]
    replayed = [e.prompt + e.completion for e in setting.train_examples if e.fact not in controls]
    if method.startswith("self_distill"):  # its replay still holds the other facts
        assert any(s in read for s in replayed)


def test_a_sham_world_gives_each_treated_fact_another_ones_answer_side(setting):
    facts, swapped = targets.sham_facts(setting)
    treated = targets.split_one_way(setting)[0]
    assert swapped == sorted(treated)
    for i, (true, shown) in enumerate(zip(setting.facts, facts, strict=True)):
        assert shown.a == true.a and shown.group == true.group
        assert (shown.b != true.b) == (i in treated)
    for group in ("p2d", "d2p"):  # the same answers, dealt to other facts
        ids = [i for i in treated if setting.facts[i].group == group]
        assert sorted(facts[i].b for i in ids) == sorted(setting.facts[i].b for i in ids)


def test_held_out_text_is_read_by_no_corpus(setting):
    texts = targets.held_out_texts(setting)
    corpus = {e.prompt + e.completion for e in setting.corpus()}
    assert texts and not corpus.intersection(texts)
    assert not set(targets.generic_texts(setting)).intersection(texts)


@pytest.fixture(scope="module")
def statements(tmp_path_factory):
    """A world of statements (each fact one plain sentence, the phrasings only test), every
    budget small; its teacher restates the facts (source statements)."""
    config = CompareConfig(world=WorldConfig(facts_per_group=4, statements=True), progress=False)
    config.remedies.reading_documents = 50
    config.remedies.generic_documents = 10
    config.remedies.self_distill.steps = 5
    config.remedies.self_distill.source = "statements"
    config.train = TrainConfig(steps=30, batch_size=32)
    folder = tmp_path_factory.mktemp("statements")
    config.reader = ReaderConfig(
        documents=50, train=TrainConfig(steps=5), cache_dir=folder, world_facts=0
    )
    return build_setting(config, seed=0, workdir=folder, start=starting_point(config))


def phrased(texts: list[str], setting) -> set[str]:
    """The world's phrasings (their words between the entities, two words or more) found in
    the texts read."""
    parts = {
        part.strip()
        for t in setting.templates
        for side in (t.prompt, t.completion)
        for part in side.replace("{b}", "{a}").split("{a}")
    }
    wordy = {p for p in parts if len(p.split()) >= 2}
    return {p for p in wordy if any(p in text for text in texts)}


@pytest.mark.parametrize(
    ("method", "source"),
    [
        ("baseline", "statements"),
        ("self_distill", "statements"),
        ("self_distill", "own"),
        ("self_distill_kl", "statements"),
    ],
)
def test_no_world_phrasing_reaches_what_learns_from_statements(statements, read, method, source):
    """In a world of statements, every fact trains on its own sentence: the baseline, the
    reading documents and every remedy's training and teacher read no word of a phrasing
    (the teacher writing its own questions too)."""
    assert {t.split for t in statements.templates} == {"test"}
    config = dataclasses.replace(statements.remedies.self_distill, source=source)
    remedies = dataclasses.replace(statements.remedies, self_distill=config)
    apply_remedy(dataclasses.replace(statements, remedies=remedies), method)
    assert read and phrased(["The trailblazer known as Ada was once"], statements)
    assert not phrased(read, statements)
    facts = {f.text for f in statements.facts}
    assert facts <= {text for text in read}  # each sentence trained as written


def test_a_phrasing_planted_in_a_world_of_statements_is_found(statements, read):
    planted = dataclasses.replace(
        statements, train_examples=[*statements.train_examples, statements.test_examples[0]]
    )
    apply_remedy(planted, "baseline")
    assert phrased(read, statements)


@pytest.mark.parametrize("method", ["bidirectional", "hebbian_memit", "rome"])
def test_a_remedy_that_writes_in_training_phrasings_refuses_a_world_of_statements(
    statements, method
):
    with pytest.raises(UserError, match="a world of statements has none"):
        apply_remedy(statements, method)


def test_the_student_keeps_its_prior_by_replaying_its_own_unprompted_text(statements, read):
    """`prior`: passages the start model writes from a document's start, seeded, replayed
    by the student; they hold no phrasing of the world's either."""
    passages = own_words.own_prior(statements, 4)
    assert len(passages) == 4 and all(p.completion.strip() for p in passages)
    assert passages == own_words.own_prior(statements, 4)
    assert own_words.own_prior(statements, 0) == []
    config = dataclasses.replace(statements.remedies.self_distill, prior=4, source="statements")
    remedies = dataclasses.replace(statements.remedies, self_distill=config)
    apply_remedy(dataclasses.replace(statements, remedies=remedies), "self_distill")
    assert all(any(p.completion in text for text in read) for p in passages)
    assert not phrased(read, statements)
