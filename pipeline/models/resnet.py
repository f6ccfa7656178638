"""CIFAR-style ResNets (He et al., "Deep Residual Learning for Image Recognition").

``conv1`` is the stem and ``fc`` the classifier in every network, the names BN-only
fine-tuning uses to unfreeze "logits + conv1". A global average pool makes them input-size
agnostic.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from pipeline.models.common import Normalize, conv3x3, init_weights, residual_stages


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Stem conv, stages of basic blocks (the first of each later stage halves the size), pool, fc."""

    def __init__(self, widths: Sequence[int], blocks: Sequence[int], num_classes: int, in_channels: int,
                 mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.conv1 = conv3x3(in_channels, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.layers, cout = residual_stages(BasicBlock, widths[0], widths, blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cout, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(self.normalize(x))))
        out = self.layers(out)
        return self.fc(torch.flatten(self.pool(out), 1))


def resnet_small(**kw) -> ResNet:
    """ResNet-8: one block per stage, widths 16/32/64; the CPU default."""
    return ResNet((16, 32, 64), (1, 1, 1), **kw)


def resnet20(**kw) -> ResNet:
    return ResNet((16, 32, 64), (3, 3, 3), **kw)


def resnet18(**kw) -> ResNet:
    return ResNet((64, 128, 256, 512), (2, 2, 2, 2), **kw)
