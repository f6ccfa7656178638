"""DenseNet-121, CIFAR variant (Huang et al., "Densely Connected Convolutional Networks"):
growth 32, dense blocks of 6/12/24/16 bottleneck layers, transitions halving channels and size,
a 3x3 stem of 2 x growth channels (the RobMask paper's Table 3 network)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from pipeline.models.common import ActFactory, Normalize, NormFactory, conv3x3, init_weights


class DenseLayer(nn.Module):
    """norm-act-conv1x1(4k)-norm-act-conv3x3(k), concatenated to its input."""

    def __init__(self, cin: int, growth: int, norm: NormFactory, act: ActFactory):
        super().__init__()
        self.bn1, self.act1 = norm(cin), act()
        self.conv1 = nn.Conv2d(cin, 4 * growth, 1, bias=False)
        self.bn2, self.act2 = norm(4 * growth), act()
        self.conv2 = conv3x3(4 * growth, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.act1(self.bn1(x)))
        out = self.conv2(self.act2(self.bn2(out)))
        return torch.cat([out, x], 1)


class Transition(nn.Sequential):
    def __init__(self, cin: int, cout: int, norm: NormFactory, act: ActFactory):
        super().__init__(norm(cin), act(), nn.Conv2d(cin, cout, 1, bias=False), nn.AvgPool2d(2))


class DenseNet(nn.Module):
    def __init__(self, blocks: Sequence[int], growth: int, num_classes: int, in_channels: int,
                 mean: Sequence[float], std: Sequence[float], *, reduction: float = 0.5,
                 norm: NormFactory = nn.BatchNorm2d, act: ActFactory = nn.ReLU):
        super().__init__()
        self.normalize = Normalize(mean, std)
        c = 2 * growth
        self.conv1 = conv3x3(in_channels, c)
        layers = []
        for i, n in enumerate(blocks):
            for _ in range(n):
                layers.append(DenseLayer(c, growth, norm, act))
                c += growth
            if i < len(blocks) - 1:
                out = int(c * reduction)
                layers.append(Transition(c, out, norm, act))
                c = out
        self.layers = nn.Sequential(*layers)
        self.bn, self.act = norm(c), act()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(self.conv1(self.normalize(x)))
        out = self.act(self.bn(out))
        return self.fc(torch.flatten(self.pool(out), 1))


def densenet121(**kw) -> DenseNet:
    return DenseNet((6, 12, 24, 16), 32, **kw)
