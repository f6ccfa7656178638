"""Models that remember how they were built, methods with typed options, and views.

A checkpoint's spec records the architecture options and every conversion; ``load_model``
rebuilds, replays and loads strictly, so converted and block-augmented models load by path alone.
"""

import copy
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.config import ConfigError, parse_params
from pipeline.methods import METHODS
from pipeline.models import build_model
from pipeline.norms import MultiBatchNorm, batch_norms, convert_norms, frozen_bn_stats, norm_route, training_mode
from pipeline.spec import build_from_spec, load_model, make_spec

from tests.conftest import tiny_raw

DATA = Path(__file__).parent / "data"


def _spec(digits, **kw):
    return make_spec(arch="resnet_small", num_classes=10, in_channels=1, mean=digits.mean, std=digits.std, **kw)


def _perturb_bn(model):
    """Branches that differ, so that a route that is ignored cannot pass for one that works."""
    g = torch.Generator().manual_seed(3)
    for _, bn in batch_norms(model):
        bn.weight.data += 0.3 * torch.randn(bn.weight.shape, generator=g)
        bn.running_mean += 0.2 * torch.randn(bn.running_mean.shape, generator=g)


# --------------------------------------------------------------------------------------------
# conversion


def test_multi_bn_conversion_preserves_outputs_on_every_branch(digits_model, digits):
    x = digits.x_test[:16].float() / 255
    before = digits_model(x)
    model = convert_norms(copy.deepcopy(digits_model), "multi", k=3).eval()
    assert len([m for m in model.modules() if isinstance(m, MultiBatchNorm)]) == 9
    for branch in range(3):
        with norm_route(model, branch=branch):
            assert torch.equal(model(x), before)


def test_per_sample_route_equals_single_sample_calls(digits_model, digits):
    model = convert_norms(copy.deepcopy(digits_model), "multi", k=2).eval()
    _perturb_bn(model)
    x = digits.x_test[:6].float() / 255
    branch = torch.tensor([0, 1, 1, 0, 1, 0])
    with norm_route(model, branch=branch):
        together = model(x)
    for i in range(6):
        with norm_route(model, branch=int(branch[i])):
            assert torch.allclose(together[i], model(x[i:i + 1])[0], atol=1e-5)


def test_route_length_must_match_the_batch(digits_model):
    model = convert_norms(copy.deepcopy(digits_model), "multi", k=2)
    with pytest.raises(ValueError, match="3 entries for a batch of 4"):
        with norm_route(model, branch=torch.tensor([0, 1, 0])):
            model(torch.rand(4, 1, 16, 16))


def test_route_is_restored_when_the_body_raises(digits_model):
    model = convert_norms(copy.deepcopy(digits_model), "multi", k=2)
    with pytest.raises(RuntimeError):
        with norm_route(model, branch=1):
            raise RuntimeError("boom")
    assert all(m.route == {} for m in model.modules() if isinstance(m, MultiBatchNorm))


def test_routed_norms_keep_statistics_in_plain_batch_norms(digits_model):
    model = convert_norms(copy.deepcopy(digits_model), "multi", k=2)
    names = [n for n, _ in batch_norms(model)]
    assert len(names) == 18 and all(".branches." in n for n in names)
    before = [m.running_mean.clone() for _, m in batch_norms(model)]
    with training_mode(model, True), frozen_bn_stats(model), norm_route(model, branch=1):
        model(torch.rand(8, 1, 16, 16))
    assert all(torch.equal(a, m.running_mean) for a, (_, m) in zip(before, batch_norms(model)))


def test_bn_finetuning_of_a_model_without_bn_is_an_error(digits):
    from pipeline.methods.bn_finetune import freeze_all_but

    model = build_model("resnet_small", num_classes=10, in_channels=1, mean=digits.mean, std=digits.std, norm="group")
    with pytest.raises(ValueError, match="BN fine-tuning needs BatchNorm layers"):
        freeze_all_but(model, "bn")


# --------------------------------------------------------------------------------------------
# save, load, replay


def _train_and_load(tmp_path, monkeypatch, digits, name, spec, cfg_raw):
    from pipeline.config import TrainConfig
    from stages.common import Item
    from stages.training import train_and_save

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    raw = tiny_raw(yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text()))
    params = parse_params(raw)
    cfg = TrainConfig.model_validate(cfg_raw)
    model = build_from_spec(spec)
    spec["conversions"] += METHODS[cfg.method].conversions(cfg)
    from pipeline.norms import replay

    replay(model, METHODS[cfg.method].conversions(cfg))
    out = Path("models") / "test" / name
    train_and_save(Item("pretrain", "test", name), out, model, spec, cfg, params, digits, {"test": name},
                   registry=name, headline=Path("metrics/models/test") / f"{name}.json")
    loaded, saved_spec = load_model(out / "model.pt")
    return model.eval().to(memory_format=torch.channels_last), loaded, saved_spec  # the layout models load in


ADVPROP = {"method": "advprop", "epochs": 1, "batch_size": 256, "lr": 0.05,
           "attack": {"eps": 0.1, "step_size": 0.05, "steps": 2}}


def test_converted_model_saved_by_training_loads_identically_in_every_route(tmp_path, monkeypatch, digits):
    torch.manual_seed(0)
    model, loaded, spec = _train_and_load(tmp_path, monkeypatch, digits, "advprop", _spec(digits), ADVPROP)
    assert spec["conversions"] == [{"kind": "multi", "k": 2}]
    assert spec["steps"][-1]["method"] == "advprop" and spec["deployment"]["route"] == {"branch": 0}
    x = digits.x_test[:32].float() / 255
    for route in ({"branch": 0}, {"branch": 1}, {"branch": torch.arange(32) % 2}):
        with norm_route(model, **route), norm_route(loaded, **route):
            assert torch.equal(model(x), loaded(x))
    with norm_route(loaded, branch=0), norm_route(model, branch=1):
        assert not torch.equal(model(x), loaded(x))  # the branches did train apart


def test_model_with_a_denoising_block_loads_identically(tmp_path, monkeypatch, digits):
    torch.manual_seed(0)
    spec = _spec(digits, options={"activation": "softplus"},
                 conversions=[{"kind": "denoise", "after": [1, 2], "filter": "nonlocal_gaussian"}])
    cfg = {"method": "standard", "epochs": 1, "batch_size": 256, "lr": 0.05}
    model, loaded, saved = _train_and_load(tmp_path, monkeypatch, digits, "denoised", spec, cfg)
    assert saved["conversions"][0]["kind"] == "denoise" and saved["options"] == {"activation": "softplus"}
    assert any(type(m).__name__ == "DenoiseBlock" for m in loaded.modules())
    x = digits.x_test[:32].float() / 255
    assert torch.equal(model(x), loaded(x))


def test_plain_checkpoint_of_the_previous_format_still_loads():
    model, spec = load_model(DATA / "plain_resnet_small.pt")
    io = torch.load(DATA / "plain_resnet_small_io.pt", weights_only=True)
    assert "conversions" not in spec and spec["method"] == "standard"
    assert torch.allclose(model(io["x"]), io["logits"], rtol=0, atol=1e-6)  # float rounding of another torch release


# --------------------------------------------------------------------------------------------
# typed method options


def test_method_options_are_typed(default_raw):
    params = parse_params(default_raw)
    assert params.training("trades").options.beta == 6.0
    assert params.training("standard").options.model_dump() == {}


@pytest.mark.parametrize("entry, value, message", [
    ("trades", {"beta": 6.0, "gamma": 1}, "pretrain.base.models.trades.options.gamma: unknown key for method 'trades'"),
    ("trades", {"beta": "large"}, "pretrain.base.models.trades.options.beta: Input should be a valid number"),
    ("standard", {"beta": 1.0}, "pretrain.base.models.standard.options.beta: unknown key for method 'standard'"),
])
def test_bad_method_options_fail_with_the_key_path(default_raw, entry, value, message):
    raw = copy.deepcopy(default_raw)
    raw["pretrain"]["base"]["models"][entry]["options"] = value
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bn_finetuning_of_a_groupnorm_model_fails_before_any_work(default_raw):
    raw = copy.deepcopy(default_raw)
    raw["pretrain"]["base"]["models"]["standard"]["model"] = {"arch": "resnet_small", "norm": "group"}
    with pytest.raises(ConfigError, match=r"finetune\.bn_only\.models\.bn_params\.trainable: 'bn' selects BatchNorm "
                                          r"layers.*'group'"):
        parse_params(raw)


def test_finetune_may_start_from_a_finetune_but_not_loop(default_raw):
    raw = copy.deepcopy(default_raw)
    raw["finetune"]["chained"] = {"after": "bn_only", "models": {
        "chained": {**raw["finetune"]["bn_only"]["models"]["bn_params"], "start": "bn_params"}}}
    assert parse_params(raw).architecture("chained").arch == "resnet_small"
    raw["finetune"]["bn_only"]["after"] = "chained"
    with pytest.raises(ConfigError, match="loops back"):
        parse_params(raw)


def test_train_defaults_are_inherited_and_validated(default_raw):
    params = parse_params(default_raw)
    assert params.training("mart").lr == params.train_defaults["lr"] == default_raw["train_defaults"]["lr"]
    raw = copy.deepcopy(default_raw)
    raw["train_defaults"]["lr_typo"] = 1
    with pytest.raises(ConfigError, match="train_defaults"):
        parse_params(raw)


def test_views_name_an_existing_model(default_raw):
    raw = copy.deepcopy(default_raw)
    raw["evaluations"]["base"]["views"] = {"x": {"model": "nope"}}
    with pytest.raises(ConfigError, match="evaluations.base.views.x.model: no model named 'nope' in group 'base'"):
        parse_params(raw)
    raw["evaluations"]["base"]["views"] = {"mart": {"model": "adversarial"}}
    with pytest.raises(ConfigError, match="evaluations.base.views.mart: 'mart' is already evaluated"):
        parse_params(raw)
    raw["evaluations"]["base"]["views"] = {"advprop": {"model": "adversarial"}}
    with pytest.raises(ConfigError, match="evaluations.base.views.advprop: the name is already a model"):
        parse_params(raw)


def test_view_deployment_overrides_the_models_default(default_raw):
    from stages.evaluate import deployment_of

    params = parse_params(default_raw)
    spec = {"deployment": {"mode": "eval", "route": {"branch": 0}}}
    targets = params.targets
    assert deployment_of(targets["advprop"].view, params.evaluate, spec) == {"mode": "eval", "route": {"branch": 0}}
    assert deployment_of(targets["advprop_aux"].view, params.evaluate, spec)["route"] == {"branch": 1}


# --------------------------------------------------------------------------------------------
# shared training defaults: DVC sees each entry's effective settings


def _dvc_params(text: str) -> dict:
    from dvc.utils.serialize import parse_yaml  # how DVC reads params.yaml for its params deps

    return parse_yaml(text, "params.yaml")


def test_a_changed_default_reaches_exactly_the_entries_that_inherit_it():
    text = (Path(__file__).parents[1] / "params.yaml").read_text()
    before = _dvc_params(text)
    lr = before["train_defaults"]["lr"]
    changed = _dvc_params(text.replace(f"\n  lr: {lr}\n", "\n  lr: 0.07\n", 1))
    assert lr != 0.07 and changed["train_defaults"]["lr"] == 0.07

    def entries(params):
        return {name: entry for section in ("pretrain", "finetune") for g in params[section].values()
                for name, entry in g["models"].items()}

    moved = {n for n, e in entries(before).items() if e != entries(changed)[n]}
    assert moved == {n for n, e in entries(before).items() if e["lr"] == lr}
    assert "standard" in moved and "adv_clean_bn" not in moved
    # DVC reruns a group as a whole: exactly the groups that hold a moved entry
    groups = {f"{s}.{g}" for s in ("pretrain", "finetune") for g in before[s] if before[s][g] != changed[s][g]}
    assert groups == {f"{s}.{g}" for s in ("pretrain", "finetune") for g, grp in before[s].items()
                      if set(grp["models"]) & moved}


def test_finetune_of_a_converted_model_replays_both_steps(tmp_path, monkeypatch, digits):
    """A denoised network fine-tuned with AdvProp: the start's block and the fine-tune's two-branch
    BN are both in the spec, and the checkpoint loads by path alone."""
    import stages.common as common
    from stages import finetune

    torch.manual_seed(0)
    spec = _spec(digits, conversions=[{"kind": "denoise", "after": [2], "filter": "mean"}])
    _train_and_load(tmp_path, monkeypatch, digits, "denoised", spec,
                    {"method": "standard", "epochs": 1, "batch_size": 256, "lr": 0.05})
    raw = tiny_raw(yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text()))
    raw["pretrain"]["test"] = {"models": {"denoised": {**raw["pretrain"]["base"]["models"]["standard"]}}}
    raw["finetune"]["ft"] = {"after": "test", "models": {"ft": {
        **raw["finetune"]["bn_only"]["models"]["bn_params"], "start": "denoised", "method": "advprop",
        "trainable": "all", "options": {}, "attack": ADVPROP["attack"]}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setattr(common, "PARAMS_FILE", str(tmp_path / "params.yaml"))
    (tmp_path / "data" / "prepared").mkdir(parents=True)
    import numpy as np

    np.savez(tmp_path / "data" / "prepared" / "data.npz", x_train=digits.x_train.numpy(), y_train=digits.y_train.numpy(),
             x_test=digits.x_test.numpy(), y_test=digits.y_test.numpy(), mean=np.array(digits.mean),
             std=np.array(digits.std))
    finetune.main(["ft/ft"])
    model, spec = load_model(Path("models") / "ft" / "ft" / "model.pt")
    assert [c["kind"] for c in spec["conversions"]] == ["denoise", "multi"]
    assert [s["stage"] for s in spec["steps"]] == ["pretrain@test/denoised", "finetune@ft/ft"]
    x = digits.x_test[:8].float() / 255
    with norm_route(model, branch=1):
        assert model(x).shape == (8, 10)


def test_autoaugment_changes_images_per_image_and_reproducibly(digits):
    from pipeline.config import AugmentConfig
    from pipeline.train import augment

    x = digits.x_train[:32]
    out = []
    for _ in range(2):
        torch.manual_seed(0)
        out.append(augment(x, AugmentConfig(autoaugment=True), torch.Generator().manual_seed(0)))
    assert out[0].dtype == torch.uint8 and out[0].shape == x.shape
    assert torch.equal(out[0], out[1]) and not torch.equal(out[0], x)


def test_sweeps_and_flows_find_the_stage_of_a_view(tmp_path, default_raw):
    from pipeline.flows import evaluation_stage

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(default_raw))
    assert evaluation_stage(tmp_path, "advprop_aux") == "evaluate@mixture_bn"
    assert evaluation_stage(tmp_path, "advprop") == "evaluate@mixture_bn"
    assert evaluation_stage(tmp_path, "standard_afa_grid") == "evaluate@base"


def test_a_view_route_the_model_cannot_read_fails_in_one_line(digits_model):
    from stages.evaluate import check_route

    with pytest.raises(ConfigError, match=r"^v.route: the model has no routed norms"):
        check_route("v", {"route": {"branch": 1}}, digits_model)
    converted = convert_norms(copy.deepcopy(digits_model), "multi", k=2)
    with pytest.raises(ConfigError, match=r"unknown key 'strength'"):
        check_route("v", {"route": {"strength": 0.5}}, converted)
    check_route("v", {"route": {"branch": 1}}, converted)
