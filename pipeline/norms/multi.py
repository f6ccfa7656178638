"""Multi-branch BN: one ordinary ``BatchNorm2d`` per branch, picked by the route ``branch``.

Two branches are AdvProp's main and auxiliary BN ("Adversarial Examples Improve Image
Recognition"; the mixture BN of the thesis); K branches are AFA's stage I, one per attack
strength. Each branch owns its affine parameters and running statistics. ``branch`` may be one
index for the batch or one per sample; each branch then normalizes only its own samples, with
their own batch statistics in train mode (the point of a separate BN per input distribution).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from pipeline.norms.routing import RoutedNorm


class MultiBatchNorm(RoutedNorm):
    default_route = {"branch": 0}  # the main BN: a plain model(x) is the deployed clean model
    route_keys = ("branch",)

    def __init__(self, branches: list[nn.BatchNorm2d]):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    @classmethod
    def from_bn(cls, bn: nn.BatchNorm2d, k: int) -> "MultiBatchNorm":
        """``k`` copies of ``bn`` (statistics and affine parameters), as timm's split BN does."""
        if k < 2:
            raise ValueError(f"a multi-branch norm needs k >= 2 branches, got {k}")
        return cls([copy.deepcopy(bn) for _ in range(k)])

    @property
    def k(self) -> int:
        return len(self.branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.routed("branch", len(x))
        if not isinstance(branch, torch.Tensor):
            if not 0 <= branch < self.k:
                raise ValueError(f"branch {branch} out of range for {self.k} branches")
            return self.branches[branch](x)
        branch = branch.to(x.device)
        if branch.min() < 0 or branch.max() >= self.k:
            raise ValueError(f"branch indices must lie in [0, {self.k}), got {branch.unique().tolist()}")
        out = torch.empty_like(x)
        for b in branch.unique().tolist():
            rows = (branch == b).nonzero().squeeze(1)
            out[rows] = self.branches[b](x[rows])
        return out

    def extra_repr(self) -> str:
        return f"k={self.k}"
