"""Madry et al.'s CIFAR-10 network ("Towards Deep Learning Models Resistant to Adversarial
Attacks", the model of their cifar10_challenge), the norm-shaping paper's WRN-32-10: a
pre-activation wide ResNet that differs from ``wrn32_10`` in three places, each kept here:

- its input is standardized per image (TensorFlow's ``per_image_standardization``: each image
  minus its mean, over the larger of its standard deviation and 1/sqrt(its element count)), not
  with the data set's mean and std;
- a shortcut between widths is parameter-free: average pooling by the stride, then zero channels
  padded on both sides (``wrn32_10`` uses a strided 1x1 convolution);
- its activation is leaky ReLU with slope 0.1 (``activation: leaky_relu`` in the model section);
  only the first block of the network activates before its shortcut branches off.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.common import ActFactory, NormFactory, conv3x3, init_weights


class PerImageStandardize(nn.Module):
    """(x - mean(x)) / max(std(x), 1/sqrt(N)) per image, over all N of its pixels and channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        mean = flat.mean(1)
        std = flat.std(1, unbiased=False).clamp_min(flat.shape[1] ** -0.5)
        return (x - mean.view(-1, 1, 1, 1)) / std.view(-1, 1, 1, 1)


class MadryBlock(nn.Module):
    """Norm, activation, conv (stride), norm, activation, conv; the shortcut is the input (or, for
    the network's first block, the activated input), average-pooled by the stride and zero-padded
    to the output width when the width changes."""

    def __init__(self, cin: int, cout: int, stride: int = 1, *, norm: NormFactory, act: ActFactory,
                 activate_before_residual: bool = False):
        super().__init__()
        self.bn1, self.act1 = norm(cin), act()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn2, self.act2 = norm(cout), act()
        self.conv2 = conv3x3(cout, cout)
        self.stride, self.extra = stride, cout - cin
        self.activate_before_residual = activate_before_residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(x))
        shortcut = out if self.activate_before_residual else x
        out = self.conv2(self.act2(self.bn2(self.conv1(out))))
        if self.extra:
            if self.stride > 1:
                shortcut = F.avg_pool2d(shortcut, self.stride, self.stride)
            shortcut = F.pad(shortcut, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        return out + shortcut


class MadryWideResNet(nn.Module):
    def __init__(self, widths: Sequence[int], blocks: int, num_classes: int, in_channels: int,
                 mean: Sequence[float], std: Sequence[float], stem: int = 16, *,
                 norm: NormFactory = nn.BatchNorm2d, act: ActFactory = lambda: nn.LeakyReLU(0.1)):
        super().__init__()
        del mean, std  # per-image standardization takes the place of the data set's statistics
        self.normalize = PerImageStandardize()
        self.conv1 = conv3x3(in_channels, stem)
        stages, cin = [], stem
        for i, width in enumerate(widths):
            stages.append(nn.Sequential(*(
                MadryBlock(cin if j == 0 else width, width, stride=2 if (i > 0 and j == 0) else 1, norm=norm, act=act,
                           activate_before_residual=(i == 0 and j == 0)) for j in range(blocks))))
            cin = width
        self.layers = nn.Sequential(*stages)
        self.bn = norm(cin)
        self.act = act()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(self.conv1(self.normalize(x)))
        out = self.act(self.bn(out))
        return self.fc(torch.flatten(self.pool(out), 1))


def wrn32_10_madry(**kw) -> MadryWideResNet:
    """W32-10 as Madry et al. built it: five blocks per stage, widths 160/320/640 after a
    16-channel stem."""
    return MadryWideResNet((160, 320, 640), 5, **kw)
