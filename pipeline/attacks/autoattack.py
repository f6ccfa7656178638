"""AutoAttack (Croce and Hein, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks"): the official code from the ``pyautoattack`` package, run
against a deployed model. Its own sanity checks (randomness, dynamic defense, output range) log
warnings; they are collected and returned as flags."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import torch


@dataclass
class AutoAttackResult:
    x_adv: torch.Tensor
    flags: list[str] = field(default_factory=list)  # AutoAttack's warnings about the model


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def autoattack(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
               eps: float, version: str = "standard", batch_size: int = 500, seed: int = 0,
               attacks: list[str] | None = None, target_classes: int = 9) -> AutoAttackResult:
    """``version: custom`` runs ``attacks`` only, configured as in the standard version (one
    restart for APGD-CE, nine target classes for APGD-T and FAB-T), so each is exactly that
    component of standard AutoAttack; ``target_classes`` < 9 runs the targeted ones against the
    top that many classes only (a cheaper, weaker attack)."""
    from pyautoattack import AutoAttack

    adversary = AutoAttack(f, eps=eps, norm="Linf", version=version, device=x.device, seed=seed,
                           attacks=attacks if version == "custom" else None)
    if version == "custom":  # the standard version's settings of each component
        adversary.apgd.n_restarts = 1
        adversary.apgd_targeted.n_target_classes = target_classes
        adversary.apgd_targeted.n_restarts = 1
        adversary.fab.n_restarts = 1
        adversary.fab.n_target_classes = target_classes
        adversary.square.n_queries = 5000
    logger = logging.getLogger("auto-attack")
    handler = _Collect()
    logger.addHandler(handler)
    try:
        x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=batch_size)
    finally:
        logger.removeHandler(handler)
    return AutoAttackResult(x_adv.detach(), handler.messages)
