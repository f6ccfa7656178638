"""Finding normalization layers, and context managers that change and restore their state.

Everything here restores what it changes on exit, also when the block raises, so that no attack,
evaluation or deployment can leave a model in a different mode than it found it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def batch_norms(model: nn.Module) -> list[tuple[str, _BatchNorm]]:
    """The batch-norm modules of ``model`` with their qualified names, in forward order.

    Routed norms keep their statistics in plain ``BatchNorm2d`` children, so these are found too
    (named ``...bn.branches.1`` and the like)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, _BatchNorm)]


def require_batch_norms(model: nn.Module, why: str) -> list[tuple[str, _BatchNorm]]:
    """:func:`batch_norms`, refusing a model that has none (GroupNorm, say): ``why`` names what
    needed them, so the error says what cannot be done instead of doing nothing."""
    found = batch_norms(model)
    if not found:
        kinds = sorted({type(m).__name__ for m in model.modules() if "Norm" in type(m).__name__}) or ["no norm layer"]
        raise ValueError(f"{why} needs BatchNorm layers; the model has none ({', '.join(kinds)})")
    return found


@contextmanager
def training_mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """Put every module in train or eval mode; restore each module's own flag on exit."""
    flags = {m: m.training for m in model.modules()}
    model.train(training)
    try:
        yield model
    finally:
        for m, flag in flags.items():
            m.training = flag


@contextmanager
def running_stats(model: nn.Module, *, besides: tuple[nn.Module, ...] = ()) -> Iterator[nn.Module]:
    """Every BN normalizes with its running statistics (eval mode) and stops updating them, while
    the rest of the model keeps its mode: the thesis' consistent BN (Table 6.2), which trains
    the last epochs with BN behaving as it will at inference; AFA's stage II, whose frozen network
    keeps its statistics while its weight generator (``besides``: BNs inside these keep their
    mode) trains. Restored on exit."""
    spared = {id(m) for part in besides for m in part.modules()}
    bns = [m for _, m in batch_norms(model) if id(m) not in spared]
    flags = [m.training for m in bns]
    for m in bns:
        m.eval()
    try:
        yield model
    finally:
        for m, flag in zip(bns, flags):
            m.training = flag


@contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[nn.Module]:
    """Forward passes inside the block leave every BN's running statistics as they were.

    Batch-statistics forwards in train mode update running_mean/var as a side effect; attacks
    that craft on batch statistics (training-time PGD, batch-statistics deployments) must not.
    The block works on copies of the buffers and the originals are put back untouched, so a
    graph built inside the block can still be differentiated after it.
    """
    names = ("running_mean", "running_var", "num_batches_tracked")
    saved = [(m, [getattr(m, n) for n in names]) for _, m in batch_norms(model)
             if m.track_running_stats and m.running_mean is not None]
    for m, buffers in saved:
        for n, b in zip(names, buffers):
            setattr(m, n, b.clone())
    try:
        yield model
    finally:
        for m, buffers in saved:
            for n, b in zip(names, buffers):
                setattr(m, n, b)


@contextmanager
def statistics_of(model: nn.Module, x: torch.Tensor) -> Iterator[nn.Module]:
    """Inside the block every BN normalizes with the batch statistics ``x`` has at its input (as
    a train-mode forward of ``x`` computes them, layer by layer), whatever batch flows through:
    "the BNs of the clean samples" applied to their adversarial versions (norm shaping's first
    confounding). Running statistics and modes are restored on exit."""
    bns = [m for _, m in batch_norms(model)]
    stats: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}

    def record(module, inputs):
        dims = [0, *range(2, inputs[0].dim())]
        stats[module] = (inputs[0].mean(dims), inputs[0].var(dims, unbiased=False))

    hooks = [m.register_forward_pre_hook(record) for m in bns]
    try:
        with torch.no_grad(), training_mode(model, True), frozen_bn_stats(model):
            model(x)
    finally:
        for h in hooks:
            h.remove()
    with frozen_bn_stats(model), training_mode(model, False):
        for m in bns:
            m.running_mean, m.running_var = stats[m]
        yield model


# --------------------------------------------------------------------------------------------
# ghost batches: batch statistics computed per group of consecutive samples


def _ghost_forward(bn: _BatchNorm, group: int):
    def forward(x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        if n % group:
            raise ValueError(f"ghost batches of {group} do not divide a batch of {n}")
        g = n // group
        # Groups become channels: (g*group, C, ...) -> (group, g*C, ...), so one batch_norm call
        # normalizes every (group, channel) pair over its own samples.
        xs = x.reshape(g, group, c, *x.shape[2:]).transpose(0, 1).reshape(group, g * c, *x.shape[2:])
        weight = bn.weight.repeat(g) if bn.weight is not None else None
        bias = bn.bias.repeat(g) if bn.bias is not None else None
        out = torch.nn.functional.batch_norm(xs, None, None, weight, bias, True, 0.0, bn.eps)
        return out.reshape(group, g, c, *x.shape[2:]).transpose(0, 1).reshape(x.shape)
    return forward


@contextmanager
def ghost_batches(model: nn.Module, group: int) -> Iterator[nn.Module]:
    """Every BN normalizes each run of ``group`` consecutive samples with that run's own batch
    statistics, and leaves the running statistics alone. Norm shaping's inference (each query
    grouped with its own clean reference samples) runs many queries in one forward this way."""
    bns = [m for _, m in batch_norms(model)]
    for m in bns:
        m.forward = _ghost_forward(m, group)
    try:
        yield model
    finally:
        for m in bns:
            del m.forward
