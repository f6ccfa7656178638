"""The evaluation suite beyond FGSM/PGD/AutoAttack: PGD's momentum, transform and EOT options,
Carlini-Wagner L2, DeepFool, Square and (M-)DI2-FGSM transfer, on the digits fixtures."""

from functools import partial

import pytest

from tests.conftest import train_digits_model
import torch

from pipeline.attacks.cw import cw_l2
from pipeline.attacks.deepfool import deepfool
from pipeline.attacks.pgd import pgd
from pipeline.attacks.square import square
from pipeline.attacks.transfer import di2_fgsm, input_diversity, m_di2_fgsm, transfer_attack
from pipeline.deploy import Deployed
from pipeline.norms import batch_norms
from pipeline.train import to_float



@pytest.fixture(scope="module")
def surrogate_model(digits):
    """A second model, another seed and fewer epochs: the source of transfer attacks."""
    return train_digits_model(digits, seed=1, epochs=3)


def _batch(digits, n=100):
    return to_float(digits.x_test[:n]), digits.y_test[:n]


def _acc(f, x, y):
    with torch.no_grad():
        return (f(x).argmax(1) == y).float().mean().item()


def _fooled(f, x, y):
    with torch.no_grad():
        return f(x).argmax(1) != y


def _l2(x_adv, x):
    return (x_adv - x).flatten(1).norm(dim=1)


# name -> (attack(f, x, y), its L-inf bound or None); small budgets, the checks are about ranges
ATTACKS = {
    "pgd_momentum": (lambda f, x, y: pgd(f, x, y, eps=0.1, step_size=0.03, steps=5, momentum=1.0), 0.1),
    "pgd_momentum_early_stop": (lambda f, x, y: pgd(f, x, y, eps=0.1, step_size=0.03, steps=5, momentum=1.0,
                                                    early_stop=True), 0.1),
    "pgd_transform_eot": (lambda f, x, y: pgd(f, x, y, eps=0.1, step_size=0.03, steps=3, eot=2,
                                              transform=input_diversity), 0.1),
    "cw_l2": (lambda f, x, y: cw_l2(f, x, y, steps=10, binary_steps=2, lr=0.05), None),
    "cw_l2_eps": (lambda f, x, y: cw_l2(f, x, y, steps=10, binary_steps=2, lr=0.05, eps=0.05), 0.05),
    "deepfool": (lambda f, x, y: deepfool(f, x, y, max_iter=10), None),
    "deepfool_eps": (lambda f, x, y: deepfool(f, x, y, max_iter=10, eps=0.05), 0.05),
    "square": (lambda f, x, y: square(f, x, y, eps=0.1, n_queries=50), 0.1),
    "di2_fgsm": (lambda f, x, y: di2_fgsm(f, x, y, eps=0.1, steps=5), 0.1),
    "m_di2_fgsm": (lambda f, x, y: m_di2_fgsm(f, x, y, eps=0.1, steps=5), 0.1),
    "transfer": (lambda f, x, y: transfer_attack(f, f, x, y, eps=0.1, steps=3).x_adv, 0.1),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attacks_stay_in_the_image_range_and_the_eps_ball(digits, digits_model, name):
    attack, eps = ATTACKS[name]
    x, y = _batch(digits, 50)
    torch.manual_seed(0)
    x_adv = attack(Deployed(digits_model), x, y)
    assert x_adv.shape == x.shape
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    if eps is not None:
        assert (x_adv - x).abs().max() <= eps + 1e-6


def test_attacks_restore_training_flags_running_stats_and_grads(digits, digits_model):
    x, y = _batch(digits, 16)
    stats = [(m.running_mean.clone(), m.running_var.clone()) for _, m in batch_norms(digits_model)]
    grads = [None if p.grad is None else p.grad.clone() for p in digits_model.parameters()]
    try:
        for training in (False, True):
            digits_model.train(training)
            for name, (attack, _) in ATTACKS.items():
                attack(Deployed(digits_model), x, y)
                assert all(m.training == training for m in digits_model.modules()), name
    finally:
        digits_model.eval()
    for (mean, var), (_, m) in zip(stats, batch_norms(digits_model)):
        assert torch.equal(mean, m.running_mean) and torch.equal(var, m.running_var)
    for before, p in zip(grads, digits_model.parameters()):
        assert (before is None and p.grad is None) or torch.equal(before, p.grad)


def test_eot_of_one_is_plain_pgd_and_eot_averages_over_that_many_calls(digits, digits_model):
    x, y = _batch(digits)
    model_f = Deployed(digits_model)
    calls = []

    def f(z):
        calls.append(len(z))
        return model_f(z)

    torch.manual_seed(0)
    plain = pgd(model_f, x, y, eps=0.1, step_size=0.025, steps=4)
    torch.manual_seed(0)
    assert torch.equal(pgd(model_f, x, y, eps=0.1, step_size=0.025, steps=4, eot=1), plain)
    torch.manual_seed(0)
    averaged = pgd(f, x, y, eps=0.1, step_size=0.025, steps=4, eot=3)
    assert len(calls) == 4 * 3
    # a deterministic model gives the same gradient on every call: averaging keeps its sign
    assert (averaged - plain).abs().max() <= 1e-6


def test_momentum_changes_the_steps_and_still_fools(digits, digits_model):
    x, y = _batch(digits)
    f = Deployed(digits_model)
    kwargs = dict(eps=0.1, step_size=0.02, steps=10, random_start=False)
    plain = pgd(f, x, y, **kwargs)
    mi = pgd(f, x, y, momentum=1.0, **kwargs)
    assert not torch.equal(plain, mi)
    assert _acc(f, mi, y) < _acc(f, x, y) - 0.5


def test_transform_is_refused_with_early_stop_and_eot_must_be_positive(digits, digits_model):
    x, y = _batch(digits, 8)
    f = Deployed(digits_model)
    with pytest.raises(ValueError, match="transform"):
        pgd(f, x, y, eps=0.1, step_size=0.05, steps=2, early_stop=True, transform=input_diversity)
    with pytest.raises(ValueError, match="eot"):
        pgd(f, x, y, eps=0.1, step_size=0.05, steps=2, eot=0)


def test_input_diversity_keeps_the_size_and_is_the_identity_with_p_zero():
    x = torch.rand(4, 1, 16, 16)
    assert torch.equal(input_diversity(x, p=0.0), x)
    torch.manual_seed(0)
    outs = [input_diversity(x, p=1.0) for _ in range(8)]
    assert all(o.shape == x.shape for o in outs)
    assert not all(torch.equal(o, outs[0]) for o in outs)  # the resize and the offset are random


@pytest.mark.parametrize("attack", ["deepfool", "square"])
def test_subset_evaluating_attacks_refuse_batch_dependent_deployments(digits, digits_model, attack):
    x, y = _batch(digits, 8)
    f = Deployed(digits_model, "batch")
    with pytest.raises(ValueError, match="batch-dependent"):
        deepfool(f, x, y) if attack == "deepfool" else square(f, x, y, eps=0.1)


def test_min_norm_attacks_fool_a_standard_model_with_much_less_l2_than_linf_pgd(digits, digits_model):
    x, y = _batch(digits)
    f = Deployed(digits_model)
    clean = _acc(f, x, y)
    torch.manual_seed(0)
    x_pgd = pgd(f, x, y, eps=0.1, step_size=0.025, steps=10)
    pgd_l2 = _l2(x_pgd, x)[_fooled(f, x_pgd, y)].median()
    assert clean > 0.8
    for x_adv in (cw_l2(f, x, y, steps=30, binary_steps=3, c_init=0.1, lr=0.05), deepfool(f, x, y)):
        fooled = _fooled(f, x_adv, y)
        assert fooled.float().mean() >= 0.9
        # minimal-norm attacks reach the boundary with far less L2 than an eps-0.1 L-inf attack
        assert _l2(x_adv, x)[fooled].median() < 0.5 * pgd_l2


def test_unbounded_deepfool_misclassifies_most_samples_and_the_eps_version_less(digits, digits_model):
    x, y = _batch(digits)
    f = Deployed(digits_model)
    free = deepfool(f, x, y)
    assert 1 - _acc(f, free, y) >= 0.9
    assert _acc(f, deepfool(f, x, y, eps=0.02), y) > _acc(f, free, y)


def test_square_lowers_the_accuracy_of_a_standard_model_and_keeps_the_callers_rng(digits, digits_model):
    x, y = _batch(digits)
    f = Deployed(digits_model)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    x_adv = square(f, x, y, eps=0.1, n_queries=200, seed=0)
    assert torch.equal(torch.rand(3), expected)
    assert _acc(f, x_adv, y) < _acc(f, x, y) - 0.5
    assert torch.equal(square(f, x, y, eps=0.1, n_queries=200, seed=0), x_adv)  # the seed fixes it


@pytest.mark.parametrize("attack", [di2_fgsm, m_di2_fgsm])
def test_di2_fgsm_crafted_on_a_surrogate_transfers(digits, digits_model, surrogate_model, attack):
    x, y = _batch(digits)
    target, surrogate = Deployed(digits_model), Deployed(surrogate_model)
    eps = 0.15
    torch.manual_seed(0)
    x_adv = attack(surrogate, x, y, eps=eps, steps=10, step_size=eps / 4)
    noise = (x + eps * torch.randn_like(x).sign()).clamp(0, 1)
    clean = _acc(target, x, y)
    assert _acc(surrogate, x_adv, y) < 0.3
    # the target was never differentiated, yet it loses more than to random noise of the same size
    assert _acc(target, x_adv, y) < min(clean - 0.1, _acc(target, noise, y) - 0.05)


def test_transfer_attack_reports_what_each_model_predicts(digits, digits_model, surrogate_model):
    x, y = _batch(digits)
    target, surrogate = Deployed(digits_model), Deployed(surrogate_model)
    torch.manual_seed(0)
    result = transfer_attack(surrogate, target, x, y, eps=0.15, steps=10, step_size=0.0375)
    torch.manual_seed(0)
    assert torch.equal(result.x_adv, m_di2_fgsm(surrogate, x, y, eps=0.15, steps=10, step_size=0.0375))
    with torch.no_grad():
        assert torch.equal(result.fooled_target, target(result.x_adv).argmax(1) != y)
        assert torch.equal(result.fooled_surrogate, surrogate(result.x_adv).argmax(1) != y)
    assert result.fooled_target.float().mean() > 1 - _acc(target, x, y) + 0.1


def test_partial_input_diversity_is_a_valid_pgd_transform(digits, digits_model):
    x, y = _batch(digits, 20)
    f = Deployed(digits_model)
    torch.manual_seed(0)
    a = pgd(f, x, y, eps=0.1, step_size=0.05, steps=3, transform=partial(input_diversity, p=0.0))
    torch.manual_seed(0)
    b = pgd(f, x, y, eps=0.1, step_size=0.05, steps=3)
    assert torch.equal(a, b)  # p=0 never transforms: the same path as no transform
