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

from pipeline.models.common import ActFactory, NormFactory, conv3x3
from pipeline.models.preact_resnet import PreActResNet


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


class MadryWideResNet(PreActResNet):
    """A pre-activation ResNet of Madry blocks whose input is standardized per image; only the
    network's first block activates before its shortcut."""

    def __init__(self, widths: Sequence[int], blocks: int, num_classes: int, in_channels: int,
                 mean: Sequence[float], std: Sequence[float], stem: int = 16, *,
                 norm: NormFactory = nn.BatchNorm2d, act: ActFactory = lambda: nn.LeakyReLU(0.1)):
        super().__init__(widths, [blocks] * len(widths), num_classes, in_channels, mean, std, stem, norm=norm,
                         act=act, block=MadryBlock)
        self.normalize = PerImageStandardize()  # in place of the data set's mean and std
        self.layers[0][0].activate_before_residual = True


def wrn32_10_madry(**kw) -> MadryWideResNet:
    """W32-10 as Madry et al. built it: five blocks per stage, widths 160/320/640 after a
    16-channel stem."""
    return MadryWideResNet((160, 320, 640), 5, **kw)
