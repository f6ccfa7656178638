"""A model card per evaluated model or view, in RobustBench's spirit: what was measured, under
which threat model, with which attacks and how much effort, on which deployment, from which
training recipe and code."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


class PassCounter:
    """Samples through the model's forward, split into gradient passes (forwards that track
    gradients: each is followed by a backward in an attack) and prediction-only passes."""

    def __init__(self) -> None:
        self.gradient = 0
        self.forward_only = 0

    def __call__(self, module: nn.Module, inputs: tuple) -> None:
        n = len(inputs[0])
        if torch.is_grad_enabled() and inputs[0].requires_grad:
            self.gradient += n
        else:
            self.forward_only += n


@contextmanager
def counting_passes(model: nn.Module) -> Iterator[PassCounter]:
    counter = PassCounter()
    handle = model.register_forward_pre_hook(counter)
    try:
        yield counter
    finally:
        handle.remove()


def _attack_settings(spec) -> dict:
    return {k: v for k, v in spec.model_dump().items() if v is not None}


def _route(route: dict | None) -> dict:
    return {k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in (route or {}).items()}


def _epochs(params, step: dict) -> int | None:
    """The epochs of a training step, from the entry of the model it trained (``stage@GROUP/NAME``)."""
    name = str(step.get("stage", "")).rpartition("/")[2]
    try:
        return params.training(name).epochs
    except (KeyError, AttributeError):
        return None


def masking_summary(metrics: dict, tier: str, crafted_on: dict | None) -> dict:
    """Whether the gradient-masking checks ran, and if not why: a ``suspect`` of None means that
    none ran, never that none flagged."""
    ran = metrics.get("suspect") is not None
    why = None if ran else ("a transfer: its source view is checked" if crafted_on else
                            f"{tier} tier" if tier != "full" else "checks disabled")
    return {"ran": ran, "not_run_because": why, "suspect": metrics.get("suspect"),
            "flags": (metrics.get("checks") or {}).get("flags", [])}


def build_card(name: str, model_name: str, metrics: dict, params, spec: dict, deployment: dict,
               passes: PassCounter, commit: str | None, run_ref: dict | None, *, cfg=None,
               crafted_on: dict | None = None, model_ref: dict | None = None,
               fusion: tuple[int, int] | None = None) -> dict:
    """``cfg``: the evaluate settings the row ran with (its tier's); ``crafted_on``: the
    deployment a transfer view's attacks were crafted on; ``model_ref``: the scored model's
    ``mlflow_run.json`` (its registered version and training run); ``fusion``: (BNs its weight
    generator drives, fused BNs) of an AFA stage-II model."""
    cfg = cfg or params.evaluate
    n = metrics["n_samples"]
    attacks = [a.key for a in cfg.attack_list]
    tier = metrics.get("tier", "full")
    model_ref = model_ref or {}
    return {
        "name": name,
        "model": model_name,
        "model_uri": model_ref.get("model_uri"),
        "training_run": model_ref.get("run_id"),
        "threat_model": {"norm": "Linf", "eps": cfg.threat, "eps_255": round(cfg.threat * 255, 3)},
        "dataset": params.data.dataset,
        "n_test_samples": n,
        "clean": metrics["clean"],
        "autoattack": metrics.get("autoattack"),
        "worst_case": metrics["worst_case"],
        "ci95": metrics.get("ci95"),
        "per_attack_cumulative": {a: metrics.get(a) for a in attacks},
        "per_attack_alone": {a: metrics.get(f"{a}_alone") for a in attacks},
        "attacks": [_attack_settings(a) for a in cfg.attack_list],
        "cascade": cfg.cascade,
        "deployment": {"mode": deployment.get("mode", "eval"), "route": _route(deployment.get("route"))},
        "crafted_on": None if crafted_on is None else {"mode": crafted_on.get("mode", "eval"),
                                                       "route": _route(crafted_on.get("route"))},
        "tier": tier,
        "passes_per_test_image": {"gradient": round(passes.gradient / n, 1), "forward_only": round(passes.forward_only / n, 1)},
        "masking_checks": masking_summary(metrics, tier, crafted_on),
        "fusion": None if fusion is None else {"driven": fusion[0], "fused": fusion[1]},
        "training": {"architecture": {"arch": spec.get("arch"), **spec.get("options", {})},
                     "conversions": spec.get("conversions", []),
                     "steps": [{**step, "epochs": _epochs(params, step)} for step in spec.get("steps", [])]},
        "git_commit": commit,
        "mlflow_run": (run_ref or {}).get("run_id"),
    }


def fmt(value) -> str:
    """A setting as a person writes it: ``0.1``, ``yes``, ``apgd-ce, apgd-t``, never a repr."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    if isinstance(value, dict):
        return settings(value) or "none"
    return str(value)


def settings(d: dict, skip: tuple[str, ...] = ()) -> str:
    """``key value`` pairs of the set entries of ``d`` (None and False left out)."""
    return ", ".join(f"{k} {fmt(v)}" if v is not True else k for k, v in d.items()
                     if k not in skip and v is not None and v is not False and v != {} and v != [])


def deployment_text(deployment: dict) -> str:
    route = settings(deployment.get("route") or {})
    return f"{deployment.get('mode', 'eval')} mode" + (f", route {route}" if route else "")


def attack_text(attack: dict) -> str:
    """``pgd at the grid eps: steps 50, ...``; a labelled attack is named by its label."""
    name = attack["name"] if not attack.get("label") else f"{attack['label']} ({attack['name']})"
    where = {"grid": "at each eps", "threat": "at the threat eps"}.get(attack.get("at"), "")
    rest = settings(attack, skip=("name", "label", "at"))
    return " ".join(p for p in (name, where) if p) + (f": {rest}" if rest else "")


def step_text(step: dict) -> str:
    """A training step: its stage, method and options, its attack's eps and steps, its epochs."""
    parts = [step["method"] + (f" ({settings(step['options'])})" if settings(step.get("options") or {}) else "")]
    attack = step.get("attack")
    if attack:
        eps = attack.get("eps")
        parts.append(f"PGD-{attack.get('steps')}" + (f" at eps {eps:.4f} ({eps * 255:g}/255)" if eps is not None else ""))
    if step.get("trainable", "all") != "all":
        parts.append(f"trains {step['trainable']}")
    if step.get("epochs") is not None:
        parts.append(f"{step['epochs']} epoch{'' if step['epochs'] == 1 else 's'}")
    if step.get("amp"):
        parts.append("bf16 autocast on CUDA (none of the papers trains with it)")
    return f"{step['stage']}: " + ", ".join(parts)


def masking_text(checks: dict) -> str:
    if not checks.get("ran", checks.get("suspect") is not None):
        return f"not run ({checks.get('not_run_because') or 'none ran'})"
    return "SUSPECT: " + "; ".join(checks["flags"]) if checks["suspect"] else "ran, no flag"


def fusion_text(fusion: dict) -> str:
    driven, fused = fusion["driven"], fusion["fused"]
    rest = "" if driven == fused else f"; the {fused - driven} before it run a fixed weight (option `before`)"
    return f"- Fusion (AFA): the weight generator drives {driven} of the {fused} BNs{rest}"


def card_markdown(card: dict) -> str:
    def pct(v):
        return "—" if v is None else f"{100 * v:.1f}%"

    ci = (card.get("ci95") or {}).get("worst_case")
    training = card["training"]
    arch = training["architecture"]
    conversions = "; ".join(f"{c.get('kind')}" + (f" ({settings(c, skip=('kind',))})" if settings(c, skip=("kind",)) else "")
                            for c in training["conversions"]) or "none"
    registered = (f"; MLflow model `{card['model_uri']}`" if card.get("model_uri") else "") + (
        f" (training run {card['training_run']})" if card.get("training_run") else "")
    lines = [
        f"# Model card: {card['name']}",
        "",
        f"- Model: `{card['model']}` ({arch.get('arch')}{', ' + settings(arch, skip=('arch',)) if settings(arch, skip=('arch',)) else ''}); "
        f"conversions: {conversions}{registered}",
        "- Training: " + ("; ".join(step_text(s) for s in training["steps"]) or "not recorded"),
        f"- Deployment: {deployment_text(card['deployment'])}"
        + (f"; attacks crafted on {deployment_text(card['crafted_on'])} (a transfer)" if card.get("crafted_on") else ""),
        f"- Evaluation tier: {card.get('tier', 'full')}",
        f"- Threat model: L-inf, eps {card['threat_model']['eps']:.4f} ({card['threat_model']['eps_255']:g}/255), "
        f"on {card['n_test_samples']} test images of `{card['dataset']}`",
        f"- Clean accuracy: {pct(card['clean'])}; AutoAttack: {pct(card['autoattack'])}; worst case over the suite: "
        f"{pct(card['worst_case'])}" + (f" (95% CI {100 * ci[0]:.1f}-{100 * ci[1]:.1f}%)" if ci else ""),
        f"- Attacks{' (cascade)' if card['cascade'] else ''}: " + "; ".join(attack_text(a) for a in card["attacks"]),
        f"- Effort: {card['passes_per_test_image']['gradient']} gradient passes and "
        f"{card['passes_per_test_image']['forward_only']} prediction passes per test image",
        f"- Masking checks: {masking_text(card['masking_checks'])}",
        *([fusion_text(card["fusion"])] if card.get("fusion") else []),
        f"- Code: git {card['git_commit'] or 'unknown'}; evaluation's MLflow run {card['mlflow_run'] or '—'}",
        "",
    ]
    return "\n".join(lines)
