"""Pre-activation ResNets (He et al., "Identity Mappings in Deep Residual Networks"), CIFAR
variant: PreAct-ResNet-18, and the Wide ResNets built from the same blocks."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from pipeline.models.common import ActFactory, Normalize, NormFactory, conv3x3, init_weights, residual_stages


def _relu() -> nn.Module:
    return nn.ReLU()


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1, *, norm: NormFactory = nn.BatchNorm2d,
                 act: ActFactory = _relu):
        super().__init__()
        self.bn1 = norm(cin)
        self.act1 = act()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn2 = norm(cout)
        self.act2 = act()
        self.conv2 = conv3x3(cout, cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.act2(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """Stem conv (``stem`` channels, default ``widths[0]``), stages of pre-activation blocks
    (``block``), a final norm and activation, pool, fc."""

    def __init__(self, widths: Sequence[int], blocks: Sequence[int], num_classes: int, in_channels: int,
                 mean: Sequence[float], std: Sequence[float], stem: int | None = None, *,
                 norm: NormFactory = nn.BatchNorm2d, act: ActFactory = _relu, block: type[nn.Module] = PreActBlock):
        super().__init__()
        stem = stem or widths[0]
        self.normalize = Normalize(mean, std)
        self.conv1 = conv3x3(in_channels, stem)
        self.layers, cout = residual_stages(block, stem, widths, blocks, norm=norm, act=act)
        self.bn = norm(cout)
        self.act = act()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cout, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(self.conv1(self.normalize(x)))
        out = self.act(self.bn(out))
        return self.fc(torch.flatten(self.pool(out), 1))


def preact_resnet18(**kw) -> PreActResNet:
    return PreActResNet((64, 128, 256, 512), (2, 2, 2, 2), **kw)
