"""Wide ResNets (Zagoruyko and Komodakis, "Wide Residual Networks"), pre-activation blocks."""

from __future__ import annotations

from functools import partial
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.common import Normalize, conv3x3, init_weights
from pipeline.models.preact_resnet import PreActBlock


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen: int, num_classes: int, in_channels: int,
                 mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = (16 * widen, 32 * widen, 64 * widen)
        self.normalize = Normalize(mean, std)
        self.conv1 = conv3x3(in_channels, 16)
        stages, cin = [], 16
        for i, width in enumerate(widths):
            layers = []
            for j in range(n):
                layers.append(PreActBlock(cin, width, stride=2 if (i > 0 and j == 0) else 1))
                cin = width
            stages.append(nn.Sequential(*layers))
        self.layers = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(cin)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(self.conv1(self.normalize(x)))
        out = F.relu(self.bn(out))
        return self.fc(torch.flatten(self.pool(out), 1))


wrn28_10 = partial(WideResNet, 28, 10)
wrn16_8 = partial(WideResNet, 16, 8)
wrn34_10 = partial(WideResNet, 34, 10)
