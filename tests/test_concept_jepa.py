"""concept_jepa: a concept model trained on the facts as stated, nothing written both ways."""

from __future__ import annotations

import pytest
import torch

from revcurse.config import ConfigError
from revcurse.facts import Fact
from revcurse.lm.batching import encode
from revcurse.remedies.concept_jepa import (
    ConceptJepa,
    ConceptJepaConfig,
    ConceptJepaLM,
    apply,
    jepa_collate,
    slotted,
)
from revcurse.remedies.concept_model import Lexicon
from revcurse.remedies.setting import Setting
from revcurse.results import kept_model_dir


def test_it_trains_on_the_stated_pairs_only_no_reverse_of_a_one_way_fact(concept_setting):
    setting = concept_setting
    tokenizer = setting.tokenizer
    lexicon = Lexicon.of(tokenizer, setting.facts)
    corpus = setting.corpus(reading=False)
    features = encode(tokenizer, [(e.prompt, e.completion) for e in corpus], eos=True)
    batch = jepa_collate(tokenizer.pad_token_id, tokenizer.eos_token_id, lexicon)(features)
    named = [tokenizer.decode(e) for e in lexicon.entities]
    pairs = {(named[q], named[a]) for q, a in zip(batch["query"], batch["answer"], strict=True)}
    one_way = [f for f in setting.facts if f.group != "both"]
    assert pairs == {(f.a, f.b) if f.group == "p2d" else (f.b, f.a) for f in one_way} | {
        pair for f in setting.facts if f.group == "both" for pair in ((f.a, f.b), (f.b, f.a))
    }
    assert batch["attention_mask"].sum() == sum(len(ids) for ids, _ in features)


def test_a_prompts_entity_is_cut_to_one_slot(concept_setting):
    setting = concept_setting
    tokenizer = setting.tokenizer
    lexicon = Lexicon.of(tokenizer, [Fact("p2d", "Ada Crane", "the pilot of the glass river")])
    ids = tokenizer("Who is the pilot of the glass river?").input_ids
    cut, slot, entity = slotted(ids, lexicon)
    assert len(cut) == len(ids) - len(lexicon.entities[entity]) + 1 and cut[slot] == 0
    assert slotted(tokenizer("Who is nobody?").input_ids, lexicon)[2] == -1


@pytest.mark.parametrize("binding", ["consistent", "separate"])
@pytest.mark.parametrize("encoder", ["patch", "memory"])
def test_an_entity_is_one_concept_in_both_roles_only_with_consistent_binding(
    concept_setting, binding, encoder
):
    setting = concept_setting
    lexicon = Lexicon.of(setting.tokenizer, setting.facts)
    config = ConceptJepaConfig(width=16, binding=binding, encoder=encoder)  # type: ignore[arg-type]
    model = ConceptJepa(len(setting.tokenizer), lexicon, config, 64)
    every = torch.arange(len(lexicon.entities))
    with torch.no_grad():
        same = torch.allclose(model.concepts(every), model.concepts(every, "object"))
    assert same == (binding == "consistent")


@pytest.mark.parametrize("loss", ["contrastive", "tokens"])
@pytest.mark.parametrize("concept_at", ["slot", "end"])
def test_it_answers_with_an_entitys_name_and_scores_the_named_answer(
    concept_setting, loss, concept_at
):
    setting = concept_setting
    tokenizer = setting.tokenizer
    lexicon = Lexicon.of(tokenizer, setting.facts)
    config = ConceptJepaConfig(width=16, loss=loss, concept_at=concept_at)  # type: ignore[arg-type]
    torch.manual_seed(0)
    lm = ConceptJepaLM(ConceptJepa(len(tokenizer), lexicon, config, 64), tokenizer, lexicon, 4)
    fact = setting.facts[0]
    said = lm.generate([f"Who is {fact.a}?"] * 5, 8)
    assert len(said) == 5 and len(set(said)) == 1
    if loss == "contrastive":
        assert said[0].strip(" .") in {side for f in setting.facts for side in (f.a, f.b)}
    scores = lm.logprobs([(f"Who is {fact.a}?", f" {f.b}.") for f in setting.facts])
    assert all(s <= 0 for s in scores)
    if loss == "contrastive":  # a distribution over the world's entities
        assert sum(torch.tensor(scores).exp()) <= 1 + 1e-5
    assert lm.logprobs([(f"Who is {fact.a}?", " nobody.")]) == [-1e4]


def test_options_are_checked():
    with pytest.raises(ConfigError, match="width"):
        ConceptJepaConfig(width=6)
    with pytest.raises(ConfigError, match="predictor_layers"):
        ConceptJepaConfig(predictor_layers=0)


def test_compare_runs_it_and_its_ablations_and_analyze_reads_its_binding(
    small_compare, kept_and_analyzed, tmp_path
):
    """The model and its ablations train and answer in one compare (a small world; what they
    reach is in docs/concept-jepa.md, measured on compare's defaults). Kept, a model answers
    as it did in the run, and `revcurse analyze` finds an entity one concept in both roles
    with one encoder, two with two."""
    methods = [
        "concept_jepa",
        "concept_jepa_memory",
        "concept_jepa_tokens",
        "concept_jepa_separate",
    ]
    value = small_compare(methods, keep=["concept_jepa", "concept_jepa_separate"])
    for method in methods:
        assert 0 <= value[method, "both", "same"] <= 1
    assert value["concept_jepa", "both", "same"] >= 0.9

    run = tmp_path / "run"
    model = ConceptJepaLM.load(kept_model_dir(run, 0, "concept_jepa"))
    cosine = kept_and_analyzed(run, "concept_jepa", model, tmp_path / "analysis")
    for group in ("p2d", "d2p", "both"):
        assert cosine["concept_jepa", group, "role_cosine_concept"] == pytest.approx(1.0, abs=1e-5)
        assert cosine["concept_jepa_separate", group, "role_cosine_concept"] < 0.9


def test_the_control_trains_no_fact_both_ways(concept_setting, monkeypatch):
    trained_on: list = []

    def record(self, **options):
        trained_on.extend(self.train_examples)
        raise StopIteration  # what it trains on is all this test asks

    monkeypatch.setattr(Setting, "train_model", record)
    with pytest.raises(StopIteration):
        apply(concept_setting, "concept_jepa", both_ways=False)
    both = [e for e in concept_setting.train_examples if e.group == "both"]
    assert {e.direction for e in both} == {"a2b", "b2a"}
    assert [e for e in trained_on if e.group == "both"] == [e for e in both if e.direction == "a2b"]
    others = [e for e in concept_setting.train_examples if e.group != "both"]
    assert [e for e in trained_on if e.group != "both"] == others
