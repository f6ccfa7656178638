"""Evaluation fidelity: AutoAttack's warnings and a PGD far above AutoAttack are flagged, restarts
never attack part of a batch-dependent deployment, the training attack uses its configured loss,
"PGD more" is more effort, Table 9 compares the same layers, and figures carry intervals."""

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pipeline.papers import robmask as paper
from pipeline.attacks.pgd import pgd
from pipeline.attacks.pgd import PGDSpec
from pipeline.config import ChecksConfig, EvaluateConfig, TrainConfig
from pipeline.deploy import Deployed
from pipeline.evaluate import evaluate, wilson
from pipeline.masking import masking_checks


class Probabilities(Deployed):
    """A deployment that returns softmax outputs instead of logits: AutoAttack warns about it."""

    def __call__(self, x):
        return F.softmax(super().__call__(x), 1)


def test_autoattack_warnings_reach_the_result_and_the_checks(digits_model, digits):
    x, y = digits.x_test[:16].float() / 255, digits.y_test[:16]
    cfg = EvaluateConfig(eps=[0.0, 0.1], threat_eps=0.1, attacks=[{"name": "autoattack"}],
                         checks={"surrogate": "g/m"})
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
    cfg = EvaluateConfig(eps=[0.0, 0.1], threat_eps=0.1, checks={"surrogate": "g/m"},
                         attacks=[{"name": "pgd", "steps": 2, "restarts": 2}], deployment={"batch_size": 10})
    result = evaluate(Deployed(model, "batch"), x, y, cfg, progress=False)
    assert set(sizes) == {10} and result.n == 30


def _cfg(attacks, **kw):
    return EvaluateConfig(eps=[0.0, 0.1], threat_eps=0.1, attacks=attacks, checks={"surrogate": "g/m"}, **kw)


def test_variants_of_one_attack_sit_side_by_side_under_their_labels(digits_model, digits):
    x, y = digits.x_test[:16].float() / 255, digits.y_test[:16]
    cfg = _cfg([{"name": "pgd", "steps": 2, "label": "PGD-2"}, {"name": "pgd", "steps": 6, "label": "PGD-6"}])
    head = evaluate(Deployed(digits_model), x, y, cfg, progress=False).headline()
    assert {"PGD-2", "PGD-6", "PGD-2_alone", "PGD-6_alone"} <= set(head)
    with pytest.raises(ValueError, match="unless given its own label"):
        _cfg([{"name": "pgd", "steps": 2}, {"name": "pgd", "steps": 6}])


def test_cw_linf_is_pgd_on_the_margin_loss(digits_model, digits, monkeypatch):
    import pipeline.attacks.pgd as attacks_pgd

    seen = []
    real = attacks_pgd.pgd
    monkeypatch.setattr(attacks_pgd, "pgd", lambda f, x, y, **kw: seen.append(kw["loss"]) or real(f, x, y, **kw))
    x, y = digits.x_test[:16].float() / 255, digits.y_test[:16]
    evaluate(Deployed(digits_model), x, y, _cfg([{"name": "cw_linf", "steps": 3}]), progress=False)
    assert seen == ["margin"]


def test_minimal_perturbation_attacks_report_success_and_median_l2(digits_model, digits):
    x, y = digits.x_test[:12].float() / 255, digits.y_test[:12]
    cfg = _cfg([{"name": "deepfool", "steps": 20}, {"name": "cw", "steps": 20, "alone": True}])
    result = evaluate(Deployed(digits_model), x, y, cfg, progress=False)
    head = result.headline()
    for key in ("deepfool", "cw"):
        m = head["minimal"][key]
        assert m["n_attacked"] == int(result.clean.sum()) and 0.5 <= m["success_rate"] <= 1
        assert 0 < m["median_l2"] < 16  # an L2 norm in pixels of a 16x16 image
    # alone: CW ran on every clean-correct sample, so its own column exists and the cascade's is no higher
    assert head["cw_alone"] >= head["cw"] and "deepfool_alone" in head


def test_cascade_attacks_after_the_first_have_no_own_figure_unless_alone(digits_model, digits):
    x, y = digits.x_test[:16].float() / 255, digits.y_test[:16]
    head = evaluate(Deployed(digits_model), x, y, _cfg([{"name": "fgsm"}, {"name": "cw_linf", "steps": 3}]),
                    progress=False).headline()
    assert "fgsm_alone" in head and "cw_linf_alone" not in head


def test_model_card_counts_passes_and_records_the_setting(digits_model, digits, default_raw):
    from pipeline.analysis.model_card import build_card, card_markdown, counting_passes
    from pipeline.config import parse_params

    params = parse_params(default_raw)
    x, y = digits.x_test[:10].float() / 255, digits.y_test[:10]
    cfg = _cfg([{"name": "pgd", "steps": 4}])
    with counting_passes(digits_model) as passes:
        metrics = evaluate(Deployed(digits_model), x, y, cfg, progress=False).headline()
    # PGD-4 without early exit would be 4 gradient passes per image; early exit can only save
    assert 0 < passes.gradient <= 4 * 10 and passes.forward_only >= 10
    spec = {"arch": "resnet_small", "options": {}, "conversions": [], "steps": [{"stage": "pretrain@m", "method": "standard"}]}
    card = build_card("m", "m", metrics, params, spec, {"mode": "eval", "route": {"branch": torch.tensor([0, 1])}},
                      passes, "abc123", {"run_id": "r1"})
    assert card["threat_model"]["eps"] == params.evaluate.threat and card["n_test_samples"] == 10
    assert card["deployment"]["route"] == {"branch": [0, 1]} and card["mlflow_run"] == "r1"
    text = card_markdown(card)
    assert "# Model card: m" in text and "gradient passes" in text and "abc123" in text
    assert "Masking checks: not run (checks disabled)" in text and card["masking_checks"]["ran"] is False


def test_model_card_says_what_ran_how_the_model_was_trained_and_where_it_is_registered(default_raw):
    from pipeline.analysis.model_card import build_card, card_markdown, PassCounter
    from pipeline.config import parse_params

    params = parse_params(default_raw)
    adversarial = params.training("adversarial")
    spec = {"arch": "resnet_small", "options": {"width": 2}, "conversions": [{"kind": "multi", "k": 2}],
            "steps": [{"stage": "pretrain@base/adversarial", "method": "pgd_at", "options": {"beta": 6.0, "aux": None},
                       "trainable": "all", "attack": {"eps": 0.1, "steps": 3, "random_start": True}}]}
    metrics = {"n_samples": 10, "clean": 0.9, "worst_case": 0.5, "tier": "screen"}
    passes = PassCounter()
    ref = {"run_id": "train1", "model_uri": "models:/bn-adversarial.adversarial/3"}
    card = build_card("adversarial", "adversarial", metrics, params, spec, {"mode": "eval", "route": {"branch": 1}},
                      passes, "abc", {"run_id": "eval1"}, model_ref=ref)
    text = card_markdown(card)
    assert "Masking checks: not run (screen tier)" in text and "no flag" not in text
    assert card["masking_checks"] == {"ran": False, "not_run_because": "screen tier", "suspect": None, "flags": []}
    training = next(line for line in text.splitlines() if line.startswith("- Training:"))
    assert training == (f"- Training: pretrain@base/adversarial: pgd_at (beta 6), PGD-3 at eps 0.1000 (25.5/255), "
                        f"{adversarial.epochs} epoch{'' if adversarial.epochs == 1 else 's'}")
    assert "`models:/bn-adversarial.adversarial/3` (training run train1)" in text
    assert "Deployment: eval mode, route branch 1" in text and "(resnet_small, width 2); conversions: multi (k 2)" in text
    assert not any(c in text for c in "{}[]") and "None" not in text and "True" not in text  # no Python reprs
    checked = build_card("adversarial", "adversarial", {**metrics, "tier": "full", "suspect": False, "checks": {"flags": []}},
                         params, spec, {"mode": "eval"}, passes, "abc", None)
    assert "Masking checks: ran, no flag" in card_markdown(checked) and "Fusion" not in card_markdown(checked)
    for fusion, line in (((9, 9), "- Fusion (AFA): the weight generator drives 9 of the 9 BNs"),
                         ((6, 9), "- Fusion (AFA): the weight generator drives 6 of the 9 BNs; the 3 before it run a "
                                  "fixed weight (option `before`)")):
        afa = build_card("afa", "afa", metrics, params, spec, {"mode": "eval"}, passes, "abc", None, fusion=fusion)
        assert line in card_markdown(afa).splitlines() and afa["fusion"]["driven"] == fusion[0]
    assert "autocast" not in text  # trained in fp32; a bf16-autocast step says so
    amp = {**spec, "steps": [{**spec["steps"][0], "amp": True}]}
    assert "bf16 autocast on CUDA (none of the papers trains with it)" in card_markdown(
        build_card("adversarial", "adversarial", metrics, params, amp, {"mode": "eval"}, passes, "abc", None))


def test_minimal_summary_when_the_cascade_left_nothing_to_attack():
    from pipeline.evaluate import minimal_summary

    assert minimal_summary({}) == {"n_attacked": 0, "success_rate": None, "median_l2": None}
    assert minimal_summary({"success": [True, False, True], "l2": [1.0, 9.0, 3.0]})["median_l2"] == 2.0


def test_interpolation_endpoints_equal_the_models_own_pgd_rows(digits_model, digits, default_raw):
    from pipeline.analysis.interpolate import interpolate_bn
    from pipeline.config import parse_params
    from pipeline.norms import batch_norms
    from stages.interpolate import interpolation_suite
    from tests.conftest import tiny_raw

    params = parse_params(tiny_raw(default_raw))
    suite = interpolation_suite(params)
    assert [a.name for a in suite.attack_list] == ["pgd"] and suite.eps_grid == [0.0, params.evaluate.threat]
    a, b = digits_model, copy.deepcopy(digits_model)
    for _, bn in batch_norms(b):
        bn.weight.data *= 1.3
    x, y = digits.x_test[:40].float() / 255, digits.y_test[:40]
    own = {m: evaluate(Deployed(m), x, y, params.evaluate, progress=False).headline()["pgd"] for m in (a, b)}
    at = {p: evaluate(Deployed(interpolate_bn(a, b, p, stats="interpolate")), x, y, suite, progress=False).headline()
          for p in (1.0, 0.0)}
    assert at[1.0]["worst_case"] == own[a] and at[0.0]["worst_case"] == own[b]


def test_resnet18_config_has_the_papers_bn_sections(default_raw):
    from pipeline.config import load_params

    root = Path(__file__).parents[1]
    robmask = load_params(root / "configs" / "cifar10_resnet18_robmask_paper.yaml")
    assert {"bn_params", "adv_clean_bn"} <= {n for n in robmask.trained if robmask.is_finetune(n)}
    assert robmask.interpolate and robmask.analyze_bn and paper.TABLE9_PAIR in robmask.analyses_of("analyze_bn")
