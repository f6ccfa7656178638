"""AutoAttack (Croce and Hein, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks"): the official code from the ``pyautoattack`` package, run
against a deployed model. Its own sanity checks (randomness, dynamic defense, output range) log
warnings; they are collected and returned as flags."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Literal

import torch
from pydantic import Field, model_validator

from pipeline.attacks.base import At, Attack, AttackEntry, Target


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


# ---------------------------------------------------------------- as an evaluation attack

APGD = Literal["apgd-ce", "apgd-t", "apgd-dlr", "fab-t", "square"]


class AutoAttackSpec(AttackEntry):
    """The official AutoAttack. ``version: custom`` runs only ``attacks`` of its components, each
    as the standard version configures it (one restart, nine target classes): e.g. APGD-CE and
    APGD-T, the cheaper tier for grids, whose figure is an upper bound on AutoAttack's and must
    carry its own ``label`` so that no table shows it as AutoAttack's. ``target_classes`` (custom
    only) gives the targeted components fewer target classes than the standard nine: each target
    is a full run of the attack, so APGD-T with 3 costs a third (its label says so)."""

    name: Literal["autoattack"]
    at: At = "threat"
    version: Literal["standard", "plus", "rand", "custom"] = "standard"  # rand is used for randomized deployments
    attacks: list[APGD] | None = None
    target_classes: int = Field(9, ge=1, le=9)

    @model_validator(mode="after")
    def _custom_needs_attacks(self) -> "AutoAttackSpec":
        if (self.version == "custom") != bool(self.attacks):
            raise ValueError("attacks: give the components to run exactly when version is custom")
        if self.version == "custom" and self.key == "autoattack":
            raise ValueError("label: a custom subset of AutoAttack needs a label of its own (e.g. apgd)")
        if self.version != "custom" and self.target_classes != 9:
            raise ValueError("target_classes: only a custom subset may change the standard version's nine")
        return self


def _run(spec: AutoAttackSpec, t: Target):
    version = "rand" if t.deployed.randomized else spec.version

    def run(x, y, eps):
        res = autoattack(t.deployed, x, y, eps=eps, version=version, batch_size=len(x), attacks=spec.attacks,
                         target_classes=spec.target_classes)
        if t.flags is not None:
            t.flags.extend(m for m in res.flags if m not in t.flags)
        return res.x_adv
    return run


def _label(spec: AutoAttackSpec) -> str:
    """A custom subset is never shown as AutoAttack's figure: its components name it."""
    if spec.version != "custom":
        return spec.label or "AutoAttack"
    targets = f", {spec.target_classes} target classes" if spec.target_classes != 9 else ""
    return "+".join(a.upper() for a in spec.attacks) + f" (of AutoAttack{targets})"


AUTOATTACK = Attack("autoattack", AutoAttackSpec, _run, _label, details=lambda a: f" ({a.version}, official code)",
                    words=lambda a: f"AutoAttack {a.version}" if a.version != "custom"
                    else "+".join(a.attacks) + " of AutoAttack")
