"""The training loop: the prompt is masked out of the loss, and runs are reproducible."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import pytest
import torch
from peft.tuners.lora import LoraModel

from revcurse.config import from_dict
from revcurse.converge import ConvergeConfig, Plateau
from revcurse.lm.batching import IGNORE, collate, encode
from revcurse.lm.models import load_checkpoint, save_checkpoint
from revcurse.lm.tiny import TinyModelConfig, build_tiny_model
from revcurse.train import TrainConfig, completion_loss, lr_factor, train


def test_prompt_tokens_are_masked_and_completion_plus_eos_scored(small_world):
    _, train_examples, _, tokenizer = small_world
    example = train_examples[0]
    [(ids, labels)] = encode(tokenizer, [(example.prompt, example.completion)], eos=True)
    prompt_len = len(tokenizer(example.prompt).input_ids)
    completion = tokenizer(example.completion, add_special_tokens=False).input_ids
    assert ids[0] == tokenizer.bos_token_id
    assert labels[:prompt_len] == [IGNORE] * prompt_len
    assert labels[prompt_len:] == [*completion, tokenizer.eos_token_id] == ids[prompt_len:]
    [(_, labels_no_eos)] = encode(tokenizer, [(example.prompt, example.completion)], eos=False)
    assert labels_no_eos[prompt_len:] == completion


def test_loss_ignores_the_prompt(small_world):
    """The model's loss equals cross-entropy over completion positions only."""
    _, train_examples, _, tokenizer = small_world
    torch.manual_seed(0)
    model = build_tiny_model(TinyModelConfig(), tokenizer)
    pairs = [(e.prompt, e.completion) for e in train_examples[:5]]
    batch = collate(encode(tokenizer, pairs, eos=True), tokenizer.pad_token_id)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]
    manual = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE
    )
    assert torch.allclose(model(**batch).loss, manual, atol=1e-6)
    n_prompt = sum(len(tokenizer(p).input_ids) for p, _ in pairs)
    assert (targets != IGNORE).sum() == batch["attention_mask"].sum() - n_prompt


def test_completion_loss_is_the_models_loss_and_gradient(small_world):
    """Running the output layer only where a label is predicted changes neither the loss nor
    its gradient (pretrained models train with it), with or without LoRA adapters."""
    from revcurse.train import with_lora

    _, train_examples, _, tokenizer = small_world
    torch.manual_seed(0)
    model = build_tiny_model(TinyModelConfig(), tokenizer)
    pairs = [(e.prompt, e.completion) for e in train_examples[:6]]
    batch = collate(encode(tokenizer, pairs, eos=True), tokenizer.pad_token_id)
    for trainee in (model, with_lora(model, TrainConfig(lora_rank=4))):
        grads = []
        for loss_of in (lambda m: m(**batch).loss, lambda m: completion_loss(m, batch)):
            trainee.zero_grad()
            loss = loss_of(trainee)
            loss.backward()
            grads.append(
                (loss.detach(), [p.grad.clone() for p in trainee.parameters() if p.requires_grad])
            )
        (whole, whole_grads), (kept, kept_grads) = grads
        assert torch.allclose(whole, kept, atol=1e-6)
        assert all(
            torch.allclose(a, b, atol=1e-6) for a, b in zip(whole_grads, kept_grads, strict=True)
        )


def test_collate_pads_right_without_scoring_padding(small_world):
    _, train_examples, _, tokenizer = small_world
    pairs = [(e.prompt, e.completion) for e in train_examples[:3]]
    features = encode(tokenizer, pairs, eos=True)
    batch = collate(features, tokenizer.pad_token_id)
    for row, (ids, _) in enumerate(features):
        assert batch["input_ids"][row, : len(ids)].tolist() == ids
        assert batch["attention_mask"][row].sum() == len(ids)
        assert (batch["labels"][row, len(ids) :] == IGNORE).all()


def test_same_seed_same_weights_and_checkpoint_round_trip(small_world, tmp_path):
    _, train_examples, _, tokenizer = small_world

    def run(seed):
        torch.manual_seed(seed)
        model = build_tiny_model(TinyModelConfig(), tokenizer)
        result = train(model, tokenizer, train_examples, TrainConfig(steps=5), seed, progress=False)
        return model, result

    (a, result_a), (b, result_b), (_, result_c) = run(0), run(0), run(1)
    assert result_a.losses == result_b.losses != result_c.losses
    assert len(result_a.losses) == 5 and result_a.tokens == result_b.tokens > 0
    assert result_a.flops == 6 * sum(p.numel() for p in a.parameters()) * result_a.tokens
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    save_checkpoint(a, tokenizer, tmp_path / "model")
    assert (tmp_path / "model" / "model.safetensors").exists()
    assert (tmp_path / "model" / "config.json").exists()
    loaded, loaded_tokenizer = load_checkpoint(tmp_path / "model")
    assert loaded_tokenizer.get_vocab() == tokenizer.get_vocab()
    for (name, x), y in zip(a.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


def test_lora_trains_only_the_adapters_then_merges_them(small_world, monkeypatch):
    """Before the merge the base weights are untouched; the merged plain model answers as the
    model with adapters did."""
    _, train_examples, _, tokenizer = small_world
    torch.manual_seed(0)
    model = build_tiny_model(TinyModelConfig(), tokenizer)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    pairs = [(e.prompt, e.completion) for e in train_examples[:8]]
    batch = collate(encode(tokenizer, pairs, eos=True), tokenizer.pad_token_id)
    seen = {}
    merge = LoraModel.merge_and_unload

    def check_then_merge(self, *args, **kwargs):
        seen["trainable"] = [n for n, p in self.named_parameters() if p.requires_grad]
        seen["base"] = {
            n.replace("base_layer.", ""): p.detach().clone()
            for n, p in self.model.named_parameters()
            if "lora_" not in n
        }
        with torch.no_grad():
            seen["logits"] = self.model(**batch).logits
        return merge(self, *args, **kwargs)

    monkeypatch.setattr(LoraModel, "merge_and_unload", check_then_merge)
    config = TrainConfig(steps=30, lr=1e-2, finetune="lora", lora_rank=4)
    result = train(model, tokenizer, train_examples, config, seed=0, progress=False)

    assert seen["trainable"] and all("lora_" in n for n in seen["trainable"])
    assert seen["base"].keys() == initial.keys()
    assert all(torch.equal(seen["base"][k], initial[k]) for k in initial)
    assert result.losses[-1] < result.losses[0] - 0.5
    assert list(model.state_dict()) == list(initial)  # a plain model again
    assert all(p.requires_grad for p in model.parameters())
    up = "model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(model.state_dict()[up], initial[up])  # the adapters' update, merged
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, seen["logits"], atol=1e-5)


def test_bad_training_options_name_their_option_at_once():
    """TrainConfig checks itself: a bad option fails where the config is built, naming
    the option, long before any model is trained (revcurse.config.from_dict)."""
    cases = {
        "--train.finetune: must be one of auto, full, lora, got 'qlora'": {"finetune": "qlora"},
        "--train.lora-rank: must be at least 1, got 0": {"lora_rank": 0},
        "--train.decay: must be one of none, linear, cosine, got 'step'": {"decay": "step"},
        "--train.steps: must be at least 1, got 0": {"steps": 0},
        "--train.lr: must be positive, got -0.001": {"lr": -0.001},
        "--train.batch-size: must be 0 (all) or more, got -1": {"batch_size": -1},
        "--train.checkpoint-every: must be 0 (none) or more, got -1": {"checkpoint_every": -1},
        "--train.steps: expected int, got 'abc'": {"steps": "abc"},
        "--train.steps: expected int, got 2.5": {"steps": 2.5},
    }
    for message, values in cases.items():
        with pytest.raises(ValueError) as error:
            from_dict(Holder, {"train": values})
        assert str(error.value) == message


@dataclass
class Holder:
    train: TrainConfig = field(default_factory=TrainConfig)


def test_learning_rate_warms_up_then_decays_to_zero_by_the_last_step():
    config = TrainConfig(steps=100, warmup_steps=10)
    constant = [lr_factor(step, config) for step in range(100)]
    assert constant[:10] == [(step + 1) / 10 for step in range(10)] and set(constant[9:]) == {1.0}
    for decay in ("linear", "cosine"):
        factors = [lr_factor(step, replace(config, decay=decay)) for step in range(100)]
        assert factors[:10] == constant[:10]  # the same warm-up
        assert all(a >= b for a, b in itertools.pairwise(factors[9:]))
        assert 0 < factors[-1] < 0.02  # the last step still learns, a little


def test_plateau_stops_at_a_perfect_score_or_a_stall_and_keeps_its_curve(small_world):
    """Training ends at the first measurement that reaches 1, or once `patience`
    measurements gain less than `tolerance` over the best before them; never between
    measurements, never past the cap."""
    _, train_examples, _, tokenizer = small_world

    def run(scores, floor=0, **converge):
        torch.manual_seed(0)
        model = build_tiny_model(TinyModelConfig(), tokenizer)
        given = iter(scores)
        plateau = Plateau(lambda _: next(given), ConvergeConfig(every=2, **converge), floor)
        result = train(
            model, tokenizer, train_examples, TrainConfig(steps=20), 0, False, plateau=plateau
        )
        return len(result.losses), result.curve

    assert run([0.2, 0.5, 1.0, 0.0]) == (6, [(2, 0.2), (4, 0.5), (6, 1.0)])
    steps, curve = run([0.2, 0.5, 0.505, 0.5, 0.9], patience=2, tolerance=0.01)
    assert steps == 8 and [v for _, v in curve] == [0.2, 0.5, 0.505, 0.5]
    assert run([0.0] * 20, patience=3)[0] == 8  # nothing rises: a stall too
    assert run([0.0] * 20, patience=3, floor=14)[0] == 14  # but not before the floor
    assert run([0.1 * i for i in range(10)], patience=2)[0] == 20  # still rising: the cap
