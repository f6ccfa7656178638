"""The ledger's vocabulary: a paper's setting, its claims, and the check of how far our setting
is from the paper's.

A claim is "A against B under a metric at the threat eps", with the paper's direction and, where
the paper prints both figures, its size. A and B are *roles* (``standard``, ``adversarial``,
``bn_params``, ...): by default the evaluated target of that name, else what params'
``ledger.roles`` maps the role to. A role that a params file does not evaluate is an error when
params load, unless ``ledger.not_run`` lists it (the claim is then shown as not run). The papers'
declarations are the modules beside this one (pipeline/papers/__init__.py lists them).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

#: what a claim may compare: clean accuracy, an attack's accuracy at the threat eps (its key in
#: params, e.g. ``pgd``: the same attack on both sides whatever their tier), or the worst case
#: over every attack run (only where both sides ran the same attacks)
METRICS = ("clean", "fgsm", "pgd", "cw_linf", "worst_case")


@dataclass(frozen=True)
class Setting:
    """Where a figure comes from. ``None``: the paper does not say, or it does not apply."""
    dataset: str
    arch: str
    epochs: int | None
    threat_eps: float
    attack: str  # the attack behind the robust figures, with its strength ("PGD-100", "AutoAttack standard")
    deployment: str  # how the models are run at inference ("population statistics", "BN+Shaping, 9 clean images")
    metric: str  # what an accuracy counts ("correct on the attacked input", "correct on clean and attacked")

    def differences(self, ours: Setting) -> list[str]:
        """Each field where ``ours`` differs, as ``field: paper's value vs ours``; eps compared to 1e-6."""
        out = []
        for f in fields(self):
            theirs, mine = getattr(self, f.name), getattr(ours, f.name)
            same = abs(theirs - mine) < 1e-6 if isinstance(theirs, float) and isinstance(mine, float) else theirs == mine
            if not same:
                out.append(f"{f.name}: {_show(theirs)} vs {_show(mine)}")
        return out

    def comparability(self, ours: Setting) -> str:
        """"same setting" when every field matches, else which fields differ."""
        diff = self.differences(ours)
        return "same setting" if not diff else "differs in " + "; ".join(diff)


def _show(value) -> str:
    if isinstance(value, float):
        return f"{value * 255:.3g}/255"
    return "unstated" if value is None else str(value)


@dataclass(frozen=True)
class Claim:
    """A is above (``direction`` +1) or below (-1) B under ``metric``, as the paper found it.
    ``paper_a`` / ``paper_b``: the paper's figures (accuracy in %) where it prints both."""
    id: str
    where: str  # "Table 1"
    text: str  # the claim in our words
    a: str  # role
    b: str  # role
    metric: str
    direction: int
    paper_a: float | None = None
    paper_b: float | None = None

    def __post_init__(self):
        if self.direction not in (1, -1):
            raise ValueError(f"claim {self.id}: direction is +1 or -1, not {self.direction!r}")
        if self.metric not in METRICS:
            raise ValueError(f"claim {self.id}: metric {self.metric!r} is not one of {METRICS}")
        if (self.paper_a is None) != (self.paper_b is None):
            raise ValueError(f"claim {self.id}: give both of the paper's figures or neither")
        if self.paper_a is not None and (self.paper_a - self.paper_b) * self.direction <= 0:
            raise ValueError(f"claim {self.id}: the paper's figures {self.paper_a} and {self.paper_b} do not go "
                             f"the claim's direction {self.direction:+d}")

    @property
    def paper_effect(self) -> float | None:
        """A - B in points, as the paper printed them."""
        return None if self.paper_a is None else round(self.paper_a - self.paper_b, 2)


@dataclass(frozen=True)
class Paper:
    key: str
    title: str
    setting: Setting
    claims: tuple[Claim, ...]

    def roles(self) -> set[str]:
        return {r for c in self.claims for r in (c.a, c.b)}
