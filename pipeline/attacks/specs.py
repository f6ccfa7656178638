"""The attack entries of ``evaluate.attacks`` in params.yaml: one typed spec per attack."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from pipeline.schema import PositiveInt, Section

At = Literal["grid", "threat"]  # run over the whole eps grid, or only at the threat eps


class FGSMSpec(Section):
    name: Literal["fgsm"]
    at: At = "grid"


class PGDSpec(Section):
    name: Literal["pgd"]
    at: At = "grid"
    steps: PositiveInt = 20
    rel_step_size: Annotated[float, Field(gt=0.0, le=1.0)] = 0.25  # step = rel_step_size * eps
    restarts: PositiveInt = 1
    random_start: bool = True
    loss: Literal["ce", "margin"] = "ce"


class CWSpec(Section):
    """CW-L2 (Carlini and Wagner), its perturbation projected onto the L-inf ball of eps."""

    name: Literal["cw"]
    at: At = "threat"
    steps: PositiveInt = 100
    c_init: Annotated[float, Field(gt=0.0)] = 1.0
    binary_steps: PositiveInt = 1
    lr: Annotated[float, Field(gt=0.0)] = 0.01
    kappa: Annotated[float, Field(ge=0.0)] = 0.0


class DeepFoolSpec(Section):
    """DeepFool (Moosavi-Dezfooli et al.), projected onto the L-inf ball of eps."""

    name: Literal["deepfool"]
    at: At = "threat"
    steps: PositiveInt = 50
    overshoot: Annotated[float, Field(ge=0.0)] = 0.02


class AutoAttackSpec(Section):
    name: Literal["autoattack"]
    at: At = "threat"
    version: Literal["standard", "plus", "rand"] = "standard"  # rand is used for randomized deployments


AttackSpec = Annotated[FGSMSpec | PGDSpec | CWSpec | DeepFoolSpec | AutoAttackSpec, Field(discriminator="name")]


