"""BN-only fine-tuning trains exactly what it says, and interpolation reproduces its end models."""

import copy

import pytest
import torch

from pipeline.config import FinetuneConfig
from pipeline.data import Splits
from pipeline.methods.bn_finetune import bn_parameters, freeze_all_but, share_trained
from pipeline.norms import batch_norms
from pipeline.train import train

ATTACK = {"eps": 0.1, "step_size": 0.05, "steps": 2}


def _cfg(trainable, method="pgd_at"):
    return FinetuneConfig(start="standard", trainable=trainable, method=method, epochs=1, batch_size=64,
                          lr=0.1, weight_decay=0.0, attack=ATTACK if method == "pgd_at" else None)


def _small(digits):
    return Splits(digits.x_train[:192], digits.y_train[:192], digits.x_test[:64], digits.y_test[:64],
                  digits.mean, digits.std)


def _finetune(digits, digits_model, trainable, method="pgd_at"):
    model = copy.deepcopy(digits_model)
    cfg = _cfg(trainable, method)
    train(model, _small(digits), cfg, seed=0, params=lambda m: freeze_all_but(m, trainable), progress=False)
    return model


def _bn_names(model):
    names = set()
    for prefix, _ in batch_norms(model):
        names |= {f"{prefix}.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    return names


def _changed(before, after):
    a, b = before.state_dict(), after.state_dict()
    return {k for k in a if not torch.equal(a[k], b[k])}


def test_bn_params_changes_nothing_outside_bn(digits, digits_model):
    model = _finetune(digits, digits_model, "bn")
    changed = _changed(digits_model, model)
    assert changed and changed <= _bn_names(model), changed - _bn_names(model)
    assert any(k.endswith(".weight") for k in changed) and any(k.endswith("running_mean") for k in changed)


def test_bn_stats_changes_no_parameter(digits, digits_model):
    model = _finetune(digits, digits_model, "bn_stats")
    params_before = dict(digits_model.named_parameters())
    for name, p in model.named_parameters():
        assert torch.equal(p, params_before[name]), name
    assert any(k.endswith("running_var") for k in _changed(digits_model, model))


def test_bn_logits_conv1_changes_only_bn_fc_and_conv1(digits, digits_model):
    model = _finetune(digits, digits_model, "bn_logits_conv1")
    allowed = _bn_names(model) | {"fc.weight", "fc.bias", "conv1.weight"}
    changed = _changed(digits_model, model)
    assert "fc.weight" in changed and "conv1.weight" in changed and changed <= allowed


@pytest.mark.parametrize("trainable", ["bn", "bn_stats", "bn_logits_conv1"])
def test_share_of_trained_parameters_matches_a_count(digits_model, trainable):
    model = copy.deepcopy(digits_model)
    total = sum(p.numel() for p in model.parameters())
    n_bn = sum(m.weight.numel() + m.bias.numel() for _, m in batch_norms(model))
    expected = {"bn": n_bn, "bn_stats": 0, "bn_logits_conv1":
                n_bn + model.fc.weight.numel() + model.fc.bias.numel() + model.conv1.weight.numel()}[trainable]
    share = share_trained(model, trainable)
    assert share["trained_params"] == expected and share["total_params"] == total
    counted = n_bn if trainable == "bn_stats" else expected
    assert share["percent_params"] == pytest.approx(100 * counted / total)
    trained = freeze_all_but(model, trainable)
    assert sum(p.numel() for p in trained) == expected
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected
    assert len(bn_parameters(model)) == 2 * len(batch_norms(model))
