"""The catalog over a validated params file: every trained model, evaluated target and analysis by
name, and what each is built from (group, training entry, architecture, conversions, branches)."""

from __future__ import annotations

from typing import Any

from pipeline.config.sections import (EvaluateConfig, FinetuneConfig, FinetuneGroup, ModelConfig,
                                      PretrainGroup, Target, TrainConfig)
from pipeline.methods import METHODS


class Catalog:
    """Look-ups by name, mixed into :class:`pipeline.config.params.Params` (which holds the
    sections they read: ``pretrain``, ``finetune``, ``evaluations``, ``analyses``, ``evaluate``)."""

    @property
    def groups(self) -> dict[str, PretrainGroup | FinetuneGroup]:
        return {**self.pretrain, **self.finetune}

    @property
    def trained(self) -> dict[str, tuple[str, TrainConfig]]:
        """Every trained model: name -> (its group, its training entry)."""
        return {name: (group, cfg) for group, g in self.groups.items() for name, cfg in g.models.items()}

    @property
    def model_names(self) -> list[str]:
        return list(self.trained)

    def group_of(self, name: str) -> str:
        return self.trained[name][0]

    def model_path(self, name: str) -> str:
        """GROUP/NAME: where the model lives under models/."""
        return f"{self.group_of(name)}/{name}"

    def training(self, name: str) -> TrainConfig:
        return self.trained[name][1]

    def is_finetune(self, name: str) -> bool:
        return self.group_of(name) in self.finetune

    def start_of(self, name: str) -> str | None:
        cfg = self.training(name)
        return cfg.start if isinstance(cfg, FinetuneConfig) else None

    def architecture(self, name: str) -> ModelConfig:
        """The architecture a trained model ``name`` has (a fine-tune: its first ancestor's)."""
        while (start := self.start_of(name)) is not None:
            name = start
        return self.training(name).model or self.model

    def conversions(self, name: str) -> list[dict]:
        """The conversions trained model ``name`` is built with, as its spec records them: its
        architecture's blocks and its method's, after its start model's for a fine-tune (one the
        start has already is not applied twice)."""
        start, cfg = self.start_of(name), self.training(name)
        done = self.architecture(name).conversions() if start is None else self.conversions(start)
        return [*done, *(c for c in METHODS[cfg.method].conversions(cfg) if c not in done)]

    def branches_of(self, name: str) -> int:
        """How many BN branches a route's ``branch`` picks from in model ``name`` (0: none)."""
        k = 0
        for c in self.conversions(name):
            if c["kind"] == "multi":
                k = c["k"]
            elif c["kind"] == "select" and k:
                k = len(c["branches"]) if len(c["branches"]) > 1 else 0  # one branch left: plain BN
            elif c["kind"] in ("afa", "robmask", "group"):  # fused, strength and group norms route otherwise
                k = 0
        return k

    def check_branch(self, where: str, model: str, values: Any) -> None:
        """A route's or a dial's ``branch`` values (one, or one per sample) must be branches of ``model``."""
        k = self.branches_of(model)
        for v in values if isinstance(values, list) else [values]:
            if not (float(v).is_integer() and 0 <= v < k):
                has = f"has {k} BN branches (0 to {k - 1})" if k else "has no multi-branch BN"
                raise ValueError(f"{where}: {v:g} is not a branch: model {model!r} {has}")

    @property
    def targets(self) -> dict[str, Target]:
        """Every evaluated model and view, in plan order: name -> where and how it is evaluated."""
        out: dict[str, Target] = {}
        for group, plan in self.evaluations.items():
            for tier in ("full", "screen"):
                for name in getattr(plan, tier):
                    out[name] = Target(name=name, group=group, model=name, tier=tier)
            for name, view in plan.views.items():
                out[name] = Target(name=name, group=group, model=view.model, tier=view.tier, view=view)
        return out

    def target_path(self, name: str) -> str:
        return f"{self.targets[name].group}/{name}"

    def evaluation_config(self, name: str) -> EvaluateConfig:
        """The settings target ``name`` is evaluated with (its tier's, plus a view's extras)."""
        t = self.targets[name]
        return self.evaluate.for_view(t.tier, t.view)

    @property
    def analysis_items(self) -> dict[tuple[str, str], str]:
        """(kind, name) of every analysis -> the group whose plan lists it."""
        return {item: group for group, plan in self.analyses.items() for item in plan.items()}

    def analysis(self, kind: str, name: str):
        """The plan entry of analysis ``name`` of ``kind`` (a pair, a dial, or the model name)."""
        return self.analyses[self.analysis_items[(kind, name)]].entries(kind)[name]

    def analyses_of(self, kind: str) -> dict:
        """Every analysis of ``kind`` in any plan: name -> its plan entry."""
        return {name: self.analysis(kind, name) for k, name in self.analysis_items if k == kind}
