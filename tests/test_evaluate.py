"""The evaluation suite: cascade, masking checks, and deployments left as they were found."""

import contextlib
import copy

import pytest
import torch
from torch import nn

from pipeline.attacks.pgd import PGDSpec
from pipeline.config import ChecksConfig, EvaluateConfig
from pipeline.deploy import Deployed
from pipeline.evaluate import evaluate
from pipeline.masking import masking_checks
from pipeline.models.common import ReLUSoftplusGrad, gradient_views, true_relu_gradient
from pipeline.norms import batch_norms
from pipeline.train import to_float

CHECKS = dict(enabled=True, n_samples=64, tolerance=0.05, large_eps=0.5, large_eps_max_acc=0.1,
              more_steps_factor=2, square_queries=300, surrogate="standard")
PGD = PGDSpec(name="pgd", steps=10, rel_step_size=0.25)


def _cfg(**kw) -> EvaluateConfig:
    base = dict(eps=[0.0, 0.05, 0.1], threat_eps=0.1, batch_size=64,
                attacks=[{"name": "fgsm"}, {"name": "pgd", "steps": 10, "rel_step_size": 0.25},
                         {"name": "deepfool", "steps": 20}, {"name": "cw", "steps": 30, "lr": 0.05}],
                checks=CHECKS)
    base.update(kw)
    return EvaluateConfig(**base)


def _data(digits, n=96):
    return to_float(digits.x_test[:n]), digits.y_test[:n]


class Quantize(nn.Module):
    """Planted gradient masking: rounding the input has zero gradient almost everywhere."""

    def forward(self, x):
        return torch.round(x * 4) / 4


def test_cascade_gives_the_same_per_sample_worst_case_for_less_work(digits, digits_model):
    x, y = _data(digits)
    d = Deployed(digits_model)
    full = evaluate(d, x, y, _cfg(), cascade=False, progress=False)
    cascade = evaluate(d, x, y, _cfg(), cascade=True, progress=False)
    for eps in full.worst:
        assert torch.equal(full.worst[eps], cascade.worst[eps]), eps
    assert sum(cascade.ran_on.values()) < sum(full.ran_on.values())
    assert cascade.ran_on[("cw", 0.1)] <= int(cascade.robust[("pgd", 0.1)].sum())
    # Grid attacks are never cut by the cascade: their numbers are their own.
    assert torch.equal(full.robust[("pgd", 0.05)], cascade.robust[("pgd", 0.05)])


def test_worst_case_is_at_most_every_attack(digits, digits_model):
    x, y = _data(digits)
    res = evaluate(Deployed(digits_model), x, y, _cfg(cascade=False), progress=False)
    head = res.headline()
    assert all(head["worst_case"] <= head[a] + 1e-9 for a in ("fgsm", "pgd", "deepfool", "cw"))
    assert head["pgd"] <= head["fgsm"] <= head["clean"]


def test_a_normal_model_passes_the_masking_checks(digits, digits_model):
    x, y = _data(digits)
    checks = masking_checks(Deployed(digits_model), x, y, eps=0.1, cfg=ChecksConfig(**CHECKS), pgd_spec=PGD)
    assert checks["flags"] == [] and not checks["suspect"], checks


def test_a_quantizing_model_is_flagged(digits, digits_model):
    x, y = _data(digits)
    masked = Deployed(nn.Sequential(Quantize(), digits_model))
    checks = masking_checks(masked, x, y, eps=0.1, cfg=ChecksConfig(**CHECKS), pgd_spec=PGD)
    assert checks["suspect"]
    text = " ".join(checks["flags"])
    assert "zero" in text and "Square" in text, checks["flags"]


def test_a_saturated_softmax_is_flagged(digits, digits_model):
    """Logits scaled by 1e4 make cross-entropy gradients vanish in float32."""
    x, y = _data(digits)

    class Scaled(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, z):
            return self.m(z) * 1e4

    checks = masking_checks(Deployed(Scaled(digits_model)), x, y, eps=0.1, cfg=ChecksConfig(**CHECKS), pgd_spec=PGD)
    assert checks["suspect"], checks


def test_a_transfer_attack_runs_when_a_surrogate_is_given(digits, digits_model):
    x, y = _data(digits, 64)
    surrogate = copy.deepcopy(digits_model)
    checks = masking_checks(Deployed(digits_model), x, y, eps=0.1, cfg=ChecksConfig(**CHECKS), pgd_spec=PGD,
                            surrogate=Deployed(surrogate))
    assert 0.0 <= checks["transfer"] <= checks["fgsm"] + 0.2


@pytest.mark.parametrize("mode,extra", [("batch", {}), ("shaping", {"n_ref": 3, "fixed_references": True}),
                                        ("shaping", {"n_ref": 3, "fixed_references": False})])
def test_evaluating_batch_dependent_deployments_leaves_the_model_alone(digits, digits_model, mode, extra):
    x, y = _data(digits, 48)
    model = copy.deepcopy(digits_model).eval()
    before = [(m.running_mean.clone(), m.running_var.clone()) for _, m in batch_norms(model)]
    refs = to_float(digits.x_train[:200])
    d = Deployed(model, mode, references=refs if mode == "shaping" else None, **extra)
    cfg = _cfg(attacks=[{"name": "fgsm"}, {"name": "pgd", "steps": 3}], eps=[0.0, 0.1],
               deployment={"mode": mode, "eot": 2, **extra})
    res = evaluate(d, x, y, cfg, progress=False)
    masking_checks(d, x, y, eps=0.1, cfg=ChecksConfig(**{**CHECKS, "n_samples": 16, "square_queries": 20}),
                   pgd_spec=PGDSpec(name="pgd", steps=3), eot=2)
    assert 0 <= res.headline()["worst_case"] <= res.headline()["clean"]
    assert not any(m.training for m in model.modules())
    for (mean, var), (_, m) in zip(before, batch_norms(model)):
        assert torch.equal(mean, m.running_mean) and torch.equal(var, m.running_var)


def test_autoattack_in_the_suite_equals_a_direct_call_of_the_official_code(digits, digits_model):
    from pyautoattack import AutoAttack

    x, y = _data(digits, 24)
    d = Deployed(digits_model)
    cfg = _cfg(attacks=[{"name": "autoattack"}], eps=[0.0, 0.03], threat_eps=0.03)
    ours = evaluate(d, x, y, cfg, progress=False).robust[("autoattack", 0.03)]
    x_adv, _ = AutoAttack(d, eps=0.03, norm="Linf", version="standard", seed=0).run_standard_evaluation(
        x, y, batch_size=len(x))
    with torch.no_grad():
        direct = d(x_adv).argmax(1) == y
    assert torch.equal(ours, direct)


class _PerCall(Deployed):
    """A deployment that enters its mode on every call, as evaluation did before it held them."""

    @contextlib.contextmanager
    def held(self):
        yield self


def test_holding_the_deployment_gives_the_per_sample_outcome_of_per_call_entry(digits, digits_model):
    """Every attack of the suite, with the model's BN routed and crafted on the other route (a
    second deployment of the same model, interleaved with the held one), per sample identical."""
    from tests.test_deploy import TwoBranchBN

    x, y = _data(digits, 48)
    model = copy.deepcopy(digits_model)
    model.bn1 = TwoBranchBN(model.bn1)
    cfg = _cfg(attacks=[{"name": "fgsm"}, {"name": "pgd", "steps": 10, "rel_step_size": 0.25},
                        {"name": "deepfool", "steps": 20}, {"name": "cw", "steps": 30, "lr": 0.05},
                        {"name": "autoattack", "version": "custom", "attacks": ["fab-t"], "label": "fab",
                         "target_classes": 2}], eps=[0.0, 0.01, 0.02], threat_eps=0.02)
    results = []
    for kind in (_PerCall, Deployed):
        model.zero_grad(set_to_none=True)  # per-call FAB fills every weight's .grad; held, none
        d, craft = kind(model, route={"branch": 0}), kind(model, route={"branch": 1})
        results.append([evaluate(d, x, y, cfg, progress=False, seed=1),
                        evaluate(d, x, y, cfg, progress=False, seed=1, craft_on=craft)])
    for old, new in zip(*results):
        assert old.robust.keys() == new.robust.keys()
        for key in old.robust:
            assert torch.equal(old.robust[key], new.robust[key]), key
        assert old.minimal == new.minimal
        assert new.ran_on[("fab", 0.02)] > 0  # each threat attack had samples left to attack
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert model.bn1.route == {}


class TwoPaths(nn.Module):
    """Logits (v, 0.4) of the first pixel v: class 0 while v > 0.4. A second path is never active
    (its ReLU input is below 0), so ReLU's gradient of the logit is +1; Softplus' gradient (beta 1)
    also flows through it and is negative. An attack through the Softplus gradient pushes v up,
    away from the boundary; through ReLU's gradient, down across it."""

    def __init__(self):
        super().__init__()
        self.act = ReLUSoftplusGrad(beta=1.0)

    def forward(self, x):
        v = x.flatten(1)[:, :1]
        logit = self.act(v) + 10 * self.act(-v - 0.5)
        return torch.cat([logit, torch.full_like(logit, 0.4)], 1)


def test_a_surrogate_gradient_activation_is_attacked_through_its_true_gradient_as_well():
    model = TwoPaths().eval()
    x, y = torch.full((8, 1, 2, 2), 0.5), torch.zeros(8, dtype=torch.long)
    cfg = _cfg(eps=[0.0, 0.2], threat_eps=0.2, attacks=[{"name": "fgsm"}, {"name": "pgd", "steps": 5}])
    with true_relu_gradient(model):  # the context restores the Softplus gradient on leaving
        through_relu = evaluate(Deployed(model), x, y, cfg, progress=False)
    assert not model.act.true_gradient
    assert through_relu.accuracy("pgd", 0.2) == 0.0  # ReLU's gradient alone breaks every sample
    xx = x.clone().requires_grad_(True)  # the Softplus gradient alone: ascent on the loss raises v
    nn.functional.cross_entropy(model(xx), y).backward()
    assert (xx.grad.flatten(1)[:, 0] > 0).all()
    result = evaluate(Deployed(model), x, y, cfg, progress=False)
    assert result.clean.all() and result.accuracy("fgsm", 0.2) == 0.0 and result.accuracy("pgd", 0.2) == 0.0
    assert not result.worst[0.2].any()
    assert [name for name, _ in gradient_views(model)] == ["model", "relu"]
    assert [name for name, _ in gradient_views(nn.Sequential(nn.Conv2d(1, 1, 1), nn.ReLU()))] == ["model"]
