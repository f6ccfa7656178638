"""Pieces shared by the CIFAR-style networks."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    """Per-channel standardization as the model's first layer, so attacks work in [0, 1] pixels."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)


def residual_stages(block: Callable[..., nn.Module], cin: int, widths: Sequence[int],
                    blocks: Sequence[int]) -> tuple[nn.Sequential, int]:
    """Stages of ``blocks[i]`` blocks of width ``widths[i]``; the first block of every stage but
    the first halves the size. Returns the stages and their output width."""
    stages = []
    for i, (width, n) in enumerate(zip(widths, blocks)):
        layers = []
        for j in range(n):
            layers.append(block(cin, width, stride=2 if (i > 0 and j == 0) else 1))
            cin = width
        stages.append(nn.Sequential(*layers))
    return nn.Sequential(*stages), cin
