"""Name -> constructor registry of the networks. Every network takes ``num_classes``,
``in_channels``, ``mean`` and ``std`` (normalization is its first layer) and uses plain
``nn.BatchNorm2d``; methods convert the norms afterwards (``pipeline.norms``)."""

from __future__ import annotations

from typing import Callable, Sequence

from torch import nn

from pipeline.models.preact_resnet import preact_resnet18
from pipeline.models.resnet import resnet18, resnet20, resnet_small
from pipeline.models.wide_resnet import wrn16_8, wrn28_10, wrn34_10

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "resnet_small": resnet_small,
    "resnet20": resnet20,
    "resnet18": resnet18,
    "preact_resnet18": preact_resnet18,
    "wrn16_8": wrn16_8,
    "wrn28_10": wrn28_10,
    "wrn34_10": wrn34_10,
}


def build_model(arch: str, *, num_classes: int, in_channels: int,
                mean: Sequence[float], std: Sequence[float]) -> nn.Module:
    if arch not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[arch](num_classes=num_classes, in_channels=in_channels, mean=mean, std=std)


def save_model(path, model: nn.Module, *, arch: str, num_classes: int, in_channels: int,
               mean: Sequence[float], std: Sequence[float], **extra) -> None:
    """A state dict plus what rebuilds the network: plain data only, loadable with weights_only."""
    from pipeline.io import save_checkpoint

    spec = {"arch": arch, "num_classes": num_classes, "in_channels": in_channels,
            "mean": list(map(float, mean)), "std": list(map(float, std)), **extra}
    save_checkpoint(path, {"spec": spec, "state_dict": model.state_dict()})


def load_model(path, map_location="cpu") -> tuple[nn.Module, dict]:
    """Rebuild a network saved by :func:`save_model`; returns it (in eval mode) and its spec."""
    from pipeline.io import CheckpointError, load_checkpoint

    state = load_checkpoint(path, map_location=map_location)
    try:
        spec = state["spec"]
        model = build_model(spec["arch"], num_classes=spec["num_classes"], in_channels=spec["in_channels"],
                            mean=spec["mean"], std=spec["std"])
        model.load_state_dict(state["state_dict"])
    except (KeyError, TypeError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(f"{path}: not a model checkpoint of this pipeline ({type(err).__name__}: {first})") from None
    return model.to(map_location).eval(), spec
