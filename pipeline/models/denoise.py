"""Feature-denoising blocks (C. Xie's thesis "Towards robust representation learning and beyond",
Ch. 4; "Feature Denoising for Improving Adversarial Robustness"): ``x + conv1x1(denoise(x))``.

The 1x1 convolution starts at zero, so an inserted block is the identity until training moves it
(the official code gets the same with a zero-initialized BN after the conv; a zero conv keeps the
block free of BN, so BN analyses and BN conversions see the host network's BNs only).

Filters (``filter``):
- ``nonlocal_gaussian``: Eq. 4.1 with f = exp(theta(x_i)^T phi(x_j) / sqrt(d)), theta and phi 1x1
  embeddings to d = C/2 channels, normalized over all positions (softmax): the thesis' default;
- ``nonlocal_softmax``: the same softmax without embeddings (no extra parameters);
- ``nonlocal_dot``: f = x_i^T x_j, normalized by the number of positions N (no embedding);
- ``bilateral``: Eq. 4.2, the Gaussian (softmax) weights of ``nonlocal_softmax`` over a 3x3 patch;
- ``mean`` and ``median``: 3x3 mean and median filters per channel;
- ``null``: no denoising operation, only the 1x1 conv and the residual (the thesis' control).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FILTERS = ("nonlocal_gaussian", "nonlocal_softmax", "nonlocal_dot", "bilateral", "mean", "median", "null")


def _patches(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, 9, H, W): each position's 3x3 neighbourhood (replicate padding)."""
    b, c, h, w = x.shape
    return F.unfold(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3).view(b, c, 9, h, w)


BLOCKS = ("full", "no_conv", "no_residual")


class DenoiseBlock(nn.Module):
    """``x + conv1x1(denoise(x))``. ``block`` ablates its parts as the thesis' Table 4.1 does:
    ``no_conv`` is ``x + denoise(x)``; ``no_residual`` is ``conv1x1(denoise(x))``, its conv started
    at the identity (a zero start would cut the network in two)."""

    def __init__(self, channels: int, filter: str = "nonlocal_gaussian", block: str = "full"):
        super().__init__()
        if filter not in FILTERS:
            raise ValueError(f"unknown denoising filter {filter!r}; known: {', '.join(FILTERS)}")
        if block not in BLOCKS:
            raise ValueError(f"unknown denoising block {block!r}; known: {', '.join(BLOCKS)}")
        if filter == "null" and block != "full":
            raise ValueError(f"denoising filter 'null' is the 1x1 conv and the residual: block {block!r} "
                             f"leaves nothing to compare")
        self.filter, self.block = filter, block
        if filter == "nonlocal_gaussian":
            d = max(channels // 2, 1)
            self.theta = nn.Conv2d(channels, d, 1, bias=False)
            self.phi = nn.Conv2d(channels, d, 1, bias=False)
        self.conv = None if block == "no_conv" else nn.Conv2d(channels, channels, 1, bias=False)
        if block == "full":
            nn.init.zeros_(self.conv.weight)
        elif block == "no_residual":
            nn.init.dirac_(self.conv.weight)

    def denoise(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        f = self.filter
        if f == "null":
            return x
        if f == "mean":
            return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        if f == "median":
            return _patches(x).median(dim=2).values
        if f == "bilateral":
            p = _patches(x)
            weights = torch.softmax((x.unsqueeze(2) * p).sum(1, keepdim=True) / c ** 0.5, dim=2)
            return (weights * p).sum(2)
        flat = x.flatten(2)  # (B, C, N)
        if f == "nonlocal_dot":
            return (flat @ (flat.transpose(1, 2) @ flat) / flat.shape[2]).view_as(x)
        q, k = (self.theta(x).flatten(2), self.phi(x).flatten(2)) if f == "nonlocal_gaussian" else (flat, flat)
        attn = torch.softmax(q.transpose(1, 2) @ k / q.shape[1] ** 0.5, dim=2)  # (B, N, N): row i over j
        return (flat @ attn.transpose(1, 2)).view_as(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.denoise(x)
        if self.conv is not None:
            out = self.conv(out)
        return out if self.block == "no_residual" else x + out

    def extra_repr(self) -> str:
        return f"filter={self.filter}" + ("" if self.block == "full" else f", block={self.block}")
