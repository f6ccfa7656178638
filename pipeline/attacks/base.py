"""What an attack is to the pipeline: its params entry (a spec) and one ``Attack(...)`` declaration.

An attack module declares its spec class (the keys of its entry in ``evaluate.attacks``) and an
``Attack`` saying how it runs against a deployed model, how the report names and describes it,
whether it is a minimal-perturbation attack, and its relative cost; ``pipeline.attacks.ATTACKS``
lists them. Evaluation, the report, the ledger, flows and cost estimates read that registry, so
an attack is one module plus one registry entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Callable, Literal

import torch
from pydantic import BeforeValidator, SerializeAsAny

from pipeline.schema import Section

if TYPE_CHECKING:
    from pipeline.deploy import Deployed

At = Literal["grid", "threat"]  # run over the whole eps grid, or only at the threat eps
Run = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]  # (x, y, eps) -> x_adv


class AttackEntry(Section):
    """What every attack entry has: ``label`` names a variant (PGD-20 beside PGD-100: the label is
    its column and key in metrics, default the attack's name); ``alone`` also runs a threat-eps
    attack on the samples the cascade skipped, so that its own column is exact."""

    name: str
    at: At = "threat"
    label: str | None = None
    alone: bool = False

    @property
    def key(self) -> str:
        return self.label or self.name


@dataclass
class Target:
    """What an attack runs against: ``deployed`` (the deployment it differentiates), ``eot``
    gradient samples per step for a randomized deployment, whether a sample may stop once fooled
    (``early``), the surrogate a transfer crafts on, and where AutoAttack's warnings (``flags``),
    a minimal attack's unbounded outcome per sample (``minimal``: success, L2) and the outcome of
    each part of an attack made of parts, by itself (``parts``: part -> robust per sample, in the
    order of the samples attacked) go."""

    deployed: "Deployed"
    eot: int = 1
    early: bool = True
    surrogate: "Deployed | None" = None
    flags: list[str] | None = None
    minimal: dict[str, list] | None = None
    parts: dict[str, list] | None = None  # an attack of several parts: each part's own outcome per sample


def _no_details(spec: AttackEntry) -> str:
    return ""


@dataclass(frozen=True)
class Attack:
    """An attack of ``evaluate.attacks``.

    ``build(spec, target)`` returns ``(x, y, eps) -> x_adv``. ``label`` heads its column (a
    callable of the spec where the spec decides it, e.g. AutoAttack's subsets); ``details``, its
    settings in the report's list of attacks; ``words``, its name and strength as the papers write
    it (PGD-50); ``minimal``: a minimal-perturbation attack, also reported unbounded (success rate,
    median L2); ``cost``: its time relative to one suite's PGD, for scheduling; ``surrogate``: it
    crafts on ``evaluate.checks.surrogate``."""

    name: str
    spec: type[AttackEntry]
    build: Callable[[Any, Target], Run]
    label: str | Callable[[Any], str]
    details: Callable[[Any], str] = _no_details
    words: Callable[[Any], str] | None = None
    minimal: bool = False
    cost: float = 1.0
    surrogate: bool = False

    def column(self, spec: AttackEntry) -> str:
        """The column heading of ``spec``: a label of the spec's own, else the attack's."""
        return self.label(spec) if callable(self.label) else (spec.label or self.label)

    def in_words(self, spec: AttackEntry) -> str:
        """The attack and its strength as a paper writes it (``PGD-50``), whatever the entry's label."""
        if self.words is not None:
            return self.words(spec)
        return self.label(spec) if callable(self.label) else self.label


def registered(name: str) -> Attack:
    """The registered attack ``name``; a ValueError listing the known ones otherwise."""
    from pipeline.attacks import ATTACKS

    if name not in ATTACKS:
        raise ValueError(f"name: unknown attack {name!r}; known: {', '.join(sorted(ATTACKS))}")
    return ATTACKS[name]


def attack_of(spec: AttackEntry) -> Attack:
    return registered(spec.name)


def _parse(raw: Any) -> Any:
    """An ``evaluate.attacks`` entry as its attack's spec (by ``name``); a spec passes as it is."""
    if isinstance(raw, AttackEntry):
        return raw
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise ValueError("name: each attack needs a name (e.g. name: pgd)")
    return registered(raw["name"]).spec.model_validate(raw)  # its errors keep their paths under this entry


# One attack entry of params: validated by the registered attack its ``name`` names, dumped whole.
AttackSpec = SerializeAsAny[Annotated[AttackEntry, BeforeValidator(_parse)]]
