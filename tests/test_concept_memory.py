"""concept_memory: a memory addressed by concepts answers one-way facts both ways."""

from __future__ import annotations

import pytest
import torch

from revcurse.config import ConfigError
from revcurse.facts import Fact
from revcurse.recipes.compare import CompareConfig
from revcurse.remedies.concept_memory import ConceptLM, naming_examples, stated_pairs
from revcurse.remedies.concept_model import ConceptMemoryConfig, ConceptMemoryModel, Lexicon
from revcurse.results import kept_model_dir


def test_its_corpus_states_no_one_way_fact_in_its_untrained_direction(concept_setting):
    """What concept_memory trains on and writes: the facts as trained, and each entity alone."""
    setting = concept_setting
    tokenizer = setting.tokenizer
    lexicon = Lexicon.of(tokenizer, setting.facts)
    naming = naming_examples(setting.train_examples, tokenizer, lexicon)
    corpus = setting.corpus(naming, reading=False)
    one_way = [f for f in setting.facts if f.group != "both"]
    untrained = {(f.b, f.a) if f.group == "p2d" else (f.a, f.b) for f in one_way}
    for e in corpus:
        stated = {(x, y) for x, y in untrained if x in e.prompt and y in e.completion}
        assert not stated, e
    assert {e.prompt for e in naming} == {""}
    assert {e.completion.strip(" .") for e in naming} == {
        side for f in setting.facts for side in (f.a, f.b)
    }
    pairs = stated_pairs(setting.train_examples, tokenizer, lexicon)
    said = {(tokenizer.decode(a), tokenizer.decode(b)) for a, b in pairs}
    assert said == {(f.a, f.b) if f.group == "p2d" else (f.b, f.a) for f in one_way} | {
        pair for f in setting.facts if f.group == "both" for pair in ((f.a, f.b), (f.b, f.a))
    }


def test_the_memory_answers_a_pair_from_either_side_only_when_symmetric(concept_setting):
    setting = concept_setting
    tokenizer = setting.tokenizer
    facts = [Fact("p2d", "Ada Crane", "the pilot of the glass river")]
    lexicon = Lexicon.of(tokenizer, [*facts, *setting.facts])
    pairs = [
        tuple(tuple(tokenizer(s, add_special_tokens=False).input_ids) for s in (f.a, f.b))
        for f in [*facts, *setting.facts[:5]]
    ]
    for symmetric in (True, False):
        torch.manual_seed(0)
        config = ConceptMemoryConfig(temperature=1000.0, symmetric=symmetric)
        model = ConceptMemoryModel(setting.start, pairs, config, lexicon.span)
        ada, pilot = (torch.tensor([ids]) for ids in pairs[0])
        with torch.no_grad():
            answer = model.read(model.concept(pilot, torch.ones_like(pilot)))
            own = model.parts(ada, torch.ones_like(ada))
        assert answer.shape == (1, lexicon.span, own.shape[-1])
        assert torch.allclose(answer, own, atol=1e-4) == symmetric
    assert lexicon.find(tokenizer("Who is the pilot of the glass river?").input_ids) == pairs[0][1]


def test_concept_memory_answers_one_way_facts_in_reverse(
    small_compare, kept_and_analyzed, tmp_path
):
    """Measured on a small world: the baseline's reverse at chance, concept_memory's high.
    Its model, kept (--keep-models), answers as it did in the run, and `revcurse analyze`
    compares how alike its entities are as subject and object with the baseline's."""
    methods = ["baseline", "concept_memory"]
    value = small_compare(methods, keep=methods)
    for group in ("p2d", "d2p"):
        assert value["baseline", group, "reverse"] <= 0.1
        assert value["concept_memory", group, "same"] >= 0.9
        # a reader of 2 steps and 8 facts a group; compare's defaults: 1.00 (docs/concepts.md)
        assert value["concept_memory", group, "reverse"] >= 0.6

    run = tmp_path / "run"
    kept = ConceptLM.load(kept_model_dir(run, 0, "concept_memory"))
    cosine = kept_and_analyzed(run, "concept_memory", kept, tmp_path / "analysis")
    for group in ("p2d", "d2p", "both"):
        # the token embeddings, and the memory's concept, are one vector in both roles
        for method, site in [*((m, "layer0") for m in methods), ("concept_memory", "concept")]:
            assert cosine[method, group, f"role_cosine_{site}"] == pytest.approx(1.0, abs=1e-5)
            assert cosine[method, group, f"role_cosine_other_{site}"] < 0.5
        assert -1 <= cosine["baseline", group, "role_cosine_layer2"] < 1 - 1e-3


def test_only_the_compared_methods_models_can_be_kept():
    with pytest.raises(ConfigError, match="keep_models: rome: not among --methods"):
        CompareConfig(methods=["baseline"], keep_models=["rome"])
    with pytest.raises(ConfigError, match="keep_models: mlm_u: keeps no model analyze can"):
        CompareConfig(methods=["baseline", "mlm_u"], keep_models=["mlm_u"])
