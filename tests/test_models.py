import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from pipeline.models import ARCHITECTURES, build_model, load_model, save_model
from pipeline.io import CheckpointError

SMALL = ["resnet_small", "resnet20", "resnet18", "preact_resnet18", "wrn16_8"]


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
    assert {"resnet20", "resnet18", "preact_resnet18", "wrn28_10", "wrn16_8", "wrn34_10"} <= set(ARCHITECTURES)


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
