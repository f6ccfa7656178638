import pytest
import torch

from pipeline.attacks.pgd import fgsm, pgd
from pipeline.attacks.pgd import margin_loss
from pipeline.deploy import Deployed
from pipeline.norms import batch_norms
from pipeline.train import to_float


def _batch(digits, n=100):
    return to_float(digits.x_test[:n]), digits.y_test[:n]


def _acc(f, x, y):
    with torch.no_grad():
        return (f(x).argmax(1) == y).float().mean().item()


@pytest.mark.parametrize("kwargs", [
    dict(eps=0.1, step_size=0.025, steps=5),
    dict(eps=0.1, step_size=0.05, steps=3, restarts=2),
    dict(eps=0.1, step_size=0.02, steps=5, early_stop=True),
    dict(eps=0.3, step_size=0.1, steps=4, loss="margin", random_start=False),
])
def test_pgd_stays_in_the_eps_ball_and_the_image_range(digits, digits_model, kwargs):
    x, y = _batch(digits)
    x_adv = pgd(Deployed(digits_model), x, y, **kwargs)
    assert x_adv.shape == x.shape
    assert (x_adv - x).abs().max() <= kwargs["eps"] + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_per_sample_eps(digits, digits_model):
    x, y = _batch(digits, 20)
    eps = torch.linspace(0, 0.2, 20)
    x_adv = pgd(Deployed(digits_model), x, y, eps=eps, step_size=eps / 4, steps=5)
    assert ((x_adv - x).abs().flatten(1).max(1).values <= eps + 1e-6).all()
    assert torch.equal(x_adv[0], x[0])  # eps 0 leaves the sample untouched


def test_pgd_lowers_accuracy_more_than_fgsm_and_more_steps_do_not_help_the_model(digits, digits_model):
    x, y = _batch(digits, 200)
    f = Deployed(digits_model)
    torch.manual_seed(0)
    clean = _acc(f, x, y)
    acc_fgsm = _acc(f, fgsm(f, x, y, eps=0.1), y)
    acc_pgd = _acc(f, pgd(f, x, y, eps=0.1, step_size=0.01, steps=20), y)
    assert clean > 0.8
    assert acc_pgd <= acc_fgsm < clean


def test_early_stop_is_at_least_as_strong_as_plain_pgd(digits, digits_model):
    x, y = _batch(digits, 200)
    f = Deployed(digits_model)
    torch.manual_seed(1)
    plain = _acc(f, pgd(f, x, y, eps=0.05, step_size=0.01, steps=10), y)
    torch.manual_seed(1)
    early = _acc(f, pgd(f, x, y, eps=0.05, step_size=0.01, steps=10, early_stop=True), y)
    assert early <= plain + 1e-9


def test_margin_loss_is_positive_exactly_when_misclassified():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    y = torch.tensor([0, 0])
    loss = margin_loss(logits, y)
    assert loss[0] < 0 < loss[1]


def test_attacks_restore_training_flags_and_running_stats(digits, digits_model):
    x, y = _batch(digits, 32)
    stats = [(m.running_mean.clone(), m.running_var.clone()) for _, m in batch_norms(digits_model)]
    for training in (False, True):
        digits_model.train(training)
        for mode in ("eval", "batch"):
            pgd(Deployed(digits_model, mode), x, y, eps=0.1, step_size=0.05, steps=2)
            assert all(m.training == training for m in digits_model.modules())
    digits_model.eval()
    for (mean, var), (_, m) in zip(stats, batch_norms(digits_model)):
        assert torch.equal(mean, m.running_mean) and torch.equal(var, m.running_var)


def test_early_stop_refuses_batch_dependent_deployments(digits, digits_model):
    x, y = _batch(digits, 8)
    with pytest.raises(ValueError, match="batch-dependent"):
        pgd(Deployed(digits_model, "batch"), x, y, eps=0.1, step_size=0.05, steps=2, early_stop=True)


def test_pgd_matches_torchattacks(digits, digits_model):
    torchattacks = pytest.importorskip("torchattacks")
    x, y = _batch(digits, 360)
    f = Deployed(digits_model)
    eps, alpha, steps = 0.05, 0.01, 10
    torch.manual_seed(0)
    ours = _acc(f, pgd(f, x, y, eps=eps, step_size=alpha, steps=steps), y)
    torch.manual_seed(0)
    theirs = _acc(f, torchattacks.PGD(digits_model, eps=eps, alpha=alpha, steps=steps, random_start=True)(x, y), y)
    assert abs(ours - theirs) <= 0.01, (ours, theirs)


def test_autoattack_adapter_equals_a_direct_call(digits, digits_model):
    from pyautoattack import AutoAttack

    from pipeline.attacks.autoattack import autoattack

    x, y = _batch(digits, 16)
    f = Deployed(digits_model)
    ours = autoattack(f, x, y, eps=0.05, seed=0, batch_size=16).x_adv
    direct, _ = AutoAttack(f, eps=0.05, norm="Linf", version="standard", seed=0).run_standard_evaluation(
        x, y, batch_size=16)
    assert torch.equal(ours, direct)


@pytest.mark.parametrize("entry", [{"name": "cw", "steps": 30, "c_init": 1.0, "binary_steps": 1},
                                   {"name": "deepfool", "steps": 20}])
def test_an_unbounded_l2_attack_scores_its_point_as_found_and_the_worst_case_refuses_it(digits, digits_model, entry):
    from pipeline.attacks import Target, attack_of
    from pipeline.config import EvaluateConfig
    from pipeline.config.sections import ShapingEvalConfig

    checks = {"enabled": False, "surrogate": "g/m"}

    x, y = to_float(digits.x_test[:32]), digits.y_test[:32]
    deployed = Deployed(digits_model.eval())
    with torch.no_grad():
        ok = deployed(x).argmax(1) == y
    x, y = x[ok], y[ok]
    eps = 0.01  # far below the L2 attacks' minimal perturbations
    fooled = {}
    for bound in ("linf", "none"):  # the evaluate section takes the bounded one, shaping_eval either
        spec = ShapingEvalConfig(attacks=[{"name": "pgd"}, {**entry, "bound": bound}]).attacks[1]
        minimal: dict[str, list] = {}
        x_adv = attack_of(spec).build(spec, Target(deployed, minimal=minimal))(x, y, eps)
        assert x_adv.min() >= 0 and x_adv.max() <= 1
        with torch.no_grad():
            fooled[bound] = deployed(x_adv).argmax(1) != y
        linf = (x_adv - x).abs().flatten(1).max(1).values
        if bound == "linf":
            assert (linf <= eps + 1e-6).all()
        else:  # the unbounded point is scored: exactly the samples the minimal attack fooled
            assert fooled[bound].tolist() == minimal["success"] and (linf[fooled[bound]] > eps).any()
            assert attack_of(spec).column(spec).endswith("(unbounded)")
    assert fooled["none"].sum() > fooled["linf"].sum() and fooled["none"].float().mean() > 0.5
    with pytest.raises(ValueError, match="unbounded"):
        EvaluateConfig(eps=[0.0, eps], threat_eps=eps, attacks=[{**entry, "bound": "none"}], checks=checks)
    EvaluateConfig(eps=[0.0, eps], threat_eps=eps, attacks=[{**entry, "bound": "linf"}], checks=checks)
