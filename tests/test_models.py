import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

import hashlib

from pipeline.models import ACTIVATIONS, ARCHITECTURES, bn_share, build_model
from pipeline.models.common import ReLUSoftplusGrad, SmoothReLU
from pipeline.io import CheckpointError
from pipeline.spec import load_model, make_spec
from pipeline.spec import save_model as _save

SMALL = ["resnet_small", "resnet20", "resnet18", "preact_resnet18", "wrn16_8"]
BIG = ["resnet34", "resnet50", "wrn28_10", "wrn32_10", "wrn32_10_madry", "wrn34_10", "densenet121", "resnext29"]


def save_model(path, model, **spec):
    _save(path, model, make_spec(**spec))


@pytest.mark.parametrize("arch", SMALL)
@pytest.mark.parametrize("channels,size", [(1, 16), (3, 32)])
def test_models_take_any_input_size_and_use_plain_batchnorm(arch, channels, size):
    model = build_model(arch, num_classes=7, in_channels=channels, mean=[0.5] * channels, std=[0.25] * channels)
    out = model(torch.rand(2, channels, size, size))
    assert out.shape == (2, 7)
    norms = [m for m in model.modules() if isinstance(m, (_NormBase, nn.GroupNorm, nn.LayerNorm))]
    assert norms and all(type(m) is nn.BatchNorm2d for m in norms)
    assert hasattr(model, "conv1") and hasattr(model, "fc")


def test_registry_has_the_paper_networks():
    assert set(SMALL + BIG) == set(ARCHITECTURES)


@pytest.mark.parametrize("arch", SMALL + BIG)
@pytest.mark.parametrize("size", [16, 32])
def test_every_network_runs_forward_and_backward(arch, size):
    torch.manual_seed(0)
    model = build_model(arch, num_classes=10, in_channels=3, mean=[0.5] * 3, std=[0.25] * 3)
    out = model(torch.rand(2, 3, size, size))
    assert out.shape == (2, 10)
    out.sum().backward()
    assert model.conv1.weight.grad is not None and model.fc.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("arch", SMALL + BIG)
def test_every_network_swaps_in_groupnorm_and_each_activation(arch):
    gn = build_model(arch, num_classes=10, in_channels=3, mean=[0.5] * 3, std=[0.25] * 3, norm="group")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in gn.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in gn.modules())
    kinds = {"softplus": nn.Softplus, "silu": nn.SiLU, "gelu": nn.GELU, "elu": nn.ELU, "celu": nn.CELU,
             "smoothrelu": SmoothReLU, "relu_softplus_grad": ReLUSoftplusGrad, "leaky_relu": nn.LeakyReLU}
    for name, kind in kinds.items():
        model = build_model(arch, num_classes=10, in_channels=3, mean=[0.5] * 3, std=[0.25] * 3, activation=name)
        assert any(isinstance(m, kind) for m in model.modules()) and not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert set(ACTIVATIONS) == {"relu", *kinds}


@pytest.mark.parametrize("arch", ["resnet_small", "preact_resnet18"])
@pytest.mark.parametrize("options", [{"norm": "group"}, {"activation": "softplus"}, {"activation": "gelu"}])
def test_swapped_networks_run_on_small_inputs(arch, options):
    model = build_model(arch, num_classes=10, in_channels=1, mean=[0.5], std=[0.25], **options)
    model(torch.rand(2, 1, 16, 16)).sum().backward()


def test_bn_share_of_resnet20_width_64_is_the_posters():
    model = build_model("resnet20", num_classes=10, in_channels=3, mean=[0.5] * 3, std=[0.25] * 3, width=64)
    assert [m.out_channels for m in model.layers[2].modules() if isinstance(m, nn.Conv2d)][-1] == 256
    assert abs(bn_share(model) - 0.15) <= 0.01
    widths = {w: bn_share(build_model("resnet20", num_classes=10, in_channels=3, mean=[0] * 3, std=[1] * 3, width=w))
              for w in (16, 32, 64, 128)}
    assert widths[16] > widths[32] > widths[64] > widths[128]


# sha256 of the sorted state-dict keys, taken from the networks before norm and activation options:
# old checkpoints load strictly only if the keys stay the same.
KEYS = {"resnet_small": "cc62484e4190a362", "resnet20": "cb8fd66cec9b4fee", "resnet18": "284a0f7d433f4263",
        "preact_resnet18": "21d049e6a667c041", "wrn16_8": "b4649941ffc8f5b6"}


@pytest.mark.parametrize("arch", SMALL)
def test_state_dict_keys_of_the_existing_networks_are_unchanged(arch):
    model = build_model(arch, num_classes=10, in_channels=3, mean=[0.5] * 3, std=[0.25] * 3)
    assert hashlib.sha256("\n".join(sorted(model.state_dict())).encode()).hexdigest()[:16] == KEYS[arch]


# out[:, :3] in train mode, then in eval mode, of the networks before norm and activation options
# (commit e964534), with the RNG-free weights and input of _fill and _wave below: the default
# options compute what the old networks computed for the same weights.
# float64: in float32, resnet18's training-mode output on this input is ill-conditioned (its float32
# and float64 values differ by up to 0.4), so float32 references move with the torch release.
OUTPUTS = {
    "resnet_small": ([0.228837, 0.164799, -0.226904, 0.275523, 0.184149, -0.269031],
                     [0.217774, 0.310432, -0.181535, 0.201685, 0.317388, -0.163807]),
    "resnet20": ([0.626384, -0.690823, -0.826003, -0.144926, -0.448265, 0.002445],
                 [0.087985, -0.25366, -0.184625, 0.001996, -0.288837, -0.106922]),
    "resnet18": ([-0.1438, -1.053375, -1.106843, -0.069586, 0.413987, 0.539267],
                 [0.023069, -0.161574, -0.228171, 0.02675, -0.159512, -0.229435]),
    "preact_resnet18": ([-0.955036, -0.391096, 0.480844, -0.756209, -0.114527, 0.606264],
                        [-0.534858, -0.073038, 0.433554, -0.535353, -0.073426, 0.433594]),
    "wrn16_8": ([-0.716143, -0.185073, 0.48349, -0.894713, -0.260858, 0.573211],
                [-0.534264, -0.07333, 0.432617, -0.534352, -0.073167, 0.432897]),
}


def _wave(n: int, phase: float = 0.0, step: float = 1.0) -> torch.Tensor:
    return torch.sin(torch.arange(n, dtype=torch.float64) * step + phase).float()


def _fill(model: nn.Module) -> nn.Module:
    """Deterministic weights from the sorted parameter names alone (no RNG, no init_weights)."""
    with torch.no_grad():
        for i, (name, p) in enumerate(sorted(model.named_parameters())):
            wave = _wave(p.numel(), i, 0.37).view_as(p)
            if p.dim() > 1:
                p.copy_(wave / p[0].numel() ** 0.5)
            else:
                p.copy_(0.1 * wave + (1.0 if name.endswith(".weight") else 0.0))
    return model


@pytest.mark.parametrize("arch", SMALL)
def test_default_outputs_of_the_existing_networks_are_unchanged(arch):
    model = _fill(build_model(arch, num_classes=10, in_channels=3, mean=[0.5] * 3, std=[0.25] * 3)).double()
    x = (_wave(2 * 3 * 16 * 16).view(2, 3, 16, 16) * 0.5 + 0.5).double()
    train = model(x)  # batch statistics, and one update of the running ones
    evaluated = model.eval()(x)
    want_train, want_eval = OUTPUTS[arch]
    assert torch.allclose(train[:, :3].flatten(), torch.tensor(want_train, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(evaluated[:, :3].flatten(), torch.tensor(want_eval, dtype=torch.float64), atol=1e-5)


@pytest.mark.parametrize("options, message", [
    ({"arch": "resnet99"}, "unknown architecture 'resnet99'"),
    ({"activation": "swish"}, "activation: unknown activation 'swish'"),
    ({"norm": "layer"}, "norm: unknown norm layer 'layer'"),
    ({"arch": "resnet18", "width": 32}, "width: architecture 'resnet18' has no width option"),
])
def test_bad_architecture_options_fail_with_one_line(options, message):
    kw = {"arch": "resnet_small", **options}
    with pytest.raises((ValueError, KeyError)) as err:
        build_model(kw.pop("arch"), num_classes=10, in_channels=1, mean=[0.5], std=[0.25], **kw)
    assert message in str(err.value)


def test_normalization_is_the_first_layer():
    model = build_model("resnet_small", num_classes=3, in_channels=1, mean=[0.5], std=[0.25]).eval()
    x = torch.rand(4, 1, 16, 16)
    # Shifting mean and std together with the input leaves the output unchanged.
    shifted = build_model("resnet_small", num_classes=3, in_channels=1, mean=[1.5], std=[0.25]).eval()
    shifted.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("normalize")},
                            strict=False)
    assert torch.allclose(model(x), shifted(x + 1.0), atol=1e-5)


def test_save_and_load_roundtrip(tmp_path):
    model = build_model("resnet_small", num_classes=10, in_channels=1, mean=[0.3], std=[0.4]).eval()
    save_model(tmp_path / "m.pt", model, arch="resnet_small", num_classes=10, in_channels=1, mean=[0.3], std=[0.4])
    loaded, spec = load_model(tmp_path / "m.pt")
    x = torch.rand(3, 1, 16, 16)
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in loaded.parameters() if p.dim() == 4)
    assert not all(p.is_contiguous(memory_format=torch.channels_last) for p in model.parameters() if p.dim() == 4)
    assert torch.allclose(model(x), loaded(x), atol=1e-5)  # the layout changes float rounding only
    model.to(memory_format=torch.channels_last)  # in the same layout, the same numbers
    assert torch.equal(model(x), loaded(x)) and spec["arch"] == "resnet_small"


def test_the_same_weights_give_the_same_checkpoint_bytes(tmp_path):
    # so that two builds of a model (two workers, or a rebuild) give DVC the same hash downstream
    torch.manual_seed(0)
    model = build_model("resnet_small", num_classes=10, in_channels=3, mean=[0.5] * 3, std=[0.25] * 3)
    spec = dict(arch="resnet_small", num_classes=10, in_channels=3, mean=[0.5] * 3, std=[0.25] * 3)
    for name in ("a", "b"):
        save_model(tmp_path / name / "model.pt", model, **spec)
    assert (tmp_path / "a" / "model.pt").read_bytes() == (tmp_path / "b" / "model.pt").read_bytes()


def test_load_rejects_garbage(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_model(tmp_path / "bad.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a model checkpoint"):
        load_model(tmp_path / "other.pt")


class _Boom:
    def __reduce__(self):
        import os
        return (os.system, ("touch PWNED",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"spec": _Boom()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_model(tmp_path / "evil.pt")
    assert not (tmp_path / "PWNED").exists()


def test_madrys_w32_10_standardizes_each_image_and_has_parameter_free_pooled_zero_padded_shortcuts():
    from pipeline.models.madry_wrn import MadryBlock

    torch.manual_seed(0)
    kw = dict(num_classes=10, in_channels=3, mean=[0.5] * 3, std=[0.25] * 3)
    madry = build_model("wrn32_10_madry", activation="leaky_relu", **kw).eval()
    plain = build_model("wrn32_10", **kw)
    x = torch.rand(2, 3, 32, 32)
    # per-image standardization: an image's brightness and contrast do not reach the network
    assert torch.allclose(madry(x), madry(0.5 * x + 0.2), atol=1e-4)
    flat = madry.normalize(x).flatten(1)
    assert torch.allclose(flat.mean(1), torch.zeros(2), atol=1e-5) and torch.allclose(flat.std(1, unbiased=False), torch.ones(2))
    blank = madry.normalize(torch.full((1, 3, 4, 4), 0.3))  # a constant image: std floored at 1/sqrt(N), no NaN
    assert torch.equal(blank, torch.zeros_like(blank))
    # the only parameters W32-10 has beyond Madry's are wrn32_10's three 1x1 shortcut convolutions
    n = lambda m: sum(p.numel() for p in m.parameters())
    assert n(plain) - n(madry) == 16 * 160 + 160 * 320 + 320 * 640
    blocks = [m for m in madry.modules() if isinstance(m, MadryBlock)]
    assert len(blocks) == 15 and [b.activate_before_residual for b in blocks].count(True) == 1
    assert all(type(m) is nn.LeakyReLU and m.negative_slope == 0.1 for m in madry.modules() if "ReLU" in type(m).__name__)
    block = blocks[5]  # the first of the second stage: 160 -> 320 channels, stride 2
    with torch.no_grad():
        for conv in (block.conv1, block.conv2):
            conv.weight.zero_()
        h = torch.randn(1, 160, 8, 8)
        out = block(h)  # with the residual branch at zero, the output is the shortcut alone
    pooled = torch.nn.functional.avg_pool2d(h, 2)
    assert out.shape == (1, 320, 4, 4) and torch.equal(out[:, 80:240], pooled)
    assert not out[:, :80].any() and not out[:, 240:].any()
