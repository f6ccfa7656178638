"""ResNeXt-29 (32x4d), CIFAR variant (Xie et al., "Aggregated Residual Transformations for Deep
Neural Networks"): three stages of three bottleneck blocks (ResNet's, grouped) with 32 groups of width 4 (doubling per
stage), a 64-channel 3x3 stem (the RobMask paper's Table 3 network)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from pipeline.models.common import ActFactory, Normalize, NormFactory, conv3x3, init_weights
from pipeline.models.resnet import Bottleneck


class ResNeXt(nn.Module):
    def __init__(self, blocks: Sequence[int], cardinality: int, width: int, num_classes: int, in_channels: int,
                 mean: Sequence[float], std: Sequence[float], *, norm: NormFactory = nn.BatchNorm2d,
                 act: ActFactory = lambda: nn.ReLU(inplace=True)):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.conv1 = conv3x3(in_channels, 64)
        self.bn1 = norm(64)
        self.relu = act()
        cin, stages = 64, []
        for i, n in enumerate(blocks):
            stage = []
            for j in range(n):
                stage.append(Bottleneck(cin, cardinality * width, 2 if (i > 0 and j == 0) else 1, norm=norm, act=act,
                                        groups=cardinality, expansion=2))
                cin = 2 * cardinality * width
            stages.append(nn.Sequential(*stage))
            width *= 2
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(self.relu(self.bn1(self.conv1(self.normalize(x)))))
        return self.fc(torch.flatten(self.pool(out), 1))


def resnext29(**kw) -> ResNeXt:
    return ResNeXt((3, 3, 3), 32, 4, **kw)
