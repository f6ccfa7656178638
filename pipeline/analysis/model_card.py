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


def build_card(name: str, model_name: str, metrics: dict, params, spec: dict, deployment: dict,
               passes: PassCounter, commit: str | None, run_ref: dict | None, *, cfg=None,
               crafted_on: dict | None = None) -> dict:
    """``cfg``: the evaluate settings the row ran with (its tier's); ``crafted_on``: the
    deployment a transfer view's attacks were crafted on."""
    cfg = cfg or params.evaluate
    n = metrics["n_samples"]
    attacks = [a.key for a in cfg.attack_list]
    return {
        "name": name,
        "model": model_name,
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
        "tier": metrics.get("tier", "full"),
        "passes_per_test_image": {"gradient": round(passes.gradient / n, 1), "forward_only": round(passes.forward_only / n, 1)},
        "masking_checks": {"suspect": metrics.get("suspect"), "flags": (metrics.get("checks") or {}).get("flags", [])},
        "training": {"architecture": {"arch": spec.get("arch"), **spec.get("options", {})},
                     "conversions": spec.get("conversions", []), "steps": spec.get("steps", [])},
        "git_commit": commit,
        "mlflow_run": (run_ref or {}).get("run_id"),
    }


def card_markdown(card: dict) -> str:
    def pct(v):
        return "—" if v is None else f"{100 * v:.1f}%"

    ci = (card.get("ci95") or {}).get("worst_case")
    steps = "; ".join(f"{s['stage']}: {s['method']}" + (f" {s['options']}" if s.get("options") else "")
                      + (f", trains {s['trainable']}" if s.get("trainable", "all") != "all" else "")
                      for s in card["training"]["steps"]) or "not recorded"
    lines = [
        f"# Model card: {card['name']}",
        "",
        f"- Model: `{card['model']}` ({card['training']['architecture']}); conversions: "
        f"{card['training']['conversions'] or 'none'}",
        f"- Training: {steps}",
        f"- Deployment: {card['deployment']}"
        + (f"; attacks crafted on {card['crafted_on']} (a transfer)" if card.get("crafted_on") else ""),
        f"- Evaluation tier: {card.get('tier', 'full')}",
        f"- Threat model: L-inf, eps {card['threat_model']['eps']:.4f} ({card['threat_model']['eps_255']:g}/255), "
        f"on {card['n_test_samples']} test images of `{card['dataset']}`",
        f"- Clean accuracy: {pct(card['clean'])}; AutoAttack: {pct(card['autoattack'])}; worst case over the suite: "
        f"{pct(card['worst_case'])}" + (f" (95% CI {100 * ci[0]:.1f}-{100 * ci[1]:.1f}%)" if ci else ""),
        f"- Attacks{' (cascade)' if card['cascade'] else ''}: "
        + "; ".join(", ".join(f"{k} {v}" for k, v in a.items()) for a in card["attacks"]),
        f"- Effort: {card['passes_per_test_image']['gradient']} gradient passes and "
        f"{card['passes_per_test_image']['forward_only']} prediction passes per test image",
        f"- Masking checks: {'SUSPECT: ' + '; '.join(card['masking_checks']['flags']) if card['masking_checks']['suspect'] else 'no flag'}",
        f"- Code: git {card['git_commit'] or 'unknown'}; MLflow run {card['mlflow_run'] or '—'}",
        "",
    ]
    return "\n".join(lines)
