"""Normalization layers: finding them, and context managers that change and restore their state.

Everything here restores what it changes on exit, also when the block raises, so that no attack,
evaluation or deployment can leave a model in a different mode than it found it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def batch_norms(model: nn.Module) -> list[tuple[str, _BatchNorm]]:
    """The batch-norm modules of ``model`` with their qualified names, in forward order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, _BatchNorm)]


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
