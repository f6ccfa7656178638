"""Norm layers: finding them, changing and restoring their state, routing and converting them.

- ``state``: ``batch_norms``, ``training_mode``, ``frozen_bn_stats``, ``running_stats``, ``ghost_batches``;
- ``routing``: ``RoutedNorm`` and ``norm_route`` (branch, strength or weights per batch or sample);
- ``multi``: multi-branch BN (AdvProp's auxiliary BN, AFA's K branches);
- ``strength``: RobMask's BN rescaling from an encoding of the perturbation strength;
- ``fused``: AFA's two BN branches fused by a weight generator;
- ``convert``: ``convert_norms`` and ``replay``, the named conversions a checkpoint records
  (``multi``, ``select``, ``robmask``, ``afa``, ``group``, ``denoise``).
"""

from pipeline.norms.convert import CONVERSIONS, convert_norms, replay
from pipeline.norms.fused import FusedBatchNorm, WeightGenerator, generators
from pipeline.norms.multi import MultiBatchNorm
from pipeline.norms.routing import RoutedNorm, norm_route, routed_norms
from pipeline.norms.state import (batch_norms, frozen_bn_stats, ghost_batches, require_batch_norms, running_stats,
                                  statistics_of, training_mode)
from pipeline.norms.strength import StrengthBatchNorm

__all__ = ["CONVERSIONS", "FusedBatchNorm", "MultiBatchNorm", "RoutedNorm", "StrengthBatchNorm", "WeightGenerator",
           "batch_norms", "convert_norms", "frozen_bn_stats", "generators", "ghost_batches", "norm_route", "replay",
           "require_batch_norms", "routed_norms", "running_stats", "statistics_of", "training_mode"]
