"""Strength-conditioned normalization: RobMask's strength-conditioned BN and its training step,
AFA's K-branch stage I, its fused stage II and weight generator."""

import copy

import pytest
import torch

from pipeline.config import TrainConfig
from pipeline.deploy import Deployed
from pipeline.methods import METHODS
from pipeline.methods.afa import fractions
from pipeline.norms import (FusedBatchNorm, MultiBatchNorm, StrengthBatchNorm, batch_norms, convert_norms, generators,
                            norm_route, replay)
from pipeline.norms.strength import encode_strength
from pipeline.spec import build_from_spec, load_model, make_spec, save_model
from pipeline.train import to_float, train

PGD = {"eps": 0.1, "step_size": 0.025, "steps": 2, "random_start": True, "restarts": 1, "loss": "ce"}


@pytest.fixture
def batch(digits):
    return to_float(digits.x_test[:32]), digits.y_test[:32]


def _norms(model, kind):
    return [m for m in model.modules() if isinstance(m, kind)]


def _distinct_rows(model):
    """Make every row of W and W' differ (as training would), so the wrong row would show."""
    g = torch.Generator().manual_seed(1)
    for m in _norms(model, StrengthBatchNorm):
        with torch.no_grad():
            m.weight.add_(0.3 * torch.randn(m.weight.shape, generator=g))
            m.bias.add_(0.3 * torch.randn(m.bias.shape, generator=g))


def _plain_with_rows(robmask_model, row: int, reference):
    """``reference`` (the BN model it came from) with every BN's affine set to row ``row`` of the
    RobMask model's matrices (same statistics)."""
    plain = copy.deepcopy(reference)
    for bn, sbn in zip([m for _, m in batch_norms(plain)], _norms(robmask_model, StrengthBatchNorm)):
        bn.weight.data.copy_(sbn.weight.data[row])
        bn.bias.data.copy_(sbn.bias.data[row])
    return plain.eval()


# --------------------------------------------------------------------------------------------
# RobMask: conversion, encoding, routes


def test_the_encoding_is_the_papers_for_rank_two_and_sums_to_one():
    p = torch.tensor([0.0, 0.25, 1.0])
    assert torch.equal(encode_strength(p, 2), torch.tensor([[1.0, 0.0], [0.75, 0.25], [0.0, 1.0]]))
    u = encode_strength(torch.linspace(0, 1, 11), 4)
    assert torch.allclose(u.sum(1), torch.ones(11))
    assert torch.equal(encode_strength(torch.tensor([0.0, 1 / 3, 1.0]), 4)[[0, 2]],
                       torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 1.0]]))


def test_robmask_at_p0_and_p1_uses_exactly_the_two_learned_affine_sets(digits_model, batch):
    x, _ = batch
    rob = convert_norms(copy.deepcopy(digits_model), "robmask", rank=2).eval()
    _distinct_rows(rob)
    for m in _norms(rob, StrengthBatchNorm):
        for p, row in ((0.0, 0), (1.0, 1)):
            gamma, beta = m.masking(p)
            assert torch.equal(gamma, m.weight[row]) and torch.equal(beta, m.bias[row])
        gamma, _ = m.masking(0.5)
        assert torch.equal(gamma, 0.5 * m.weight[0] + 0.5 * m.weight[1])
    for p, row in ((0.0, 0), (1.0, 1)):  # the network: a plain BN network with that row's gamma and beta
        with torch.no_grad(), norm_route(rob, strength=p):  # (BN fuses its affine step: float rounding)
            assert torch.allclose(rob(x), _plain_with_rows(rob, row, digits_model)(x), atol=1e-5, rtol=1e-5), p
    with torch.no_grad(), norm_route(rob, strength=0.5):  # and in between it is neither
        mid = rob(x)
    assert not torch.allclose(mid, _plain_with_rows(rob, 0, digits_model)(x), atol=1e-3)


def test_a_robmask_model_converted_from_bn_matches_it_at_every_strength(digits_model, batch):
    x, _ = batch
    with torch.no_grad():
        expected = digits_model.eval()(x)
    for rank, bins in ((2, 1), (3, 2)):
        rob = convert_norms(copy.deepcopy(digits_model), "robmask", rank=rank, stat_bins=bins).eval()
        assert len(_norms(rob, StrengthBatchNorm)) == len(batch_norms(digits_model))
        for p in (0.0, 0.1, 0.37, 0.5, 0.9, 1.0, torch.rand(len(x))):  # BN fuses its affine step: float rounding
            with torch.no_grad(), norm_route(rob, strength=p):
                assert torch.allclose(rob(x), expected, atol=1e-5, rtol=1e-5)


def test_a_per_sample_strength_gives_each_sample_its_own_masking(digits_model, batch):
    x, _ = batch
    rob = convert_norms(copy.deepcopy(digits_model), "robmask", rank=2).eval()
    _distinct_rows(rob)
    pair, strengths = x[:2], torch.tensor([0.2, 0.9])
    with torch.no_grad():
        with norm_route(rob, strength=strengths):
            together = rob(pair)
        for i in range(2):
            with norm_route(rob, strength=float(strengths[i])):
                assert torch.allclose(together[i], rob(pair[i:i + 1])[0], atol=1e-6)
        with norm_route(rob, strength=torch.tensor([0.2, 0.2])):  # and differ across strengths
            assert not torch.allclose(together[1], rob(pair)[1])
    with pytest.raises(ValueError, match="route 'strength' has 3 entries for a batch of 2"):
        with torch.no_grad(), norm_route(rob, strength=torch.tensor([0.1, 0.2, 0.3])):
            rob(pair)
    with pytest.raises(ValueError, match=r"strength must lie in \[0, 1\]"):
        with torch.no_grad(), norm_route(rob, strength=1.5):
            rob(pair)


def test_a_robmask_checkpoint_loads_by_path_and_deploys_at_p0(digits_model, batch, tmp_path):
    x, _ = batch
    spec = make_spec(arch="resnet_small", num_classes=10, in_channels=1,
                     mean=digits_model.normalize.mean.flatten().tolist(), std=digits_model.normalize.std.flatten().tolist(),
                     conversions=[{"kind": "robmask", "rank": 2, "stat_bins": 1, "relu": False, "init_std": 0.0}])
    rob = build_from_spec(spec)
    rob.load_state_dict(convert_norms(copy.deepcopy(digits_model), "robmask", rank=2).state_dict())
    _distinct_rows(rob)
    save_model(tmp_path / "m.pt", rob, spec)
    loaded, _ = load_model(tmp_path / "m.pt")
    rob.to(memory_format=torch.channels_last)  # the layout models load in
    with torch.no_grad():
        assert torch.equal(loaded(x), rob.eval()(x))  # default route: p = 0
        with norm_route(loaded, strength=0.6), norm_route(rob, strength=0.6):
            assert torch.equal(loaded(x), rob(x))


def test_the_robmask_step_draws_a_strength_and_trains_masks_and_network(digits):
    cfg = TrainConfig.model_validate({"method": "robmask", "epochs": 1, "attack": PGD, "batch_size": 64,
                                      "options": {"decay_masks": False}})
    spec = make_spec(arch="resnet_small", num_classes=10, in_channels=1, mean=digits.mean, std=digits.std,
                     conversions=METHODS["robmask"].conversions(cfg))
    torch.manual_seed(0)
    model = build_from_spec(spec)
    before = copy.deepcopy(model.state_dict())
    groups = METHODS["robmask"].trainable(model, cfg)
    assert [g.get("weight_decay") for g in groups] == [None, 0.0]  # masks without weight decay when asked
    train(model, digits, cfg, seed=0, progress=False, max_steps=3, params=lambda m: METHODS["robmask"].trainable(m, cfg))
    after = model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.endswith("bn1.weight") for k in moved) and any(k.startswith("conv1") for k in moved)
    rows = [m.weight for m in _norms(model, StrengthBatchNorm)]
    assert all(not torch.equal(w[0], w[1]) for w in rows)  # the two maskings learn apart


# --------------------------------------------------------------------------------------------
# AFA


def test_afa_strengths_are_nested_linear_grids_or_geometric():
    def cfg(**o):
        return TrainConfig.model_validate({"method": "afa", "epochs": 1, "attack": PGD, "options": o})

    assert fractions(cfg(k=2)) == [0.0, 1.0]
    assert set(fractions(cfg(k=3))) <= set(fractions(cfg(k=5))) <= set(fractions(cfg(k=9)))
    assert fractions(cfg(k=5, strengths="geometric")) == [0.0, 0.125, 0.25, 0.5, 1.0]
    assert fractions(cfg(k=3, xi=[0.0, 0.02, 0.08])) == [0.0, 0.25, 1.0]
    with pytest.raises(ValueError, match="xi: give one strength per branch"):
        cfg(k=3, xi=[0.0, 0.1])
    with pytest.raises(ValueError, match="base_options.beta"):
        cfg(base="trades", base_options={"beta": "x"})


@pytest.mark.parametrize("base", ["pgd_at", "trades", "mart", "iat"])
def test_afa_stage_one_crafts_each_branch_through_itself_at_its_strength(digits, base, monkeypatch):
    import pipeline.methods.base as base_module

    cfg = TrainConfig.model_validate({"method": "afa", "epochs": 1, "attack": PGD, "batch_size": 32,
                                      "options": {"k": 3, "base": base}})
    model = replay(build_from_spec(make_spec(arch="resnet_small", num_classes=10, in_channels=1, mean=digits.mean,
                                             std=digits.std)), METHODS["afa"].conversions(cfg))
    crafted, original = [], base_module.pgd

    def spy(f, x, y, **kw):
        crafted.append((dict(f.route), float(torch.as_tensor(kw["eps"]).max())))
        return original(f, x, y, **kw)

    monkeypatch.setattr(base_module, "pgd", spy)
    seen = {b: [] for b in range(3)}
    for i, m in enumerate(_norms(model, MultiBatchNorm)[:1]):
        for b, bn in enumerate(m.branches):
            bn.register_forward_hook(lambda mod, inp, out, b=b: seen[b].append(len(inp[0])))
    x, y = to_float(digits.x_train[:32]), digits.y_train[:32]
    out = METHODS["afa"].batch_loss(model.train(), x, y, cfg)
    assert torch.isfinite(out.loss)
    assert [r["branch"] for r, _ in crafted] == [1, 2]
    assert [e for _, e in crafted] == pytest.approx([0.05, 0.1])
    assert all(seen[b] for b in range(3))  # every branch normalized something


def _stage_two(digits, k=3, **options):
    cfg1 = TrainConfig.model_validate({"method": "afa", "epochs": 1, "attack": PGD, "options": {"k": k}})
    torch.manual_seed(0)
    model = replay(build_from_spec(make_spec(arch="resnet_small", num_classes=10, in_channels=1, mean=digits.mean,
                                             std=digits.std)), METHODS["afa"].conversions(cfg1))
    train(model, digits, cfg1, seed=0, progress=False, max_steps=2)
    g = torch.Generator().manual_seed(2)
    for m in _norms(model, MultiBatchNorm):  # branches that differ clearly
        for bn in m.branches[1:]:
            with torch.no_grad():
                bn.weight.add_(0.5 * torch.randn(bn.weight.shape, generator=g))
                bn.running_mean.add_(0.2)
    cfg2 = TrainConfig.model_validate({"method": "afa_fusion", "epochs": 1, "attack": PGD, "attack_bn": "eval",
                                       "options": options})
    fused = replay(copy.deepcopy(model), METHODS["afa_fusion"].conversions(cfg2))
    return model.eval(), fused.eval(), cfg2


def test_the_fused_output_is_bn0_at_w0_one_and_bn_last_at_w0_zero(digits, batch):
    x, _ = batch
    stage1, fused, _ = _stage_two(digits, k=3)
    assert len(_norms(fused, FusedBatchNorm)) == len(_norms(stage1, MultiBatchNorm))
    assert len(generators(fused)) == 1
    ends = {}
    with torch.no_grad():
        for w, branch in ((1.0, 0), (0.0, 2)):
            with norm_route(stage1, branch=branch):
                ends[w] = expected = stage1(x)
            with norm_route(fused, fusion=w):
                assert torch.equal(fused(x), expected)
            with norm_route(fused, fusion=torch.full((len(x),), w)):  # the arithmetic path too
                assert torch.equal(fused(x), expected)
        with norm_route(fused, fusion=0.5):
            half = fused(x)
        assert not torch.allclose(half, ends[1.0], atol=1e-3) and not torch.allclose(half, ends[0.0], atol=1e-3)
        fused(x)  # without a route the generator decides, per sample
        w0 = generators(fused)[0].last
        assert w0.shape == (len(x), 1) and ((w0 > 0) & (w0 < 1)).all()


def test_by_default_the_generator_reads_the_stem_and_drives_every_bn_and_stage_0_leaves_the_first_unfused(digits, batch):
    from pipeline.norms.fused import fused_counts

    x, _ = batch

    def stem_bn(model):
        """The stem BN's output and its two branches' outputs on the same input, in one forward."""
        seen = {}
        hook = model.bn1.register_forward_hook(lambda m, inp, out: seen.update(out=out.clone(), b0=m.branches[0](inp[0]),
                                                                                b1=m.branches[1](inp[0])))
        with torch.no_grad():
            model(x)
        hook.remove()
        return seen, generators(model)[0].last[:, 0].reshape(-1, 1, 1, 1)

    stage1, fused, _ = _stage_two(digits, k=3)  # the default: read_after stem
    assert fused_counts(fused) == (9, 9) and fused_counts(stage1) is None  # resnet_small: 9 BNs, every one fused
    seen, w0 = stem_bn(fused)
    assert torch.allclose(seen["out"], w0 * seen["b0"] + (1 - w0) * seen["b1"], atol=1e-6)
    assert not torch.allclose(seen["out"], seen["b0"], atol=1e-3)
    stage0 = _stage_two(digits, k=3, read_after=0)[1]
    assert fused_counts(stage0) == (6, 9)  # the stem's BN and stage 0's two run BN_0
    seen, _ = stem_bn(stage0)
    assert torch.equal(seen["out"], seen["b0"])
    with pytest.raises(ValueError, match="read_after is 'stem' or a stage 0..2"):
        _stage_two(digits, k=3, read_after=3)


@pytest.mark.parametrize("weights", ["scalar", "per_layer", "per_channel"])
def test_stage_two_trains_the_weight_generator_alone(digits, weights):
    _, fused, cfg2 = _stage_two(digits, weights=weights)
    before = copy.deepcopy(fused.state_dict())
    params = METHODS["afa_fusion"].trainable(fused, cfg2)
    train(fused, digits, cfg2, seed=0, progress=False, max_steps=3, params=lambda m: params)
    after = fused.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    gen = {n for n, _ in fused.named_parameters() if ".body." in n}
    assert changed and all(".body." in k for k in changed), sorted(changed - gen)[:5]
    assert gen <= changed  # every generator parameter moved


def test_the_stage_two_check_refuses_settings_it_cannot_train_with():
    base = {"method": "afa_fusion", "epochs": 1, "attack": PGD}
    with pytest.raises(ValueError, match="attack_bn: afa_fusion attacks the fused model as it deploys"):
        TrainConfig.model_validate(base)


# --------------------------------------------------------------------------------------------
# evaluation: AFA's adaptive attack, transfer, views with their own attacks, dials, statistics


def test_afa_adaptive_attack_reads_the_generator_and_pushes_w0_up(digits, batch):
    from pipeline.config import EvaluateConfig
    from pipeline.evaluate import attack_fn, evaluate

    x, y = batch
    _, fused, _ = _stage_two(digits, k=3)
    deployed = Deployed(fused)
    spec = EvaluateConfig.model_validate({
        "eps": [0.0, 0.1], "threat_eps": 0.1, "checks": {"surrogate": "g/m"},
        "attacks": [{"name": "afa_adaptive", "steps": 5, "weightings": [[0, 1]]}]}).attack_list[0]
    with torch.no_grad():
        deployed(x)
    w0_clean = generators(fused)[0].last.mean().item()
    x_adv = attack_fn(spec, deployed, eot=1, early_exit=False)(x, y, 0.1)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        deployed(x_adv)
    assert generators(fused)[0].last.mean().item() > w0_clean  # BCE-only ascent moves W0 towards 1
    cfg = EvaluateConfig.model_validate({
        "eps": [0.0, 0.1], "threat_eps": 0.1, "checks": {"surrogate": "g/m"},
        "attacks": [{"name": "pgd", "steps": 3}, {"name": "afa_adaptive", "steps": 3, "alone": True}]})
    full = evaluate(deployed, x, y, cfg, progress=False)
    result = full.headline()
    assert result["worst_case"] <= min(result["pgd"], result["afa_adaptive_alone"])
    # each of the seven weightings by itself on every image: the paper's best single weighting, which the
    # per-image union (robust only if every weighting fails) can only undercut
    parts = full.parts[("afa_adaptive", 0.1)]
    assert list(parts) == ["10:1", "5:1", "2:1", "1:1", "1:2", "1:5", "1:10"]
    union = full.alone[("afa_adaptive", 0.1)]
    assert all(torch.equal(union & part, union) and not (part & ~full.clean).any() for part in parts.values())
    best = result["afa_adaptive_best_single"]
    assert best == min(p.float().mean().item() for p in parts.values()) >= result["afa_adaptive_alone"]
    assert parts[result["afa_adaptive_best_single_part"]].float().mean().item() == best
    from pipeline.papers import outcomes
    assert outcomes.of_result(full)["robust/afa_adaptive_best_single"].mean() == pytest.approx(best)
    with pytest.raises(ValueError, match="needs a model with a weight generator"):
        attack_fn(spec, Deployed(_stage_two(digits, k=3)[0]), eot=1)


def test_transfer_crafts_on_the_surrogate_only(digits_model, batch):
    from pipeline.config import EvaluateConfig
    from pipeline.evaluate import evaluate

    x, y = batch
    cfg = EvaluateConfig.model_validate({
        "eps": [0.0, 0.1], "threat_eps": 0.1, "checks": {"surrogate": "g/m"},
        "attacks": [{"name": "transfer", "steps": 3}]})
    target = copy.deepcopy(digits_model).eval()
    calls = []
    target.register_forward_pre_hook(lambda m, inp: calls.append(torch.is_grad_enabled()))
    result = evaluate(Deployed(target), x, y, cfg, progress=False, surrogate=Deployed(digits_model))
    assert calls and not any(calls)  # the target is only ever queried without gradients
    assert result.accuracy("transfer", 0.1) < result.clean.float().mean().item()
    with pytest.raises(ValueError, match="needs a surrogate model"):
        evaluate(Deployed(target), x, y, cfg, progress=False)


def test_a_view_adds_its_attacks_and_grid_and_bad_ones_fail_at_load(default_raw):
    from pipeline.config import ConfigError, parse_params

    params = parse_params(default_raw)
    cfg = params.evaluation_config("afa_pgd_at_adaptive")
    assert [a.key for a in cfg.attack_list][-2:] == ["afa_adaptive", "transfer"]
    assert cfg.eps_grid == [0.0, 0.0125, 0.025, 0.05, 0.1]
    assert params.evaluation_config("adversarial").eps_grid == [0.0, 0.05, 0.1, 0.15, 0.2]
    bad = copy.deepcopy(default_raw)
    bad["evaluations"]["afa"]["views"]["afa_pgd_at_adaptive"]["eps"] = [0.0, 0.05]
    with pytest.raises(ConfigError, match=r"evaluations.afa.views.afa_pgd_at_adaptive: .*threat_eps: 0.1 is not in the eps grid"):
        parse_params(bad)
    bad = copy.deepcopy(default_raw)
    bad["ablations"]["afa_k"]["then"]["attack_bn"] = "train"
    with pytest.raises(ConfigError, match="ablations.afa_k.then.attack_bn"):
        parse_params(bad)


def test_spearman_and_monotonicity():
    from pipeline.analysis.strength_stats import monotonicity, ranks, spearman

    assert torch.equal(ranks(torch.tensor([3.0, 1.0, 1.0, 2.0])), torch.tensor([4.0, 1.5, 1.5, 3.0], dtype=torch.float64))
    e = torch.tensor([0.0, 0.1, 0.2, 0.3])
    assert spearman(e, torch.tensor([1.0, 2.0, 5.0, 9.0])) == pytest.approx(1.0)
    assert spearman(e, torch.tensor([4.0, 3.0, 2.0, 1.0])) == pytest.approx(-1.0)
    assert spearman(e, torch.tensor([1.0, 3.0, 2.0, 4.0])) == pytest.approx(0.8)
    stats = {"eps": [0.0, 0.1, 0.2], "mean": [torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.5]), torch.tensor([2.0, 0.7])],
             "var": [torch.ones(2)] * 3, "w1": [torch.tensor([0.1, 0.2]), torch.tensor([0.3, 0.2]), torch.tensor([0.5, 0.6])]}
    m = monotonicity(stats)
    assert m["mean_monotone_share"] == 0.5 and m["mean_increasing_share"] == 0.5
    assert m["var_abs_rho"] is None  # a constant statistic has no rank correlation
    assert m["w1_spearman"] > 0.8 and m["w1_mean"] == pytest.approx([0.15, 0.25, 0.55])


def test_a_custom_autoattack_subset_needs_its_own_label_and_runs_the_standard_components(digits_model, monkeypatch):
    from pydantic import ValidationError

    from pipeline.attacks import autoattack as aa_module
    from pipeline.attacks.autoattack import AutoAttackSpec
    from pipeline.analysis.report import attack_label

    with pytest.raises(ValidationError, match="a custom subset of AutoAttack needs a label"):
        AutoAttackSpec(name="autoattack", version="custom", attacks=["apgd-ce", "apgd-t"])
    with pytest.raises(ValidationError, match="components to run exactly when version is custom"):
        AutoAttackSpec(name="autoattack", version="standard", attacks=["apgd-ce"])
    spec = AutoAttackSpec(name="autoattack", version="custom", attacks=["apgd-ce", "apgd-t"], label="apgd")
    assert spec.key == "apgd" and "AutoAttack" in attack_label(spec) and attack_label(spec) != "AutoAttack"
    import pyautoattack

    seen, original = {}, pyautoattack.AutoAttack

    class Spy:
        def __init__(self, f, **kw):
            self.inner = original(f, **kw)
            seen["kw"] = kw
            self.apgd, self.apgd_targeted, self.fab, self.square = (self.inner.apgd, self.inner.apgd_targeted,
                                                                    self.inner.fab, self.inner.square)

        def run_standard_evaluation(self, x, y, batch_size):
            seen["settings"] = (self.apgd.n_restarts, self.apgd_targeted.n_target_classes, self.apgd_targeted.n_restarts)
            return x.clone(), y

    monkeypatch.setattr(pyautoattack, "AutoAttack", Spy)
    x = torch.rand(4, 1, 16, 16)
    aa_module.autoattack(Deployed(digits_model), x, torch.zeros(4, dtype=torch.long), eps=0.1, version="custom",
                         attacks=["apgd-ce", "apgd-t"])
    assert seen["kw"]["attacks"] == ["apgd-ce", "apgd-t"] and seen["settings"] == (1, 9, 1)
    aa_module.autoattack(Deployed(digits_model), x, torch.zeros(4, dtype=torch.long), eps=0.1, version="custom",
                         attacks=["apgd-ce", "apgd-t"], target_classes=3)
    assert seen["settings"] == (1, 3, 1)
    fewer = AutoAttackSpec(name="autoattack", version="custom", attacks=["apgd-ce", "apgd-t"], label="apgd",
                           target_classes=3)
    assert attack_label(fewer) == "APGD-CE+APGD-T (of AutoAttack, 3 target classes)"
    with pytest.raises(ValidationError, match="only a custom subset"):
        AutoAttackSpec(name="autoattack", version="standard", target_classes=3)


def test_fig_6_transfers_examples_from_another_model_and_fig_3_reads_the_stage_one_model(digits, batch, default_raw):
    from pipeline.analysis.strength_stats import monotonicity, strength_statistics
    from pipeline.config import parse_params

    x, y = batch
    stage1, fused, _ = _stage_two(digits, k=3)
    surrogate = copy.deepcopy(stage1)
    crafted = []
    surrogate.register_forward_hook(lambda m, i, o: crafted.append(i[0].requires_grad))
    kw = dict(feature="layers.1.0.conv1", steps=2, rel_step_size=0.25, seed=0)
    white = strength_statistics(Deployed(fused), x, y, [0.0, 0.05, 0.1], **kw)
    assert not crafted
    moved = strength_statistics(Deployed(fused), x, y, [0.0, 0.05, 0.1], craft_on=Deployed(surrogate), **kw)
    assert any(crafted)  # the gradients came from the surrogate
    assert len(moved["w1"]) == 3 and torch.equal(moved["w1"][0], white["w1"][0])  # eps 0: the same clean images
    assert not torch.equal(moved["w1"][2], white["w1"][2])
    assert len(monotonicity(moved)["w1_mean"]) == 3
    params = parse_params(default_raw)
    assert params.analyses["strength"].strength == ["adversarial", "afa1_pgd_at", "afa_pgd_at"]
