"""`revcurse analyze`: each analysis on a tiny trained model whose answers are known."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import ROW_KEYS, script
from typer.testing import CliRunner

from revcurse.analysis import (
    POSITIONS,
    association_scores,
    build_queries,
    clean_run,
    fit_probe,
    label_bits,
    logit_lens,
    majority_rate,
    patched_probs,
    position_bins,
    single_token_logits,
    trace,
)
from revcurse.analysis.answers import KINDS as ANSWER_KINDS
from revcurse.analysis.answers import answer_rows
from revcurse.cli import app
from revcurse.config import load_yaml
from revcurse.fact_files import load_facts, load_templates
from revcurse.lm.hooks import KINDS, residual_stream
from revcurse.lm.models import load_checkpoint
from revcurse.recipes.analyze import AnalyzeConfig
from revcurse.recipes.demo import DemoConfig, run_demo
from revcurse.train import TrainConfig
from revcurse.world import WorldConfig

runner = CliRunner()
QUICK = ["--no-progress", "--trace.facts-per-group", "3", "--trace.noise-samples", "2"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from a second thread and stall badly when another process
    holds the other core (as `revcurse analyze` itself does: AnalyzeConfig.cpu_threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, one_thread):
    """A small demo run: 8 facts per group, trained to recall them (a few seconds)."""
    run_dir = tmp_path_factory.mktemp("analyze") / "demo"
    config = DemoConfig(
        output_dir=run_dir,
        progress=False,
        world=WorldConfig(facts_per_group=8),
        train=TrainConfig(steps=150),
    )
    run_demo(config)
    return run_dir


@pytest.fixture(scope="module")
def loaded(demo_run):
    model, tokenizer = load_checkpoint(demo_run / "model")
    facts = load_facts(demo_run / "world" / "facts.jsonl")
    templates = load_templates(demo_run / "world" / "templates.jsonl")
    return model, tokenizer, facts, build_queries(facts, templates, tokenizer)


def _probability(model, query) -> float:
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([query.input_ids])).logits[0, -1]
    return torch.softmax(logits, -1)[query.target].item()


def test_queries_find_the_subject_and_the_first_telling_token(loaded):
    _, tokenizer, facts, queries = loaded
    a2b = next(q for q in queries if q.direction == "a2b")
    b2a = next(q for q in queries if q.direction == "b2a")
    fact = facts[a2b.fact]
    subject = tokenizer.decode(a2b.input_ids[a2b.subject_start : a2b.subject_end])
    assert subject == fact.a
    assert tokenizer.decode(b2a.input_ids[b2a.subject_start : b2a.subject_end]) == facts[b2a.fact].b
    # Every description starts with "the": it joins the input and the role is the target.
    assert tokenizer.decode(a2b.input_ids[-1:]) == "the"
    assert tokenizer.decode([a2b.target]) == fact.b.split()[1]
    assert tokenizer.decode([b2a.target]) == facts[b2a.fact].a.split()[0]


def test_position_bins():
    # BOS, "Known", "as", s1, s2, s3, ",", "is", ":" -> subject at 3..5
    names = [POSITIONS[b] for b in position_bins(9, 3, 6)]
    assert names == [
        "before subject",
        "before subject",
        "before subject",
        "subject first",
        "subject middle",
        "subject last",
        "after subject",
        "further tokens",
        "last token",
    ]
    assert [POSITIONS[b] for b in position_bins(3, 1, 3)][-1] == "last token"


def test_logit_lens_last_layer_is_the_models_output(loaded):
    model, _, _, queries = loaded
    chosen = queries[:5] + queries[-5:]  # different lengths: padding must change nothing
    residuals = residual_stream(
        model, [q.input_ids for q in chosen], [len(q.input_ids) - 1 for q in chosen]
    )
    assert residuals.shape == (len(chosen), model.config.num_hidden_layers + 1, 64)
    probs, ranks = logit_lens(model, residuals, [q.target for q in chosen])
    expected = torch.tensor([_probability(model, q) for q in chosen])
    torch.testing.assert_close(probs[:, -1], expected, atol=1e-5, rtol=1e-4)
    assert (ranks >= 1).all()


def test_trace_without_noise_changes_nothing(loaded):
    model, _, _, queries = loaded
    query = queries[0]
    result = trace(model, query, noise_samples=2, noise_scale=0.0)
    assert result.clean == pytest.approx(_probability(model, query), abs=1e-5)
    assert result.corrupted == pytest.approx(result.clean, abs=1e-5)
    for kind in KINDS:
        assert result.restored[kind] == pytest.approx(result.clean, abs=1e-5)


def test_restoring_the_clean_state_recovers_the_clean_probability(loaded):
    model, _, _, queries = loaded
    query = next(q for q in queries if q.sense == "same")
    result = trace(model, query, noise_samples=3, noise_scale=10.0)
    assert result.corrupted < result.clean - 0.1  # the noise does destroy the answer
    # The last layer's output at the last position is all the prediction reads.
    assert result.restored["hidden"][-1, -1] == pytest.approx(result.clean, abs=1e-5)
    # Restoring every state of the first layer restores everything after it.
    clean, states = clean_run(model, query)
    everywhere = [[("hidden", 0, t) for t in range(len(query.input_ids))]]
    noise = torch.randn(1, query.subject_end - query.subject_start, 64) * 10.0
    recovered = patched_probs(model, query, noise, everywhere, states)
    assert recovered.item() == pytest.approx(clean, abs=1e-5)
    # Positions before the subject are untouched by the noise: no effect there.
    assert result.restored["mlp"][:, : query.subject_start] == pytest.approx(result.corrupted)


def test_trace_does_not_depend_on_the_batch_size(loaded):
    model, _, _, queries = loaded
    big = trace(model, queries[1], noise_samples=2, seed=3, batch_size=1024)
    small = trace(model, queries[1], noise_samples=2, seed=3, batch_size=7)
    for kind in KINDS:
        assert small.restored[kind] == pytest.approx(big.restored[kind], abs=1e-5)


def test_probe_reads_a_linear_label_and_not_a_shuffled_one():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(600, 16, generator=generator)
    directions = torch.randn(16, 3, generator=generator)
    y = (x @ directions > 0).long()
    probe = fit_probe(x[:400], y[:400])
    accuracy = (probe.predict(x[400:]) == y[400:].bool()).float().mean().item()
    assert accuracy > 0.9
    shuffled = y[:400][torch.randperm(400, generator=generator)]
    probe = fit_probe(x[:400], shuffled)
    accuracy = (probe.predict(x[400:]) == y[400:].bool()).float().mean().item()
    assert abs(accuracy - majority_rate(y[400:])) < 0.12  # chance, give or take sampling


def test_label_bits_split_the_labels_in_halves():
    bits = label_bits(list(range(10)) * 3, bits=4, seed=0)
    assert sorted(bits) == list(range(10))
    for column in zip(*bits.values(), strict=True):
        assert sum(column) == 5
    assert label_bits(list(range(10)), 4, seed=0) == label_bits(list(range(10)), 4, seed=0)


def test_association_is_the_one_token_logit_centred(loaded):
    model, tokenizer, _, _ = loaded
    tokens = tokenizer.convert_tokens_to_ids(["Ada", "the", "pilot"])
    logits = single_token_logits(model, tokens)
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([[tokens[0]]])).logits[0, -1]
    torch.testing.assert_close(logits[0], alone, atol=1e-5, rtol=1e-4)
    candidates = [5, 6, 7]
    scores = association_scores(model, tokens, candidates, candidates, [(0, 0), (0, 1), (0, 2)])
    assert sum(scores) == pytest.approx(0.0, abs=1e-4)  # centred on the candidates' mean


def test_analyze_end_to_end(demo_run, tmp_path):
    out = tmp_path / "analysis"
    result = runner.invoke(app, ["analyze", str(demo_run), "--output-dir", str(out), *QUICK])
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {
        "config.yaml",
        "results.json",
        "table.txt",
        "table.md",
        "lens.png",
        "trace.png",
        "probe.png",
        "assoc.png",
        "roles.png",
    }
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert all(set(r) == ROW_KEYS for r in rows)
    roles = [r for r in rows if r["direction"] == "roles"]  # the demo's model: a baseline
    assert {r["method"] for r in roles} == {"baseline"}
    said = [r for r in rows if r["metric"] in ANSWER_KINDS]  # the demo's answers
    assert {r["method"] for r in said} == {"baseline"}
    assert all(r["method"] == "analysis" for r in rows if r not in roles + said)
    # right (the run's exact match), another fact's trained answer, or other text: all of it
    exact = json.loads((demo_run / "results.json").read_text())["rows"]
    share = {
        (r["group"], r["direction"]): r["value"] for r in exact if r["metric"] == "exact_match"
    }
    for r in said:
        share[r["group"], r["direction"]] += r["value"]
    assert share == pytest.approx(dict.fromkeys(share, 1.0))
    assert share.keys() == {(g, d) for g in ("p2d", "d2p", "both") for d in ("same", "reverse")}
    for group in ("p2d", "d2p", "both"):  # token embeddings: one vector in both roles
        own = [
            r["value"] for r in roles if (r["group"], r["metric"]) == (group, "role_cosine_layer0")
        ]
        assert own == [pytest.approx(1.0, abs=1e-5)]
    metrics = {r["metric"] for r in rows}
    for metric in (
        "lens_target_prob_layer2",
        "trace_clean_prob",
        "trace_mlp_peak_effect",
        "probe_acc_layer1",
        "probe_chance",
        "assoc_score",
    ):
        assert metric in metrics
    # The forward prompts of the trained facts are answered; the curse holds in reverse.
    value = {(r["group"], r["direction"], r["metric"]): r["value"] for r in rows}
    assert value[("p2d", "same", "lens_target_prob_layer2")] > 0.5
    assert value[("p2d", "reverse", "lens_target_prob_layer2")] < 0.3
    assert (out / "trace.png").read_bytes()[:4] == b"\x89PNG"
    assert "mlp peak" in result.output

    config = load_yaml(AnalyzeConfig, out / "config.yaml")
    assert (config.run_dir, config.trace.noise_samples) == (demo_run, 2)
    replay = tmp_path / "replay"
    again = runner.invoke(
        app, ["analyze", "--config", str(out / "config.yaml"), "--output-dir", str(replay)]
    )
    assert again.exit_code == 0, again.output
    assert json.loads((replay / "results.json").read_text())["rows"] == rows


def answer(seed: int, target: str, output: str, group: str = "p2d", direction: str = "reverse"):
    correct = output.casefold().startswith(target.strip().casefold().rstrip("."))
    return {
        "method": "m", "group": group, "direction": direction, "seed": seed,
        "target": target, "output": output, "correct": correct,
    }  # fmt: skip


def test_a_wrong_answer_is_another_facts_trained_answer_only_in_its_own_world():
    taught = [  # what seed 0's and seed 1's training taught to say (a trained direction)
        answer(0, " Anya Crane.", "Anya Crane.", "d2p", "same"),
        answer(0, " the pilot.", "the pilot.", "both", "reverse"),
        answer(1, " Ida Vance.", "Ida Vance.", "d2p", "same"),
    ]
    asked = [
        answer(0, " Ezra Ingram.", "anya crane, of course"),  # another fact's, cased otherwise
        answer(0, " Ezra Ingram.", "The pilot."),
        answer(0, " Ezra Ingram.", "Ida Vance."),  # seed 1's: not this world's
        answer(0, " Ezra Ingram.", "Ezra Ingram."),  # right
        answer(0, " Anya Crane.", "Anya"),  # its own answer, cut short: not another's
    ]
    rows = answer_rows(taught + asked)
    value = {(r["group"], r["direction"], r["metric"]): r["value"] for r in rows}
    assert value["p2d", "reverse", "wrong_trained_answer"] == 2 / 5
    assert value["p2d", "reverse", "wrong_other"] == 2 / 5
    assert value["d2p", "same", "wrong_trained_answer"] == value["d2p", "same", "wrong_other"] == 0


def test_analyze_reads_a_compare_runs_answers_without_its_models(tmp_path):
    """A compare run kept no model: what its wrong answers are still comes from its
    samples.jsonl; a line that is no scored answer is named, with nothing written."""
    run = tmp_path / "run"
    run.mkdir()
    samples = [answer(0, " Anya Crane.", "Anya Crane.", "d2p", "same")] * 2
    samples += [answer(0, " Ezra Ingram.", "Anya Crane."), answer(0, " Ezra Ingram.", "Bo.")]
    (run / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    out = tmp_path / "analysis"
    result = runner.invoke(app, ["analyze", str(run), "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "results.json").read_text())["rows"]
    value = {(r["direction"], r["metric"]): r["value"] for r in rows}
    assert value["reverse", "wrong_trained_answer"] == value["reverse", "wrong_other"] == 0.5
    assert "another fact's trained answer" in (out / "table.txt").read_text()

    (run / "samples.jsonl").write_text(json.dumps(samples[0]) + '\n{"method": "m"}\n')
    result = runner.invoke(app, ["analyze", str(run), "--output-dir", str(tmp_path / "bad")])
    assert result.exit_code == 2
    assert f"{run / 'samples.jsonl'}:2: not a scored answer (no group" in result.output
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("make", ["missing", "not_a_run", "none"])
def test_bad_run_dir_exits_2_with_one_line(tmp_path, make):
    args = ["analyze", "--output-dir", str(tmp_path / "out"), "--no-progress"]
    if make == "missing":
        args.insert(1, str(tmp_path / "nowhere"))
    elif make == "not_a_run":
        args.insert(1, str(tmp_path))
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert {
        "missing": "no such run directory",
        "not_a_run": "not a revcurse run directory",
        "none": "RUN_DIR: missing",
    }[make] in lines[0]
    assert not (tmp_path / "out").exists()


def test_existing_output_dir_is_never_overwritten(demo_run, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["analyze", str(demo_run), "--output-dir", str(out), *QUICK])
    assert result.exit_code == 2
    assert "never overwritten" in result.output
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_bad_option_exits_2(demo_run, tmp_path):
    out = tmp_path / "out"
    args = ["analyze", str(demo_run), "--output-dir", str(out), "--trace.noise-samples", "0"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "--trace.noise-samples: must be at least 1" in result.output
    assert not out.exists()


# ---------------------------------------------------------------------------- README sentences


@pytest.fixture(scope="module")
def update_readme():
    return script("update_readme")


def _analysis_results(mlp_position: int = 6, reverse_margin: float = 0.3) -> dict:
    """A results.json of `revcurse analyze` with only the rows the README sentences read:
    forward MLP peaks at `mlp_position` (an index into POSITIONS), attention at layer 0
    of the last token, nothing to restore in reverse, a probe that reads d2p names only."""
    rows = []

    def add(group, rel, metric, value, ci=None):
        low, high = ci or (None, None)
        row = dict(method="analysis", group=group, direction=rel, metric=metric, value=value)
        rows.append({**row, "n": 20, "ci_low": low, "ci_high": high})

    for group, probed, probe_acc in (("p2d", "reverse", 0.49), ("d2p", "same", 0.77)):
        for rel, scale in (("same", 1.0), ("reverse", 0.0)):
            for kind, layer, position, effect in (
                ("hidden", 1, 6, 0.8),
                ("mlp", 1, mlp_position, 0.75),
                ("attn", 0, 6, 0.6),
            ):
                add(group, rel, f"trace_{kind}_peak_layer", layer)
                add(group, rel, f"trace_{kind}_peak_position", position)
                add(group, rel, f"trace_{kind}_peak_effect", effect * scale)
            subject_effect = 0.75 if mlp_position == POSITIONS.index("subject last") else 0.02
            add(group, rel, "trace_mlp_layer1_subject_last", subject_effect * scale)
        add(group, "reverse", "trace_clean_prob", 0.01)
        add(group, probed, "probe_chance", 0.55)
        for layer in range(3):
            final = probe_acc if layer == 2 else 0.5
            ci = (final - 0.03, final + 0.03)
            add(group, probed, f"probe_acc_prompt_end_layer{layer}", final, ci)
            add(group, probed, f"probe_acc_layer{layer}", 0.5, (0.46, 0.54))
        add(group, "same", "assoc_margin", 2.0, (1.4, 2.6))
        ci = (reverse_margin - 0.6, reverse_margin + 0.6)
        add(group, "reverse", "assoc_margin", reverse_margin, ci)
    return {
        "rows": rows,
        "config": {
            "seed": 0,
            "cpu_threads": 1,
            "trace": {"facts_per_group": 20, "noise_samples": 10},
        },
        "demo_seed": 0,
        "positions": list(POSITIONS),
        "seconds": {"total": 7.0},
        "versions": {"torch": "2.13.0+cpu"},
    }


def test_readme_sentences_are_phrased_from_the_numbers(update_readme):
    text = " ".join(update_readme.analyze_text(_analysis_results()).split())
    assert "`revcurse demo --seed 0` then `revcurse analyze RUN_DIR --seed 0`" in text
    assert "at the last prompt position, not at the subject as ROME found" in text
    assert "restoring MLP 1's output there brings p(answer) back by +0.75" in text
    assert "no subject position recovers more than +0.02" in text
    assert "are not answered even unnoised" in text
    assert "for d2p facts (0.77 [0.74, 0.80] vs chance 0.55) but not for p2d facts" in text
    assert "(B -> A, no more than random)" in text


def test_readme_sentences_follow_a_moved_peak(update_readme):
    results = _analysis_results(POSITIONS.index("subject last"), reverse_margin=1.0)
    text = " ".join(update_readme.analyze_text(results).split())
    assert "at the subject's last token, as ROME found in large models" in text
    assert "the subject's own states recover up to +0.75" in text
    assert "(attention peaks at layer 0 at the last prompt position (+0.60) for p2d" in text
    assert "+1.00 [0.40, 1.60] in p2d facts (B -> A, less)" in text
