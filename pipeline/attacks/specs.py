"""The attack entries of ``evaluate.attacks`` in params.yaml: one typed spec per attack."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from pipeline.schema import PositiveInt, Section

At = Literal["grid", "threat"]  # run over the whole eps grid, or only at the threat eps


class AttackEntry(Section):
    """What every attack entry has: ``label`` names a variant (PGD-20 beside PGD-100: the label is
    its column and key in metrics, default the attack's name); ``alone`` also runs a threat-eps
    attack on the samples the cascade skipped, so that its own column is exact."""

    label: str | None = None
    alone: bool = False

    @property
    def key(self) -> str:
        return self.label or self.name


class FGSMSpec(AttackEntry):
    name: Literal["fgsm"]
    at: At = "grid"


class PGDSpec(AttackEntry):
    name: Literal["pgd"]
    at: At = "grid"
    steps: PositiveInt = 20
    rel_step_size: Annotated[float, Field(gt=0.0, le=1.0)] = 0.25  # step = rel_step_size * eps
    restarts: PositiveInt = 1
    random_start: bool = True
    loss: Literal["ce", "margin"] = "ce"


class CWLinfSpec(AttackEntry):
    """CW-Linf: PGD on the CW margin loss max_{j != y} z_j - z_y inside the L-inf ball (the "C&W"
    of L-inf papers such as AFA)."""

    name: Literal["cw_linf"]
    at: At = "threat"
    steps: PositiveInt = 30
    rel_step_size: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    restarts: PositiveInt = 1
    random_start: bool = True


class CWSpec(AttackEntry):
    """CW-L2 (Carlini and Wagner): its minimal perturbation projected onto the L-inf ball of eps
    for the accuracy at eps, and reported unbounded as the papers do (success rate, median L2)."""

    name: Literal["cw"]
    at: At = "threat"
    steps: PositiveInt = 100
    c_init: Annotated[float, Field(gt=0.0)] = 1.0
    binary_steps: PositiveInt = 1
    lr: Annotated[float, Field(gt=0.0)] = 0.01
    kappa: Annotated[float, Field(ge=0.0)] = 0.0


class DeepFoolSpec(AttackEntry):
    """DeepFool (Moosavi-Dezfooli et al.): projected onto the L-inf ball of eps for the accuracy at
    eps, and reported unbounded (success rate, median L2 of the minimal perturbation)."""

    name: Literal["deepfool"]
    at: At = "threat"
    steps: PositiveInt = 50
    overshoot: Annotated[float, Field(ge=0.0)] = 0.02


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


class TransferSpec(AttackEntry):
    """PGD crafted on the surrogate model (``evaluate.checks.surrogate``, on its population
    statistics) and scored on the evaluated deployment: a black-box transfer over the eps grid, as
    AFA's Table 3 (right) reports it. The target is never differentiated."""

    name: Literal["transfer"]
    at: At = "grid"
    steps: PositiveInt = 20
    rel_step_size: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    random_start: bool = True


class FusionAdaptiveSpec(AttackEntry):
    """AFA's adaptive attack on a model with a weight generator: PGD on
    ``a * CE(logits, y) + b * BCE(W0, 0)`` (ascent pushes the fusion weight of the clean branch,
    W0, up: the attacker steers its example to the clean BN) for each weighting ``(a, b)`` of
    the paper's seven (10:1 ... 1:10); a sample counts as robust only if every weighting fails."""

    name: Literal["afa_adaptive"]
    at: At = "threat"
    steps: PositiveInt = 50
    rel_step_size: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    weightings: Annotated[list[tuple[Annotated[float, Field(ge=0.0)], Annotated[float, Field(ge=0.0)]]],
                          Field(min_length=1)] = [(10, 1), (5, 1), (2, 1), (1, 1), (1, 2), (1, 5), (1, 10)]


AttackSpec = Annotated[FGSMSpec | PGDSpec | CWLinfSpec | CWSpec | DeepFoolSpec | AutoAttackSpec | TransferSpec
                       | FusionAdaptiveSpec, Field(discriminator="name")]


