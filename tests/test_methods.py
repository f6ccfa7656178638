"""The base losses (TRADES, MART, IAT) and AdvProp: each loss's defining property on a fixed batch."""

import copy

import pytest
import torch
import torch.nn.functional as F

from pipeline.config import TrainConfig
from pipeline.methods import METHODS
from pipeline.methods.mart import mart_weights
from pipeline.methods.trades import kl_to_clean
from pipeline.norms import replay

ATTACK = {"eps": 0.1, "step_size": 0.025, "steps": 5}


def _cfg(method, **options):
    return TrainConfig(method=method, epochs=1, options=options, attack=ATTACK if METHODS[method].adversarial else None)


@pytest.fixture
def batch(digits):
    return digits.x_train[:64].float() / 255, digits.y_train[:64]


def test_trades_with_beta_zero_is_clean_cross_entropy(digits_model, batch):
    x, y = batch
    model = copy.deepcopy(digits_model).eval()
    out = METHODS["trades"].batch_loss(model, x, y, _cfg("trades", beta=0.0))
    assert torch.allclose(out.loss, F.cross_entropy(model(x), y), atol=1e-6)


def test_trades_attack_maximizes_kl_to_the_clean_prediction_not_ce(digits_model, batch, monkeypatch):
    import pipeline.methods.base as base

    x, y = batch
    model = copy.deepcopy(digits_model).eval()
    seen = {}
    real_pgd = base.pgd

    def spy(f, x, targets, **kw):
        seen.update(loss=kw["loss"], targets=targets)
        return real_pgd(f, x, targets, **kw)

    monkeypatch.setattr(base, "pgd", spy)
    from pipeline.methods.trades import trades_attack

    torch.manual_seed(0)
    x_adv = trades_attack(model, x, y, _cfg("trades"))
    assert seen["loss"] is kl_to_clean
    assert seen["targets"].shape == (64, 10) and torch.allclose(seen["targets"].sum(1), torch.ones(64))
    with torch.no_grad():
        p = F.softmax(model(x), 1)
        kl_adv = kl_to_clean(model(x_adv), p).mean()
        kl_noise = kl_to_clean(model((x + 0.001 * torch.randn_like(x)).clamp(0, 1)), p).mean()
    assert kl_adv > 10 * kl_noise
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1


def test_mart_weights_are_one_minus_the_true_class_probability():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
    y = torch.tensor([0, 2])
    p = F.softmax(logits, 1)
    assert torch.allclose(mart_weights(logits, y), torch.stack([1 - p[0, 0], 1 - p[1, 2]]), atol=1e-6)


@pytest.mark.parametrize("method, options", [("trades", {}), ("mart", {}), ("iat", {}), ("advprop", {})])
def test_each_loss_decreases_on_a_fixed_batch(digits_model, batch, method, options):
    x, y = batch
    torch.manual_seed(0)
    cfg = _cfg(method, **options)
    model = replay(copy.deepcopy(digits_model), METHODS[method].conversions(cfg)).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(8):
        torch.manual_seed(1)  # the same attack start and mixup draw every step: a fixed objective
        out = METHODS[method].batch_loss(model, x, y, cfg)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_label_smoothing_smooths_the_cross_entropy_of_the_methods_that_take_it_and_is_refused_elsewhere():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4))
    x, y = torch.rand(8, 1, 4, 4), torch.randint(0, 4, (8,))
    cfg = TrainConfig(method="standard", epochs=1, label_smoothing=0.1)
    loss = METHODS["standard"].batch_loss(model, x, y, cfg).loss
    assert torch.allclose(loss, F.cross_entropy(model(x), y, label_smoothing=0.1))
    assert not torch.allclose(loss, F.cross_entropy(model(x), y))
    attack = {"eps": 0.1, "step_size": 0.05, "steps": 1, "random_start": False}
    torch.manual_seed(1)
    smooth = METHODS["pgd_at"].batch_loss(model, x, y, TrainConfig(method="pgd_at", epochs=1, attack=attack,
                                                                       label_smoothing=0.1))
    assert torch.allclose(smooth.loss, F.cross_entropy(smooth.logits, y, label_smoothing=0.1))
    with pytest.raises(ValueError, match="label_smoothing: method 'trades'"):
        TrainConfig(method="trades", epochs=1, attack=attack, label_smoothing=0.1)


def test_one_bn_logit_pairing_adds_the_pairing_of_each_clean_image_and_its_adversarial_example():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4))
    x, y = torch.rand(8, 1, 4, 4), torch.randint(0, 4, (8,))
    attack = {"eps": 0.1, "step_size": 0.05, "steps": 1, "random_start": False}
    plain = TrainConfig(method="clean_ratio", epochs=1, attack=attack, options={"clean_fraction": 0.5})
    paired = TrainConfig(method="clean_ratio", epochs=1, attack=attack, options={"clean_fraction": 0.5, "alp": 0.5})
    base = METHODS["clean_ratio"].batch_loss(model, x, y, plain)
    with_alp = METHODS["clean_ratio"].batch_loss(model, x, y, paired)
    z_adv, z_clean = with_alp.logits[:4], model(x[:4])  # the clean part is the batch's first half
    assert torch.allclose(with_alp.loss, base.loss + 0.5 * (z_clean - z_adv).pow(2).sum(1).mean(), atol=1e-6)
    with pytest.raises(ValueError, match="alp: logit pairing needs clean images"):
        TrainConfig(method="clean_ratio", epochs=1, attack=attack, options={"clean_fraction": 0.0, "alp": 0.5})
