"""The mixture-BN family: multi-branch conversion and routes, AdvProp's step and options, MBN views
crafted on the other branch, the clean-image ratio, consistent BN, smooth activations, denoising
blocks, the screen tier and ablation grids."""

import copy

import pytest
import torch
import torch.nn.functional as F

from pipeline.config import AblationConfig, EvaluateConfig, TrainConfig, parse_params, set_path
from pipeline.deploy import Deployed
from pipeline.evaluate import evaluate
from pipeline.methods import METHODS
from pipeline.methods.base import craft
from pipeline.models import build_model
from pipeline.models.common import ReLUSoftplusGrad, SmoothReLU
from pipeline.models.denoise import FILTERS, DenoiseBlock
from pipeline.norms import MultiBatchNorm, batch_norms, convert_norms, norm_route
from pipeline.spec import build_from_spec, convert_saved, load_model, make_spec, save_model
from pipeline.train import to_float, train

PGD = {"eps": 0.1, "step_size": 0.025, "steps": 3, "random_start": True, "restarts": 1, "loss": "ce"}


def _stats(model):
    return {n: (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
            for n, m in batch_norms(model)}


def _same_stats(a, b):
    return a.keys() == b.keys() and all(all(torch.equal(x, y) for x, y in zip(a[k], b[k])) for k in a)


@pytest.fixture
def batch(digits):
    return to_float(digits.x_test[:32]), digits.y_test[:32]


# --------------------------------------------------------------------------------------------
# conversion and routes


@pytest.mark.parametrize("k", [2, 3])
def test_a_converted_trained_model_equals_the_original_on_every_branch(digits_model, batch, k):
    x, _ = batch
    with torch.no_grad():
        expected = digits_model.eval()(x)
    multi = convert_norms(copy.deepcopy(digits_model), "multi", k=k).eval()
    assert sum(isinstance(m, MultiBatchNorm) for m in multi.modules()) == len(batch_norms(digits_model))
    for branch in range(k):
        with torch.no_grad(), norm_route(multi, branch=branch):
            assert torch.equal(multi(x), expected), branch
    with torch.no_grad():  # a per-sample route mixing every branch is still the original
        with norm_route(multi, branch=torch.arange(len(x)) % k):
            assert torch.equal(multi(x), expected)


def test_the_route_is_restored_when_the_body_raises(digits_model):
    multi = convert_norms(copy.deepcopy(digits_model), "multi", k=2)
    norms = [m for m in multi.modules() if isinstance(m, MultiBatchNorm)]
    with norm_route(multi, branch=1):
        with pytest.raises(RuntimeError, match="boom"):
            with norm_route(multi, branch=0):
                assert all(m.route == {"branch": 0} for m in norms)
                raise RuntimeError("boom")
        assert all(m.route == {"branch": 1} for m in norms)
    assert all(m.route == {} for m in norms)


def test_auxiliary_bns_dropped_from_a_checkpoint_load_for_inference_on_the_main_bn(digits_model, batch, tmp_path):
    x, _ = batch
    spec = make_spec(arch="resnet_small", num_classes=10, in_channels=1, mean=digits_model.normalize.mean.flatten().tolist(),
                     std=digits_model.normalize.std.flatten().tolist(), conversions=[{"kind": "multi", "k": 3}])
    spec["deployment"] = {"mode": "eval", "route": {"branch": 0}}
    model = build_from_spec(spec)
    model.load_state_dict(convert_norms(copy.deepcopy(digits_model), "multi", k=3).state_dict())
    for m in model.modules():  # make the branches differ, so keeping the wrong one would show
        if isinstance(m, MultiBatchNorm):
            for b in (1, 2):
                m.branches[b].running_mean.add_(0.5 * b)
    save_model(tmp_path / "dual.pt", model, spec)
    model.to(memory_format=torch.channels_last)  # the layout models load in: the same numbers below
    main = Deployed(model.eval(), "eval", route={"branch": 0})
    new_spec = convert_saved(tmp_path / "dual.pt", tmp_path / "main.pt", {"kind": "select", "branches": [0]})
    assert "route" not in new_spec["deployment"]
    plain, loaded_spec = load_model(tmp_path / "main.pt")
    assert not any(isinstance(m, MultiBatchNorm) for m in plain.modules())
    assert len(plain.state_dict()) < len(model.state_dict())
    with torch.no_grad():
        assert torch.equal(plain(x), main(x))
    # keeping the main BN and the last auxiliary BN (AFA's stage II shape) remaps the route
    kept = convert_saved(tmp_path / "dual.pt", tmp_path / "two.pt", {"kind": "select", "branches": [0, 2]})
    two, _ = load_model(tmp_path / "two.pt")
    with torch.no_grad(), norm_route(two, branch=1), norm_route(model, branch=2):
        assert torch.equal(two(x), model(x))
    assert kept["deployment"]["route"] == {"branch": 0}
    with pytest.raises(ValueError, match="drops"):
        convert_saved(tmp_path / "dual.pt", tmp_path / "bad.pt", {"kind": "select", "branches": [1]})


# --------------------------------------------------------------------------------------------
# AdvProp


class BranchLog:
    """Which batch (clean or adversarial) each BN branch of the first norm layer normalized."""

    def __init__(self, model, clean):
        self.clean, self.kind, self.seen = clean, None, []
        model.register_forward_pre_hook(lambda m, inp: setattr(self, "kind", "clean" if torch.equal(inp[0], clean) else "adv"))
        first = next(m for m in model.modules() if isinstance(m, MultiBatchNorm))
        for b, bn in enumerate(first.branches):
            bn.register_forward_pre_hook(lambda m, inp, b=b: self.seen.append((b, self.kind, len(inp[0]))))


def _advprop(options=None, **kw):
    return TrainConfig(method="advprop", epochs=1, attack=PGD, options=options or {}, **kw)


def _multi_model(digits, k):
    torch.manual_seed(0)
    model = build_model("resnet_small", num_classes=10, in_channels=1, mean=digits.mean, std=digits.std)
    return convert_norms(model, "multi", k=k).train()


def test_advprop_sends_clean_samples_through_the_main_bn_and_adversarial_ones_through_the_auxiliary(digits, batch):
    x, y = batch
    model = _multi_model(digits, 2)
    log = BranchLog(model, x)
    out = METHODS["advprop"].batch_loss(model, x, y, _advprop())
    assert {b for b, kind, _ in log.seen if kind == "clean"} == {0}
    assert {b for b, kind, _ in log.seen if kind == "adv"} == {1}
    assert all(n == len(x) for *_, n in log.seen)  # never a mixed batch
    assert out.loss.requires_grad and torch.isfinite(out.loss)


def test_crafting_through_the_auxiliary_bn_leaves_every_running_statistic_untouched(digits, batch):
    x, y = batch
    model = _multi_model(digits, 2)
    before = _stats(model)
    for attack_bn in ("train", "eval"):
        x_adv = craft(model, x, y, _advprop(attack_bn=attack_bn), route={"branch": 1})
        assert (x_adv - x).abs().max() <= PGD["eps"] + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
        assert _same_stats(before, _stats(model)), attack_bn
        assert all(m.training for m in model.modules())  # train mode restored


def test_each_auxiliary_bn_sees_examples_of_its_own_eps(digits, batch):
    x, y = batch
    cfg = _advprop({"aux_eps": [0.1, 0.05]})
    model = build_from_spec(make_spec(arch="resnet_small", num_classes=10, in_channels=1, mean=digits.mean,
                                      std=digits.std, conversions=METHODS["advprop"].conversions(cfg))).train()
    assert next(m for m in model.modules() if isinstance(m, MultiBatchNorm)).k == 3
    sizes = {}
    first = next(m for m in model.modules() if isinstance(m, MultiBatchNorm))
    model.register_forward_pre_hook(lambda m, inp: sizes.setdefault(first.route.get("branch", 0), []).append(
        (inp[0] - x).abs().max().item()))
    METHODS["advprop"].batch_loss(model, x, y, cfg)
    assert max(sizes[0]) == 0.0
    assert 0.09 < max(sizes[1]) <= 0.1 + 1e-6 and 0.04 < max(sizes[2]) <= 0.05 + 1e-6


def test_random_eps_attacks_each_batch_at_a_fraction_of_eps(digits, batch):
    x, y = batch
    model = _multi_model(digits, 2)
    sizes = []
    first = next(m for m in model.modules() if isinstance(m, MultiBatchNorm))
    model.register_forward_pre_hook(lambda m, inp: sizes.append((first.route.get("branch"), (inp[0] - x).abs().max().item())))
    torch.manual_seed(3)
    for _ in range(3):
        METHODS["advprop"].batch_loss(model, x, y, _advprop({"random_eps": True}))
    final = [s for b, s in sizes if b == 1]
    assert all(s <= 0.1 + 1e-6 for s in final) and len({round(s, 4) for s in final}) > 1


def test_mbn_weights_and_logit_pairing_change_the_loss_as_eq_6_1_says(digits, batch):
    x, y = batch
    model = _multi_model(digits, 2)
    torch.manual_seed(0)
    plain = METHODS["advprop"].batch_loss(model, x, y, _advprop()).loss
    torch.manual_seed(0)
    half = METHODS["advprop"].batch_loss(model, x, y, _advprop({"clean_weight": 0.5, "adv_weight": 0.5})).loss
    assert torch.allclose(half, plain / 2, atol=1e-5)
    torch.manual_seed(0)
    alp = METHODS["advprop"].batch_loss(model, x, y, _advprop({"alp": 1.0})).loss
    assert alp > plain + 1e-4


def test_bad_advprop_options_fail_with_the_key():
    with pytest.raises(ValueError, match="aux_eps"):
        _advprop({"aux_eps": []})
    with pytest.raises(ValueError, match="random_eps"):
        _advprop({"random_eps": True, "aux_eps": [0.1, 0.05]})


# --------------------------------------------------------------------------------------------
# clean-image ratio and consistent BN


@pytest.mark.parametrize("fraction, size", [(0.0, 32), (0.5, 48), (1.0, 64)])
def test_the_clean_ratio_adds_that_share_of_clean_images_to_one_bn_batch(digits, batch, fraction, size):
    x, y = batch
    torch.manual_seed(0)
    model = build_model("resnet_small", num_classes=10, in_channels=1, mean=digits.mean, std=digits.std).train()
    seen = []
    model.register_forward_pre_hook(lambda m, inp: seen.append(inp[0]))
    cfg = TrainConfig(method="clean_ratio", epochs=1, attack=PGD, options={"clean_fraction": fraction})
    out = METHODS["clean_ratio"].batch_loss(model, x, y, cfg)
    update = seen[-1]  # the forward the loss comes from
    assert len(update) == size and out.logits.shape[0] == len(x)
    assert torch.equal(update[32:], x[:size - 32])  # the clean counterparts, unperturbed
    assert (update[:32] - x).abs().max() > 0.05  # the adversarial part moved


def test_consistent_bn_trains_the_last_epochs_on_running_statistics(digits):
    torch.manual_seed(0)
    model = build_model("resnet_small", num_classes=10, in_channels=1, mean=digits.mean, std=digits.std)
    small = type(digits)(digits.x_train[:256], digits.y_train[:256], digits.x_test[:64], digits.y_test[:64],
                         digits.mean, digits.std)
    snapshots, modes = [], []
    bn = batch_norms(model)[0][1]
    bn.register_forward_pre_hook(lambda m, inp: modes.append(m.training) if torch.is_grad_enabled() else None)
    cfg = TrainConfig(method="pgd_at", epochs=3, batch_size=64, lr=0.05, attack=PGD, running_stats_epochs=2)
    weights = {}
    train(model, small, cfg, seed=0, progress=False,
          on_epoch=lambda row: (snapshots.append(_stats(model)), weights.setdefault(row["epoch"], bn.weight.clone())))
    assert not _same_stats(snapshots[0], _initial := _stats(build_model(
        "resnet_small", num_classes=10, in_channels=1, mean=digits.mean, std=digits.std)))
    assert _same_stats(snapshots[0], snapshots[1]) and _same_stats(snapshots[1], snapshots[2])
    assert not torch.equal(weights[1], weights[3])  # the affine parameters still train
    per_epoch = len(modes) // 3
    assert all(modes[:per_epoch]) and not any(modes[per_epoch:])  # BN in eval mode, crafting included
    assert all(m.training for m in model.modules())


def test_consistent_bn_cannot_outlast_training():
    with pytest.raises(ValueError, match="running_stats_epochs"):
        TrainConfig(method="standard", epochs=2, running_stats_epochs=3)


# --------------------------------------------------------------------------------------------
# activations and denoising blocks


def test_the_smooth_backward_relu_is_relu_forward_and_softplus_backward():
    x = torch.linspace(-3, 3, 601, dtype=torch.float64, requires_grad=True)
    act = ReLUSoftplusGrad(beta=10.0)
    y = act(x)
    assert torch.equal(y, torch.relu(x))
    grad, = torch.autograd.grad(y.sum(), x)
    x2 = x.detach().clone().requires_grad_(True)
    expected, = torch.autograd.grad(F.softplus(x2, beta=10.0).sum(), x2)
    assert torch.allclose(grad, expected, atol=1e-12)


def test_smooth_relu_follows_eq_5_4_and_its_derivative_eq_5_5():
    act = SmoothReLU(alpha=4.0).double()
    x = torch.linspace(-2, 2, 401, dtype=torch.float64, requires_grad=True)
    y = act(x)
    a = 4.0
    expected = torch.where(x >= 0, x - torch.log1p(a * x.clamp_min(0)) / a, torch.zeros_like(x))
    assert torch.allclose(y, expected)
    grad, alpha_grad = torch.autograd.grad(y.sum(), [x, act.alpha])
    assert torch.allclose(grad, torch.where(x >= 0, a * x / (1 + a * x), torch.zeros_like(x)), atol=1e-12)
    assert alpha_grad.abs() > 0  # alpha learns


@pytest.mark.parametrize("filter", FILTERS)
def test_each_denoising_block_is_the_identity_at_initialization_and_keeps_the_shape(filter):
    torch.manual_seed(0)
    block = DenoiseBlock(8, filter)
    x = torch.randn(2, 8, 6, 6)
    out = block(x)
    assert out.shape == x.shape and torch.equal(out, x)


def test_table_4_1s_blocks_drop_the_1x1_conv_or_the_residual_and_null_without_its_conv_is_refused():
    from pipeline.config.sections import DenoiseConfig, ModelConfig

    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6)
    mean = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    no_conv, no_residual = DenoiseBlock(8, "mean", "no_conv"), DenoiseBlock(8, "mean", "no_residual")
    assert no_conv.conv is None and torch.allclose(no_conv(x), x + mean)
    assert torch.allclose(no_residual(x), mean, atol=1e-6)  # its conv starts at the identity
    with torch.no_grad():
        no_residual.conv.weight.mul_(2.0)
    assert torch.allclose(no_residual(x), 2 * mean, atol=1e-6)  # no x added back
    with pytest.raises(ValueError, match="null"):
        DenoiseBlock(8, "null", "no_conv")
    with pytest.raises(ValueError, match="block"):
        DenoiseConfig(after=[1], filter="null", block="no_residual")
    # the spec of the full block is what it always was; an ablated one names its block
    assert ModelConfig(denoise={"after": [1]}).conversions() == [
        {"kind": "denoise", "after": [1], "filter": "nonlocal_gaussian"}]
    spec = make_spec(arch="resnet_small", num_classes=10, in_channels=1, mean=[0.5], std=[0.25],
                     conversions=ModelConfig(denoise={"after": [1], "block": "no_conv"}).conversions())
    blocks = [m for m in build_from_spec(spec).modules() if isinstance(m, DenoiseBlock)]
    assert len(blocks) == 1 and blocks[0].block == "no_conv" and blocks[0].conv is None


# --------------------------------------------------------------------------------------------
# views crafted elsewhere, the screen tier, ablation grids


def _eval_cfg(default_raw) -> EvaluateConfig:
    raw = copy.deepcopy(default_raw["evaluate"])
    raw.update(n_samples=40)
    for a in raw["attacks"]:
        if "steps" in a:
            a["steps"] = 3
    for a in raw["screen"]["attacks"]:
        if "steps" in a:
            a["steps"] = 3
    raw["attacks"] = [a for a in raw["attacks"] if a["name"] != "autoattack"]
    return EvaluateConfig.model_validate(raw)


def test_a_view_crafted_on_another_deployment_only_predicts_with_its_own(digits, digits_model, default_raw):
    from pipeline.analysis.model_card import counting_passes

    cfg = _eval_cfg(default_raw).for_tier("screen")
    x, y = to_float(digits.x_test[:40]), digits.y_test[:40]
    target = copy.deepcopy(digits_model).eval()
    source = Deployed(copy.deepcopy(digits_model).eval())
    with counting_passes(target) as on_target, counting_passes(source.model) as on_source:
        transfer = evaluate(Deployed(target), x, y, cfg, progress=False, craft_on=source)
    assert on_target.gradient == 0 and on_target.forward_only > 0 and on_source.gradient > 0
    white = evaluate(Deployed(target), x, y, cfg, progress=False)
    # a copy of the same model as source: the same examples, except that early exit stops sooner
    assert transfer.headline()["pgd"] <= white.headline()["pgd"] + 0.05


def test_the_screen_tier_gives_the_full_suites_figures_for_the_attacks_it_shares(digits, digits_model, default_raw):
    full = _eval_cfg(default_raw)
    screen = full.for_tier("screen")
    assert screen.eps_grid == [0.0, full.threat] and not screen.checks.enabled
    assert [a.key for a in screen.attack_list] == ["fgsm", "pgd", "cw_linf", "apgd"]
    x, y = to_float(digits.x_test[:40]), digits.y_test[:40]
    a = evaluate(Deployed(digits_model), x, y, full, progress=False).headline()
    b = evaluate(Deployed(digits_model), x, y, screen, progress=False).headline()
    assert a["clean"] == b["clean"] and a["fgsm"] == b["fgsm"] and a["pgd"] == b["pgd"]
    assert a["cw_linf"] == b["cw_linf"]  # cumulative: the same attacks before it in both tiers
    # no claim on the worst case: the screen's APGD runs on other samples than the full suite's
    # AutoAttack (what CW-Linf rather than CW-L2 left standing), with other random starts
    assert "autoattack" not in b  # a subset never reported as AutoAttack


def test_ablation_grids_set_one_key_per_point_and_refuse_bad_values(default_raw):
    params = parse_params(default_raw)
    grid = params.ablations["activation"]
    assert [grid.config_for(v).model.activation for v in grid.values] == grid.values
    assert grid.value_of("smoothrelu") == "smoothrelu"
    ratio = params.ablations["clean_ratio"]
    assert ratio.value_of("0.5") == 0.5 and ratio.config_for(0.5).options.clean_fraction == 0.5
    assert set_path({"a": {"b": 1}}, "a.c", 2) == {"a": {"b": 1, "c": 2}}
    bad = copy.deepcopy(default_raw)
    bad["ablations"]["activation"]["values"].append("swish")
    with pytest.raises(ValueError, match=r"ablations\.activation.*values\.8.*swish"):
        parse_params(bad)
    with pytest.raises(ValueError, match="once"):
        AblationConfig(key="options.clean_fraction", values=[0.5, 0.5], train={"method": "clean_ratio", "epochs": 1,
                                                                            "attack": PGD})


def test_bnat_select_branches_drops_the_auxiliary_bns_or_says_why_not(digits, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    cfg = _advprop()
    spec = make_spec(arch="resnet_small", num_classes=10, in_channels=1, mean=digits.mean, std=digits.std,
                     conversions=METHODS["advprop"].conversions(cfg))
    spec["deployment"] = dict(METHODS["advprop"].deployment)
    save_model(tmp_path / "advprop.pt", build_from_spec(spec), spec)
    bnat = str(Path(sys.executable).parent / "bnat")
    ok = subprocess.run([bnat, "select-branches", str(tmp_path / "advprop.pt"), str(tmp_path / "main.pt"), "0"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    model, spec = load_model(tmp_path / "main.pt")
    assert spec["conversions"][-1] == {"kind": "select", "branches": [0]}
    assert not any(isinstance(m, MultiBatchNorm) for m in model.modules())
    bad = subprocess.run([bnat, "select-branches", str(tmp_path / "advprop.pt"), str(tmp_path / "x.pt"), "5"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "out of range" in bad.stderr
    assert not (tmp_path / "x.pt").exists()


