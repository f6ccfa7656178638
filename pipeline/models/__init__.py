"""Name -> constructor registry of the networks. Every network takes ``num_classes``,
``in_channels``, ``mean`` and ``std`` (normalization is its first layer), names its stem conv
``conv1`` and its classifier ``fc``, and is built with a norm layer and an activation of choice
(``pipeline.models.common``); methods convert the norms afterwards (``pipeline.norms``).
Saving and loading with the spec that rebuilds a network: ``pipeline.spec``."""

from __future__ import annotations

import inspect
from typing import Callable, Sequence

from torch import nn

from pipeline.models.common import ACTIVATIONS, NORMS, activation_layer, norm_layer
from pipeline.models.densenet import densenet121
from pipeline.models.madry_wrn import wrn32_10_madry
from pipeline.models.preact_resnet import preact_resnet18
from pipeline.models.resnet import resnet18, resnet20, resnet34, resnet50, resnet_small
from pipeline.models.resnext import resnext29
from pipeline.models.wide_resnet import wrn16_8, wrn28_10, wrn32_10, wrn34_10

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "resnet_small": resnet_small,
    "resnet20": resnet20,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "preact_resnet18": preact_resnet18,
    "wrn16_8": wrn16_8,
    "wrn28_10": wrn28_10,
    "wrn32_10": wrn32_10,
    "wrn32_10_madry": wrn32_10_madry,
    "wrn34_10": wrn34_10,
    "densenet121": densenet121,
    "resnext29": resnext29,
}

__all__ = ["ACTIVATIONS", "ARCHITECTURES", "NORMS", "bn_share", "build_model"]


def build_model(arch: str, *, num_classes: int, in_channels: int, mean: Sequence[float], std: Sequence[float],
                norm: str = "batch", groups: int = 32, activation: str = "relu", softplus_beta: float = 10.0,
                width: int | None = None) -> nn.Module:
    if arch not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    make = ARCHITECTURES[arch]
    kw = dict(num_classes=num_classes, in_channels=in_channels, mean=mean, std=std,
              norm=norm_layer(norm, groups), act=activation_layer(activation, softplus_beta))
    if width is not None:
        if "width" not in inspect.signature(make).parameters:
            raise ValueError(f"width: architecture {arch!r} has no width option")
        kw["width"] = width
    return make(**kw)


def bn_share(model: nn.Module) -> float:
    """Percent of the parameters that are affine parameters of norm layers (the poster's %prms of
    BN-only training)."""
    norm = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)
    n = sum(p.numel() for m in model.modules() if isinstance(m, norm) for p in m.parameters(recurse=False))
    return 100.0 * n / sum(p.numel() for p in model.parameters())
