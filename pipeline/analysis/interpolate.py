"""Linear interpolation of two BN "maskings" on otherwise identical networks.

"Adversarial Masking: Towards Understanding Robustness Trade-off for Generalization" (Table 2)
fine-tunes only the BN layers of a trained network and then evaluates
gamma = p * gamma_a + (1 - p) * gamma_b, beta likewise, to move along the clean/robust trade-off
without retraining. That is only meaningful when the two networks share every other weight, so
:func:`interpolate_bn` checks this before mixing anything.
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import torch
from torch import nn

from pipeline.norms import batch_norms

Stats = Literal["a", "b", "interpolate"]
STATS = ("a", "b", "interpolate")
AFFINE = ("weight", "bias")
RUNNING = ("running_mean", "running_var")


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer by qualified name (buffers include non-persistent ones)."""
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


def bn_tensor_names(model: nn.Module) -> set[str]:
    """Qualified names of the parameters and buffers owned by BN layers."""
    names = set()
    for prefix, bn in batch_norms(model):
        own = [n for n, _ in bn.named_parameters(recurse=False)] + [n for n, _ in bn.named_buffers(recurse=False)]
        names.update(f"{prefix}.{n}" if prefix else n for n in own)
    return names


def check_differ_only_in_bn(model_a: nn.Module, model_b: nn.Module) -> None:
    """Raise ValueError naming the first non-BN tensor (or BN layout) in which the two differ.

    Mixing BN parameters of unrelated networks would mix maskings of different features; the
    trade-off curve of the paper assumes both share every convolution and the classifier.
    """
    bn_a, bn_b = batch_norms(model_a), batch_norms(model_b)
    if [n for n, _ in bn_a] != [n for n, _ in bn_b]:
        raise ValueError("the two models have different BN layers: "
                         f"{[n for n, _ in bn_a]} vs {[n for n, _ in bn_b]}")
    ta, tb = _tensors(model_a), _tensors(model_b)
    if list(ta) != list(tb):
        first = next(n for n in [*ta, *tb] if n not in ta or n not in tb)
        raise ValueError(f"the two models have different tensors: {first!r} is in only one of them")
    bn_names = bn_tensor_names(model_a)
    for name, a in ta.items():
        b = tb[name]
        if a.shape != b.shape:
            raise ValueError(f"{name!r} has shape {tuple(a.shape)} in model_a but {tuple(b.shape)} in model_b")
        if name not in bn_names and not torch.equal(a.detach().cpu(), b.detach().cpu()):
            raise ValueError(f"the models differ outside BN: {name!r} is not identical; "
                             "BN interpolation needs two networks that share every non-BN weight")


def _mix(dst: torch.Tensor | None, a: torch.Tensor | None, b: torch.Tensor | None, p: float) -> None:
    """dst <- p * a + (1 - p) * b, written so that p = 1 gives a and p = 0 gives b bit for bit."""
    if dst is None:
        return
    dst.copy_(p * a.detach() + (1.0 - p) * b.detach().to(a.device))


@torch.no_grad()
def interpolate_bn(model_a: nn.Module, model_b: nn.Module, p: float, stats: Stats = "a") -> nn.Module:
    """A deep copy of ``model_a`` with BN affine parameters p * (model_a) + (1 - p) * (model_b).

    ``stats`` says which running statistics the copy normalizes with:
    - ``"a"`` (the function's default): model_a's own, so only the masking moves. The paper mixes
      the rescaling (gamma, beta) and does not say which statistics the mix normalizes with; the
      pipeline reports this reading and ``"interpolate"`` side by side (``interpolate.stats``).
    - ``"b"``: model_b's (with ``num_batches_tracked``), so that p = 0 reproduces model_b exactly
      even when its statistics differ (e.g. BN fine-tuning that also re-estimated them).
    - ``"interpolate"``: running mean and running variance mixed with the same p (a blend of the
      two estimates, not the variance of a mixture of the two activation distributions).
    Everything outside BN comes from model_a; the models must agree on it exactly.
    """
    if stats not in STATS:
        raise ValueError(f"unknown stats {stats!r}; known: {', '.join(STATS)}")
    if not (isinstance(p, (int, float)) and math.isfinite(p) and 0.0 <= p <= 1.0):
        raise ValueError(f"p must be a number in [0, 1] (a combination of the two maskings), got {p!r}")
    check_differ_only_in_bn(model_a, model_b)
    p = float(p)
    mixed = copy.deepcopy(model_a)
    pairs = zip(batch_norms(mixed), batch_norms(model_a), batch_norms(model_b))
    for (_, out), (_, bn_a), (_, bn_b) in pairs:
        for name in AFFINE:
            _mix(getattr(out, name), getattr(bn_a, name), getattr(bn_b, name), p)
        if out.running_mean is None:
            continue
        if stats == "b":
            for name in (*RUNNING, "num_batches_tracked"):
                getattr(out, name).copy_(getattr(bn_b, name))
        elif stats == "interpolate":
            for name in RUNNING:
                _mix(getattr(out, name), getattr(bn_a, name), getattr(bn_b, name), p)
    return mixed


def monotone_violations(values: list[float], tolerance: float = 0.0) -> int:
    """Steps where a series that should move one way moves back by more than ``tolerance``."""
    direction = 1 if values[-1] >= values[0] else -1
    return sum(direction * (b - a) < -tolerance for a, b in zip(values, values[1:]))
