"""Evaluation fidelity: AutoAttack's warnings and a PGD far above AutoAttack are flagged, restarts
never attack part of a batch-dependent deployment, the training attack uses its configured loss,
"PGD more" is more effort, Table 9 compares the same layers, and figures carry intervals."""

import copy

import pytest
import torch
import torch.nn.functional as F

from pipeline.analysis import paper_numbers as paper
from pipeline.attacks import pgd
from pipeline.config import ChecksConfig, EvaluateConfig, PGDSpec, TrainConfig
from pipeline.deploy import Deployed
from pipeline.evaluate import evaluate, wilson
from pipeline.masking import masking_checks


class Probabilities:
    """A deployment that returns softmax outputs instead of logits: AutoAttack warns about it."""

    batch_dependent = randomized = False

    def __init__(self, model):
        self.model = model

    def __call__(self, x):
        return F.softmax(self.model(x), 1)


def test_autoattack_warnings_reach_the_result_and_the_checks(digits_model, digits):
    x, y = digits.x_test[:16].float() / 255, digits.y_test[:16]
    cfg = EvaluateConfig(models=["m"], eps=[0.0, 0.1], threat_eps=0.1, attacks=[{"name": "autoattack"}],
                         checks={"surrogate": "m"})
    result = evaluate(Probabilities(digits_model.eval()), x, y, cfg, progress=False)
    assert any("probability" in f for f in result.autoattack_flags), result.autoattack_flags
    checks = masking_checks(Deployed(digits_model), x, y, eps=0.1, cfg=ChecksConfig(surrogate="m", n_samples=8,
                            square_queries=10), pgd_spec=PGDSpec(name="pgd", steps=2),
                            autoattack_flags=result.autoattack_flags)
    assert checks["suspect"] and any(f.startswith("AutoAttack: ") for f in checks["flags"])


def test_autoattack_far_below_pgd_is_flagged(digits_model, digits):
    x, y = digits.x_test[:8].float() / 255, digits.y_test[:8]
    cfg = ChecksConfig(surrogate="m", n_samples=8, square_queries=10, autoattack_gap=0.05)
    kw = dict(eps=0.1, cfg=cfg, pgd_spec=PGDSpec(name="pgd", steps=2))
    weak = masking_checks(Deployed(digits_model), x, y, suite={"pgd": 0.545, "autoattack": 0.445}, **kw)
    assert any("PGD is weak on this model" in f for f in weak["flags"]) and weak["autoattack_gap"] == pytest.approx(0.1)
    close = masking_checks(Deployed(digits_model), x, y, suite={"pgd": 0.45, "autoattack": 0.44}, **kw)
    assert not any("PGD is weak" in f for f in close["flags"])


def test_every_restart_of_a_batch_dependent_deployment_sees_the_whole_batch(digits_model, digits):
    model = copy.deepcopy(digits_model)
    sizes = []
    model.register_forward_pre_hook(lambda mod, inp: sizes.append(len(inp[0])))
    x, y = digits.x_test[:32].float() / 255, digits.y_test[:32]
    x_adv = pgd(Deployed(model, "batch"), x, y, eps=0.1, step_size=0.025, steps=3, restarts=3)
    assert sizes and set(sizes) == {32}, sorted(set(sizes))
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6


def test_restarts_of_an_ordinary_deployment_attack_only_the_samples_left(digits_model, digits):
    model = copy.deepcopy(digits_model)
    sizes = []
    model.register_forward_pre_hook(lambda mod, inp: sizes.append(len(inp[0])))
    x, y = digits.x_test[:32].float() / 255, digits.y_test[:32]
    pgd(Deployed(model), x, y, eps=0.05, step_size=0.0125, steps=3, restarts=2)
    assert min(sizes) < 32


def test_the_training_attack_uses_its_configured_loss(digits_model, digits, monkeypatch):
    import pipeline.methods.base as base

    seen = []
    monkeypatch.setattr(base, "pgd", lambda f, x, y, **kw: seen.append(kw["loss"]) or x)
    cfg = TrainConfig(method="pgd_at", epochs=1, attack={"eps": 0.1, "step_size": 0.025, "steps": 2, "loss": "margin"})
    x, y = digits.x_train[:8].float() / 255, digits.y_train[:8]
    base.craft(digits_model, x, y, cfg)
    assert seen == ["margin"]


def test_pgd_more_is_more_steps_at_the_same_step_size(digits_model, digits, monkeypatch):
    import pipeline.masking as masking

    calls = []
    real = masking.pgd
    monkeypatch.setattr(masking, "pgd", lambda f, x, y, **kw: calls.append(kw) or real(f, x, y, **kw))
    x, y = digits.x_test[:8].float() / 255, digits.y_test[:8]
    masking_checks(Deployed(digits_model), x, y, eps=0.1, cfg=ChecksConfig(surrogate="m", n_samples=8,
                   square_queries=10, more_steps_factor=4), pgd_spec=PGDSpec(name="pgd", steps=5, rel_step_size=0.1))
    plain, more = calls[0], calls[1]
    assert (plain["steps"], more["steps"]) == (5, 20) and more["restarts"] == 2
    assert more["step_size"] == pytest.approx(plain["step_size"]) == pytest.approx(0.01)


def test_table9_has_layer_0_and_compares_the_same_layers():
    assert paper.TABLE9[0] == (None, None, 0.7620, 1.0)
    assert paper.table9_layers("gamma") == list(range(19)) and paper.table9_layers("mean") == list(range(1, 19))
    shared = {c: [i for i in paper.table9_layers(c) if i < 9] for c in paper.TABLE9_COLUMNS}
    means = paper.table9_means(shared)
    assert means["gamma"] == pytest.approx(sum(paper.TABLE9[i][2] for i in range(9)) / 9)
    assert means["mean"] == pytest.approx(sum(paper.TABLE9[i][0] for i in range(1, 9)) / 8)


def test_wilson_interval():
    lo, hi = wilson(100, 200)
    assert lo == pytest.approx(0.4314, abs=1e-3) and hi == pytest.approx(0.5686, abs=1e-3)
    assert wilson(0, 200)[0] == 0.0 and 0.015 < wilson(0, 200)[1] < 0.02
    # 3 points apart on 200 images: the intervals overlap
    assert wilson(109, 200)[1] > wilson(103, 200)[1] > wilson(109, 200)[0]


def test_a_batch_dependent_deployment_is_evaluated_and_attacked_in_its_batches(digits_model, digits):
    model = copy.deepcopy(digits_model)
    sizes = []
    model.register_forward_pre_hook(lambda mod, inp: sizes.append(len(inp[0])))
    x, y = digits.x_test[:30].float() / 255, digits.y_test[:30]
    cfg = EvaluateConfig(models=["m"], eps=[0.0, 0.1], threat_eps=0.1, checks={"surrogate": "m"},
                         attacks=[{"name": "pgd", "steps": 2, "restarts": 2}], deployment={"batch_size": 10})
    result = evaluate(Deployed(model, "batch"), x, y, cfg, progress=False)
    assert set(sizes) == {10} and result.n == 30
