import copy

import pytest
import torch
from torch import nn

from pipeline.analysis.bn_plots import (plot_bn_params_first_layer, plot_feature_maps,
                                        plot_rescaling_distributions, plot_tradeoff)
from pipeline.analysis.bn_stats import (bn_layer_table, channel_changes, first_block_features, logit_similarity,
                                        rescaling, rescaling_by_layer, rescaling_table)
from pipeline.analysis.interpolate import interpolate_bn
from pipeline.models import build_model
from pipeline.norms import batch_norms

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def images(n: int = 24, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


def calibrated_model(seed: int = 0) -> nn.Module:
    """resnet_small with random affine BN parameters and running statistics estimated on images,
    so that every channel is partly on and partly off (unlike a fresh init, where beta = mean = 0)."""
    torch.manual_seed(seed)
    model = build_model("resnet_small", num_classes=10, in_channels=1, mean=[0.5], std=[0.25])
    with torch.no_grad():
        for _, bn in batch_norms(model):
            bn.weight.copy_(1 + 0.2 * torch.randn_like(bn.weight))
            bn.bias.copy_(0.1 * torch.randn_like(bn.bias))
            bn.momentum = None  # cumulative average: the statistics of the passes below
        model.train()
        for i in range(3):
            model(images(32, seed=100 + i))
    return model.eval()


def with_new_affine(model: nn.Module, seed: int = 7, stats: bool = False) -> nn.Module:
    """A copy that differs only in BN weight/bias (and, with ``stats``, in running statistics)."""
    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, bn in batch_norms(other):
            bn.weight.mul_(1 + 0.5 * torch.rand(bn.weight.shape, generator=g))
            bn.bias.add_(0.2 * torch.randn(bn.bias.shape, generator=g))
            if stats:
                bn.running_mean.add_(0.3 * torch.randn(bn.running_mean.shape, generator=g))
                bn.running_var.mul_(1 + torch.rand(bn.running_var.shape, generator=g))
                bn.num_batches_tracked.add_(5)
    return other


@pytest.fixture(scope="module")
def pair():
    a = calibrated_model()
    return a, with_new_affine(a)


def outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


@pytest.mark.parametrize("stats", ["interpolate", "b"])
def test_interpolation_endpoints_reproduce_each_model_exactly(pair, stats):
    """p = 0 is model b whatever the statistics; p = 1 is model a when its statistics come along."""
    a, b = pair
    x = images()
    before = copy.deepcopy(a.state_dict())
    assert not torch.equal(outputs(a, x), outputs(b, x))
    assert torch.equal(outputs(interpolate_bn(a, b, 0.0, stats=stats), x), outputs(b, x))
    if stats == "interpolate":
        assert torch.equal(outputs(interpolate_bn(a, b, 1.0, stats=stats), x), outputs(a, x))
    half = interpolate_bn(a, b, 0.5)
    (_, bn_h), (_, bn_a), (_, bn_b) = batch_norms(half)[0], batch_norms(a)[0], batch_norms(b)[0]
    assert torch.allclose(bn_h.weight, (bn_a.weight + bn_b.weight) / 2)
    assert torch.allclose(bn_h.bias, (bn_a.bias + bn_b.bias) / 2)
    assert all(torch.equal(v, a.state_dict()[k]) for k, v in before.items())


def test_running_statistics_come_from_the_model_named_by_stats():
    a = calibrated_model()
    b = with_new_affine(a, stats=True)
    x = images()
    assert torch.equal(outputs(interpolate_bn(a, b, 0.0, stats="b"), x), outputs(b, x))
    assert torch.equal(interpolate_bn(a, b, 0.0, stats="b").state_dict()["bn1.num_batches_tracked"],
                       b.state_dict()["bn1.num_batches_tracked"])
    keeps_a = interpolate_bn(a, b, 0.0)  # default "a": only the rescaling moves
    assert torch.equal(keeps_a.bn1.running_var, a.bn1.running_var)
    assert not torch.equal(outputs(keeps_a, x), outputs(b, x))
    mixed = interpolate_bn(a, b, 0.25, stats="interpolate")
    assert torch.allclose(mixed.bn1.running_mean, 0.25 * a.bn1.running_mean + 0.75 * b.bn1.running_mean)
    assert torch.allclose(mixed.bn1.running_var, 0.25 * a.bn1.running_var + 0.75 * b.bn1.running_var)


def test_interpolation_refuses_models_that_differ_outside_bn(pair):
    a, b = pair
    conv = copy.deepcopy(b)
    with torch.no_grad():
        conv.layers[1][0].conv2.weight[0, 0, 0, 0] += 1e-3
    with pytest.raises(ValueError, match=r"layers\.1\.0\.conv2\.weight"):
        interpolate_bn(a, conv, 0.5)
    buffer = copy.deepcopy(b)
    buffer.normalize.mean.fill_(0.4)
    with pytest.raises(ValueError, match=r"normalize\.mean"):
        interpolate_bn(a, buffer, 0.5)
    other_arch = build_model("resnet20", num_classes=10, in_channels=1, mean=[0.5], std=[0.25])
    with pytest.raises(ValueError, match="different BN layers"):
        interpolate_bn(a, other_arch, 0.5)
    with pytest.raises(ValueError, match="stats"):
        interpolate_bn(a, b, 0.5, stats="mean")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        interpolate_bn(a, b, 1.5)


def test_cosine_similarity_of_a_model_with_itself_is_one_for_every_field(pair):
    a, b = pair
    fresh = build_model("resnet_small", num_classes=10, in_channels=1, mean=[0.5], std=[0.25])
    for model in (a, fresh):  # fresh: beta and running mean are all zero
        rows = bn_layer_table(model, copy.deepcopy(model))
        assert len(rows) == len(batch_norms(model))
        for row in rows:
            for field in ("mean", "var", "gamma", "beta"):
                assert row[f"cos_{field}"] == pytest.approx(1.0, abs=1e-12)
                assert row[f"mad_{field}"] == 0.0
    rows = bn_layer_table(a, b)  # only gamma and beta differ
    assert all(r["cos_mean"] == 1.0 and r["cos_var"] == 1.0 and r["cos_gamma"] < 1.0 for r in rows)
    assert rows[0]["layer"] == "bn1" and rows[0]["channels"] == 16


def test_rescaling_reproduces_bn_in_eval_mode(pair):
    a, b = pair
    torch.manual_seed(3)
    for _, bn in batch_norms(a):
        z = 2 * torch.randn(5, bn.num_features, 4, 4) + 0.5
        m, shift = rescaling(bn)
        with torch.no_grad():
            expected = bn.eval()(z)
        assert torch.allclose(m.view(1, -1, 1, 1) * z + shift.view(1, -1, 1, 1), expected, atol=1e-5, rtol=0)
    table = rescaling_table(a, b)
    m_a, m_b = rescaling(a.bn1)[0].double(), rescaling(b.bn1)[0].double()
    assert table[0]["m_diff"] == pytest.approx(float((m_b - m_a).mean()))
    assert table[0]["m_mean_a"] == pytest.approx(float(m_a.mean()))
    assert [r["layer"] for r in table] == list(rescaling_by_layer(a))


def test_channel_changes_detects_a_turned_off_and_a_magnified_channel(pair):
    before = pair[0]
    after = copy.deepcopy(before)
    with torch.no_grad():
        after.bn1.weight[3] = 0.0
        after.bn1.bias[3] = -1.0
        after.bn1.weight[5] *= 3.0
    rows = channel_changes(before, after, images(32))
    first = rows[0]
    assert first["layer"] == "bn1" and first["channels"] == 16
    assert first["off"] == [3] and first["n_off"] == 1
    assert first["magnified"] == [5] and first["n_magnified"] == 1
    assert first["on"] == []
    assert all(r["magnified"] == [] for r in rows[1:])
    reverse = channel_changes(after, before, images(32))[0]
    assert reverse["on"] == [3] and reverse["off"] == []


def test_logit_similarity_of_a_model_with_itself_is_one(pair):
    a, b = pair
    same = logit_similarity(a, copy.deepcopy(a), images())
    assert same == {"cosine": 1.0, "agreement": 1.0, "n": 24}
    other = logit_similarity(a, b, images())
    assert -1.0 <= other["cosine"] < 1.0 and 0.0 <= other["agreement"] <= 1.0


def test_first_block_features_are_the_first_bn_relu_activations(pair):
    a = pair[0]
    x = images(3)
    feats = first_block_features(a, x)
    with torch.no_grad():
        expected = torch.relu(a.bn1(a.conv1(a.normalize(x))))
    assert feats.shape == (3, 16, 16, 16) and torch.equal(feats, expected)
    assert first_block_features(a, x, "layers.2.0.bn2").shape == (3, 64, 4, 4)
    with pytest.raises(ValueError, match="no BN layer named"):
        first_block_features(a, x, "conv1")


def test_training_flags_and_statistics_are_restored():
    model, other = calibrated_model(), calibrated_model(seed=1)
    model.train()
    model.layers[0].eval()  # a mixed state must come back as it was, module by module
    flags = {name: m.training for name, m in model.named_modules()}
    stats = copy.deepcopy({k: v for k, v in model.state_dict().items() if "running" in k})
    x = images(8)
    channel_changes(model, other, x)
    logit_similarity(model, other, x)
    first_block_features(model, x)
    assert {name: m.training for name, m in model.named_modules()} == flags
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items())


def test_plots_write_non_empty_png_files(tmp_path, pair):
    a, b = pair
    changes = channel_changes(a, b, images(16))[0]
    x = images(2)
    paths = [tmp_path / n for n in ("params.png", "rescaling.png", "features.png", "tradeoff.png")]
    plot_bn_params_first_layer(a, b, ["a", "b"], paths[0])
    plot_rescaling_distributions({"a": rescaling_by_layer(a), "b": rescaling_by_layer(b)}, paths[1])
    plot_feature_maps(first_block_features(a, x), first_block_features(b, x), [3, 7], changes["magnified"],
                      paths[2], labels=("a", "b"))
    rows = [{"p": p, "clean": 0.9 - 0.3 * p, "robust": 0.05 + 0.4 * p, "series": "adv + std BN"}
            for p in (0.0, 0.5, 1.0)]
    plot_tradeoff(rows, paths[3])
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 2000, path
    assert not list(tmp_path.glob(".*.tmp"))
