"""Strength-conditioned BN: RobMask's rescaling from a low-rank map of the perturbation strength
("Adversarial Masking: Towards Understanding Robustness Trade-off for Generalization", Sec. 4).

Each BN's affine parameters become rows of two ``k x C`` matrices, ``W`` (for gamma) and ``W'``
(for beta), mixed by an encoding ``u(p)`` of the strength ``p = eps / eps_max`` in [0, 1]:
``gamma = u(p) @ W``, ``beta = u(p) @ W'``. With k = 2 the paper's encoding is
``u = (1 - p) [1, 0] + p [0, 1]``; for k > 2 the same idea with k knots spread over [0, 1] (``u``
is the piecewise-linear "hat" weight of each knot, so u(p) still sums to one and the knots' rows
are exactly the masking learned for that strength).

The normalization itself keeps its running statistics in plain ``BatchNorm2d`` children without
affine parameters, shared by every strength (``stat_bins: 1``, the default: the paper's Fig. 1
finds the statistics barely move between clean and adversarial BN) or one per strength bin
(``stat_bins: n``: a sample with strength p normalizes with bin ``min(floor(p * n), n - 1)``).

Converted from a trained BN, every row of ``W`` and ``W'`` is that BN's gamma and beta and every
bin its statistics, so the network computes exactly what it did at every strength until training
moves it. The route ``strength`` (one number, or one per sample) picks p; ``default_route`` is
p = 0, the clean masking RobMask deploys for clean accuracy (its Table 3).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from pipeline.norms.routing import RoutedNorm


def encode_strength(p: torch.Tensor, k: int) -> torch.Tensor:
    """``u(p)`` for strengths ``p`` in [0, 1] (shape ``(...,)``) -> ``(..., k)``: hat weights of
    k evenly spaced knots (k = 2: ``[1 - p, p]``, the paper's encoding)."""
    knots = torch.linspace(0, 1, k, device=p.device, dtype=p.dtype)
    return (1 - (p[..., None] - knots).abs() * (k - 1)).clamp_min(0)


class StrengthBatchNorm(RoutedNorm):
    default_route = {"strength": 0.0}
    route_keys = ("strength",)

    def __init__(self, stats: list[nn.BatchNorm2d], weight: torch.Tensor, bias: torch.Tensor,
                 relu: bool = False):
        super().__init__()
        if any(s.affine for s in stats):
            raise ValueError("StrengthBatchNorm keeps its affine parameters itself; give it BNs without affine")
        self.stats = nn.ModuleList(stats)
        self.weight = nn.Parameter(weight)  # (k, C): one gamma per knot
        self.bias = nn.Parameter(bias)  # (k, C): one beta per knot
        self.relu = relu

    @classmethod
    def from_bn(cls, bn: nn.BatchNorm2d, rank: int = 2, stat_bins: int = 1, relu: bool = False,
                init_std: float = 0.0) -> "StrengthBatchNorm":
        if rank < 2:
            raise ValueError(f"RobMask needs rank >= 2 (one row for eps 0, one for eps_max), got {rank}")
        if stat_bins < 1:
            raise ValueError(f"stat_bins must be >= 1, got {stat_bins}")
        stats = copy.deepcopy(bn)
        stats.affine, stats.weight, stats.bias = False, None, None
        c = bn.num_features
        gamma = bn.weight.detach() if bn.affine else torch.ones(c, device=bn.running_mean.device)
        beta = bn.bias.detach() if bn.affine else torch.zeros(c, device=bn.running_mean.device)
        weight, bias = gamma.repeat(rank, 1).clone(), beta.repeat(rank, 1).clone()
        if init_std:  # break the rows' symmetry beyond the first (the clean masking stays the BN's)
            weight[1:] += init_std * torch.randn_like(weight[1:])
        return cls([copy.deepcopy(stats) for _ in range(stat_bins)], weight, bias, relu)

    @property
    def rank(self) -> int:
        return self.weight.shape[0]

    def affine_parameters(self) -> list[nn.Parameter]:
        return [self.weight, self.bias]

    def masking(self, p: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """gamma and beta at strength ``p``: ``(C,)`` each for one number, ``(B, C)`` for one per sample."""
        p = torch.as_tensor(p, dtype=self.weight.dtype, device=self.weight.device)
        if ((p < 0) | (p > 1)).any():
            raise ValueError(f"strength must lie in [0, 1], got {p.min().item()}..{p.max().item()}")
        u = encode_strength(p, self.rank)
        gamma, beta = u @ self.weight, u @ self.bias
        return (torch.relu(gamma) if self.relu else gamma), beta

    def _normalize(self, x: torch.Tensor, p) -> torch.Tensor:
        n = len(self.stats)
        if n == 1:
            return self.stats[0](x)
        p = torch.as_tensor(p, device=x.device)
        bins = (p * n).floor().long().clamp_(0, n - 1)
        if bins.dim() == 0:
            return self.stats[int(bins)](x)
        out = torch.empty_like(x)
        for b in bins.unique().tolist():
            rows = (bins == b).nonzero().squeeze(1)
            out[rows] = self.stats[b](x[rows])
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.routed("strength", len(x))
        gamma, beta = self.masking(p)
        shape = (-1, x.shape[1]) + (1,) * (x.dim() - 2) if gamma.dim() == 2 else (1, -1) + (1,) * (x.dim() - 2)
        return self._normalize(x, p) * gamma.reshape(shape) + beta.reshape(shape)

    def extra_repr(self) -> str:
        return f"rank={self.rank}, stat_bins={len(self.stats)}, relu={self.relu}"
