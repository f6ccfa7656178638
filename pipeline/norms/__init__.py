"""Norm layers: finding them, changing and restoring their state, routing and converting them.

- ``state``: ``batch_norms``, ``training_mode``, ``frozen_bn_stats``, ``running_stats``, ``ghost_batches``;
- ``routing``: ``RoutedNorm`` and ``norm_route`` (branch, strength or weights per batch or sample);
- ``multi``: multi-branch BN (AdvProp's auxiliary BN, AFA's K branches);
- ``convert``: ``convert_norms`` and ``replay``, the named conversions a checkpoint records
  (``multi``, ``select``, ``group``, ``denoise``).
"""

from pipeline.norms.convert import CONVERSIONS, convert_norms, replay
from pipeline.norms.multi import MultiBatchNorm
from pipeline.norms.routing import RoutedNorm, norm_route, routed_norms
from pipeline.norms.state import (batch_norms, frozen_bn_stats, ghost_batches, require_batch_norms, running_stats,
                                  training_mode)

__all__ = ["CONVERSIONS", "MultiBatchNorm", "RoutedNorm", "batch_norms", "convert_norms", "frozen_bn_stats",
           "ghost_batches", "norm_route", "replay", "require_batch_norms", "routed_norms", "running_stats", "training_mode"]
