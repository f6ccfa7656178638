"""Gradient-masking checks: signs that an attack failed because the gradients mislead it, not
because the model is robust (after Athalye et al., "Obfuscated Gradients Give a False Sense of
Security", and Carlini et al., "On Evaluating Adversarial Robustness").

Each check compares two accuracies at the threat eps on the same samples; a gap larger than
``tolerance`` raises a flag, and any flag marks the model "suspect":

- single-step beats multi-step: FGSM accuracy below PGD accuracy;
- more effort helps the model: PGD with more steps (same step size) and restarts gives higher
  accuracy;
- black-box beats white-box: Square Attack (no gradients) below PGD;
- transfer beats white-box: examples crafted on a surrogate model below PGD;
- unbounded attack fails: PGD at a large eps leaves accuracy well above zero;
- vanishing gradients: most input gradients of the loss are exactly zero;
- AutoAttack's own warnings (randomness, dynamic defense, output range);
- AutoAttack far below PGD in the suite: the suite's PGD is weak on this model, so PGD-only
  figures of it (the grid, interpolations) overstate its robustness.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.attacks.pgd import fgsm, pgd
from pipeline.attacks.square import square
from pipeline.attacks.transfer import di2_fgsm
from pipeline.attacks.pgd import PGDSpec
from pipeline.config import ChecksConfig
from pipeline.deploy import Deployed


def _acc(deployed: Deployed, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (deployed(x).argmax(1) == y).float().mean().item()


def zero_gradient_fraction(deployed: Deployed, x: torch.Tensor, y: torch.Tensor) -> float:
    xs = x.clone().requires_grad_(True)
    grad, = torch.autograd.grad(F.cross_entropy(deployed(xs), y, reduction="sum"), xs)
    return (grad.flatten(1).abs().amax(1) == 0).float().mean().item()


def masking_checks(deployed: Deployed, x: torch.Tensor, y: torch.Tensor, *, eps: float, cfg: ChecksConfig,
                   pgd_spec: PGDSpec, surrogate: Deployed | None = None, eot: int = 1,
                   autoattack_flags: list[str] | None = None, suite: dict | None = None, seed: int = 0) -> dict:
    """Run the checks on ``x, y`` (cut to ``cfg.n_samples``); returns accuracies and flags.
    ``suite`` is the evaluation's headline (its PGD and AutoAttack accuracies at the threat eps)."""
    x, y = x[:cfg.n_samples], y[:cfg.n_samples]
    eot = eot if deployed.randomized else 1
    early = not deployed.batch_dependent and not deployed.randomized

    def run_pgd(e: float, steps: int, restarts: int) -> float:
        torch.manual_seed(seed)
        x_adv = pgd(deployed, x, y, eps=e, step_size=pgd_spec.rel_step_size * e,
                    steps=steps, restarts=restarts, random_start=True, loss=pgd_spec.loss,
                    early_stop=early, eot=eot)
        return _acc(deployed, x_adv, y)

    out: dict = {"n_samples": len(x)}
    out["fgsm"] = _acc(deployed, fgsm(deployed, x, y, eps=eps), y)
    out["pgd"] = run_pgd(eps, pgd_spec.steps, 1)
    out["pgd_more"] = run_pgd(eps, pgd_spec.steps * cfg.more_steps_factor, 2)
    out["pgd_large_eps"] = run_pgd(cfg.large_eps, pgd_spec.steps, 1)
    if not deployed.batch_dependent:
        out["square"] = _acc(deployed, square(deployed, x, y, eps=eps, n_queries=cfg.square_queries, seed=seed), y)
    if surrogate is not None:
        torch.manual_seed(seed)
        x_adv = di2_fgsm(surrogate, x, y, eps=eps, steps=pgd_spec.steps, step_size=eps / 4)
        out["transfer"] = _acc(deployed, x_adv, y)
    out["zero_gradient_fraction"] = zero_gradient_fraction(deployed, x, y)

    tol, white = cfg.tolerance, min(out["pgd"], out["pgd_more"])
    flags = []
    if out["fgsm"] < out["pgd"] - tol:
        flags.append(f"single-step FGSM ({out['fgsm']:.3f}) beats multi-step PGD ({out['pgd']:.3f})")
    if out["pgd_more"] > out["pgd"] + tol:
        flags.append(f"more PGD steps and restarts raise accuracy ({out['pgd']:.3f} -> {out['pgd_more']:.3f})")
    if "square" in out and out["square"] < white - tol:
        flags.append(f"black-box Square ({out['square']:.3f}) beats white-box PGD ({white:.3f})")
    if "transfer" in out and out["transfer"] < white - tol:
        flags.append(f"transfer from the surrogate ({out['transfer']:.3f}) beats white-box PGD ({white:.3f})")
    if out["pgd_large_eps"] > cfg.large_eps_max_acc:
        flags.append(f"PGD at eps {cfg.large_eps:g} leaves accuracy {out['pgd_large_eps']:.3f} "
                     f"(> {cfg.large_eps_max_acc:g})")
    if out["zero_gradient_fraction"] > 0.5:
        flags.append(f"input gradients are exactly zero for {out['zero_gradient_fraction']:.0%} of samples")
    if suite and "pgd" in suite and "autoattack" in suite:
        gap = suite["pgd"] - suite["autoattack"]
        out["autoattack_gap"] = gap
        if gap > cfg.autoattack_gap:
            flags.append(f"AutoAttack ({suite['autoattack']:.3f}) is {100 * gap:.1f} points below the suite's PGD "
                         f"({suite['pgd']:.3f}): PGD is weak on this model; read its AutoAttack figure")
    flags += [f"AutoAttack: {m}" for m in autoattack_flags or []]
    out["flags"] = flags
    out["suspect"] = bool(flags)
    return out
