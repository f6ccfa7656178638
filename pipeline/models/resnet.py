"""CIFAR-style ResNets (He et al., "Deep Residual Learning for Image Recognition").

``conv1`` is the stem and ``fc`` the classifier in every network, the names BN-only
fine-tuning uses to unfreeze "logits + conv1". A global average pool makes them input-size
agnostic. ``norm`` and ``act`` are the factories of ``pipeline.models.common``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from pipeline.models.common import (ActFactory, Normalize, NormFactory, conv3x3, init_weights,
                                    residual_stages)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1, *, norm: NormFactory = nn.BatchNorm2d,
                 act: ActFactory = lambda: nn.ReLU(inplace=True)):
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = norm(cout)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = norm(cout)
        self.relu = act()
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), norm(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand (x4 in ResNet-50, x2 in ResNeXt)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1, *, norm: NormFactory = nn.BatchNorm2d,
                 act: ActFactory = lambda: nn.ReLU(inplace=True), groups: int = 1, expansion: int | None = None):
        super().__init__()
        cout = width * (expansion or self.expansion)
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = norm(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = norm(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = norm(cout)
        self.relu = act()
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), norm(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Stem conv, stages of blocks (the first of each later stage halves the size), pool, fc."""

    def __init__(self, widths: Sequence[int], blocks: Sequence[int], num_classes: int, in_channels: int,
                 mean: Sequence[float], std: Sequence[float], *, block=BasicBlock,
                 norm: NormFactory = nn.BatchNorm2d, act: ActFactory = lambda: nn.ReLU(inplace=True)):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.conv1 = conv3x3(in_channels, widths[0])
        self.bn1 = norm(widths[0])
        self.relu = act()
        self.layers, cout = residual_stages(block, widths[0], widths, blocks, norm=norm, act=act)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cout, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(self.normalize(x))))
        out = self.layers(out)
        return self.fc(torch.flatten(self.pool(out), 1))


def resnet_small(width: int | None = None, **kw) -> ResNet:
    """ResNet-8: one block per stage, widths w/2w/4w (w = 16); the CPU default."""
    w = width or 16
    return ResNet((w, 2 * w, 4 * w), (1, 1, 1), **kw)


def resnet20(width: int | None = None, **kw) -> ResNet:
    """ResNet-20: three blocks per stage, widths w/2w/4w (w = 16). BN's share of the parameters
    (``bn_share``, measured): w=16 0.58%, w=32 0.29%, w=64 0.145%, w=128 0.073%; the poster's 0.15%
    is w = 64 (stages 64/128/256)."""
    w = width or 16
    return ResNet((w, 2 * w, 4 * w), (3, 3, 3), **kw)


def resnet18(**kw) -> ResNet:
    return ResNet((64, 128, 256, 512), (2, 2, 2, 2), **kw)


def resnet34(**kw) -> ResNet:
    return ResNet((64, 128, 256, 512), (3, 4, 6, 3), **kw)


def resnet50(**kw) -> ResNet:
    return ResNet((64, 128, 256, 512), (3, 4, 6, 3), block=Bottleneck, **kw)
