"""Robustness evaluation: the attack suite over the eps grid against one deployed model.

Attacks run in the order params list them. ``grid`` attacks (cheap: FGSM, PGD with early exit)
run on every sample at every eps of the grid, so their accuracies are their own. ``threat``
attacks run at the threat eps; with ``cascade`` each runs only on the samples that every attack
before it (at that eps) left standing, and its number is the worst case over it and them, per
sample: the same per-sample outcome as attacking every sample with every attack, at the cost of
attacking only what remains. Every attack and the clean prediction use the same ``Deployed``.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from typing import Callable

import torch


from pipeline.progress import progress as progress_bar

from pipeline.attacks.cw import cw_l2, project_linf
from pipeline.attacks.deepfool import deepfool
from pipeline.attacks.pgd import fgsm, pgd
from pipeline.attacks.autoattack import autoattack
from pipeline.config import EvaluateConfig
from pipeline.deploy import Deployed


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (95% by default): on 200 test images a 3-point
    difference between two models is inside the noise."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class EvalResult:
    n: int
    threat_eps: float
    clean: torch.Tensor  # bool per sample
    robust: dict[tuple[str, float], torch.Tensor] = field(default_factory=dict)  # per-sample, see module doc
    worst: dict[float, torch.Tensor] = field(default_factory=dict)  # eps -> robust to every attack run there
    ran_on: dict[tuple[str, float], int] = field(default_factory=dict)  # samples each attack computed
    seconds: dict[str, float] = field(default_factory=dict)
    autoattack_flags: list[str] = field(default_factory=list)
    # an attack's own outcome, where it ran on every clean-correct sample (grid attacks, the first
    # threat attack, or ``alone``); the cascade's cumulative columns are ``robust``
    alone: dict[tuple[str, float], torch.Tensor] = field(default_factory=dict)
    # minimal-perturbation attacks (CW-L2, DeepFool), unbounded: per attack, success and L2 norms
    minimal: dict[str, dict[str, list]] = field(default_factory=dict)

    def accuracy(self, attack: str, eps: float) -> float:
        return self.robust[(attack, eps)].float().mean().item()

    def headline(self) -> dict:
        t = self.threat_eps
        out = {"clean": self.clean.float().mean().item(), "n_samples": self.n, "threat_eps": t}
        for (attack, eps), ok in self.robust.items():
            if eps == t:
                out[attack] = ok.float().mean().item()
        out["worst_case"] = self.worst[t].float().mean().item()
        for (attack, eps), ok in self.alone.items():
            if eps == t:
                out[f"{attack}_alone"] = ok.float().mean().item()
        if self.minimal:
            out["minimal"] = {a: minimal_summary(m) for a, m in self.minimal.items()}
        counts = {"clean": self.clean, "worst_case": self.worst[t],
                  **{a: ok for (a, eps), ok in self.robust.items() if eps == t}}
        out["ci95"] = {k: [round(v, 4) for v in wilson(int(ok.sum()), self.n)] for k, ok in counts.items()}
        return out

    def curve_rows(self) -> list[dict[str, float]]:
        """One row per eps: each attack's accuracy there (blank where it did not run) and the worst case."""
        attacks = list(dict.fromkeys(a for a, _ in self.robust))
        return [{"eps": eps, **{a: (self.accuracy(a, eps) if (a, eps) in self.robust else "") for a in attacks},
                 "worst_case": ok.float().mean().item()} for eps, ok in sorted(self.worst.items())]


def minimal_summary(m: dict[str, list]) -> dict:
    """Success rate over the samples attacked and the median L2 norm of the successful minimal
    perturbations: CW-L2 and DeepFool as the norm-shaping paper reports them."""
    success, l2 = m.get("success", []), m.get("l2", [])  # empty when no sample was left to attack
    norms = sorted(n for n, ok in zip(l2, success) if ok)
    mid = len(norms) // 2
    median = None if not norms else (norms[mid] if len(norms) % 2 else (norms[mid - 1] + norms[mid]) / 2)
    return {"n_attacked": len(success), "success_rate": sum(success) / len(success) if success else None,
            "median_l2": median}


def _seed_for(seed: int, attack: str, eps: float) -> int:
    """Each (attack, eps) draws from its own stream, whatever ran before it."""
    return zlib.crc32(f"{seed}/{attack}/{eps:.8f}".encode())


def fusion_adaptive(deployed: Deployed, spec, eot: int, early: bool):
    """AFA's adaptive attack (``afa_adaptive``): per weighting (a, b), PGD on a * CE + b * BCE of
    the generator's W0 against 0; each sample keeps the first weighting's example that fools the
    model (else the last one's)."""
    from pipeline.attacks.pgd import ce_loss
    from pipeline.norms import generators

    gens = generators(deployed.model)
    if not gens:
        raise ValueError("attack 'afa_adaptive' needs a model with a weight generator (AFA stage II)")

    def loss_for(a: float, b: float):
        def loss(logits, y):
            w0 = torch.cat([g.last for g in gens], 1).mean(1)  # this forward's W0, per sample
            return a * ce_loss(logits, y) - b * torch.log1p(-w0.clamp(max=1 - 1e-6))
        return loss

    def run(x, y, eps):
        best = x.clone()
        standing = torch.ones(len(x), dtype=torch.bool, device=x.device)
        for a, b in spec.weightings:
            idx = standing.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            x_adv = pgd(deployed, x[idx], y[idx], eps=eps, step_size=spec.rel_step_size * eps, steps=spec.steps,
                        loss=loss_for(a, b), early_stop=early, eot=eot)
            with torch.no_grad():
                fooled = deployed(x_adv).argmax(1) != y[idx]
            best[idx] = x_adv
            standing[idx[fooled]] = False
        return best
    return run


def attack_fn(spec, deployed: Deployed, eot: int, flags: list[str] | None = None,
              minimal: dict[str, list] | None = None, early_exit: bool = True,
              surrogate: Deployed | None = None) -> Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]:
    """``(x, y, eps) -> x_adv`` for one attack spec of params.yaml against ``deployed``. AutoAttack's
    own warnings about the model (randomness, output range, zero gradients) go to ``flags``; the
    unbounded outcome of CW-L2 and DeepFool (success, L2 norm per sample) to ``minimal``.
    ``early_exit: False`` keeps attacking samples ``deployed`` already misclassifies (a transfer,
    whose success is decided on another deployment). ``surrogate``: the model transfer attacks
    are crafted on."""
    name = spec.name
    early = early_exit and not deployed.batch_dependent and not deployed.randomized
    if name == "transfer":
        if surrogate is None:
            raise ValueError("attack 'transfer' needs a surrogate model (evaluate.checks.surrogate)")
        return lambda x, y, eps: pgd(surrogate, x, y, eps=eps, step_size=spec.rel_step_size * eps, steps=spec.steps,
                                     random_start=spec.random_start)
    if name == "afa_adaptive":
        return fusion_adaptive(deployed, spec, eot if deployed.randomized else 1, early)
    if name in ("cw", "deepfool"):
        unbounded = (lambda x, y: cw_l2(deployed, x, y, eps=None, steps=spec.steps, c_init=spec.c_init,
                                        binary_steps=spec.binary_steps, lr=spec.lr, kappa=spec.kappa)) \
            if name == "cw" else (lambda x, y: deepfool(deployed, x, y, eps=None, max_iter=spec.steps,
                                                         overshoot=spec.overshoot))

        def run_minimal(x, y, eps):
            x_min = unbounded(x, y)
            if minimal is not None:
                with torch.no_grad():
                    fooled = deployed(x_min).argmax(1) != y
                minimal.setdefault("success", []).extend(fooled.tolist())
                minimal.setdefault("l2", []).extend((x_min - x).flatten(1).norm(dim=1).tolist())
            return project_linf(x, x_min, eps)
        return run_minimal
    if name == "cw_linf":
        return lambda x, y, eps: pgd(deployed, x, y, eps=eps, step_size=spec.rel_step_size * eps, steps=spec.steps,
                                     random_start=spec.random_start, restarts=spec.restarts, loss="margin",
                                     early_stop=early, eot=eot if deployed.randomized else 1)
    if name == "fgsm":
        return lambda x, y, eps: fgsm(deployed, x, y, eps=eps)
    if name == "pgd":
        return lambda x, y, eps: pgd(deployed, x, y, eps=eps, step_size=spec.rel_step_size * eps,
                                     steps=spec.steps, random_start=spec.random_start, restarts=spec.restarts,
                                     loss=spec.loss, early_stop=early, eot=eot if deployed.randomized else 1)
    if name == "autoattack":
        version = "rand" if deployed.randomized else spec.version

        def run(x, y, eps):
            res = autoattack(deployed, x, y, eps=eps, version=version, batch_size=len(x), attacks=spec.attacks,
                             target_classes=spec.target_classes)
            if flags is not None:
                flags.extend(m for m in res.flags if m not in flags)
            return res.x_adv
        return run
    raise ValueError(f"unknown attack {name!r}")


@torch.no_grad()
def correct(deployed: Deployed, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Per-sample correctness, in batches of ``batch_size`` (for a batch-dependent deployment the
    batches it is deployed on: each sample is normalized with the rest of its batch)."""
    return torch.cat([deployed(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]
                      for i in range(0, len(x), batch_size)])


def evaluate(deployed: Deployed, x: torch.Tensor, y: torch.Tensor, cfg: EvaluateConfig, *, seed: int = 0,
             cascade: bool | None = None, progress: bool = True, desc: str = "evaluate",
             craft_on: Deployed | None = None, surrogate: Deployed | None = None) -> EvalResult:
    """Clean accuracy and every attack of ``cfg`` on ``x`` (float in [0, 1]) and ``y``.

    Batch-dependent deployments run on consecutive batches of ``cfg.deployment.batch_size`` (the
    norm-shaping paper's 100) and are attacked batch by batch, never in subsets (no early exit,
    no cascade): a subset would be a different function. ``desc`` labels the progress bar (a
    stage names it after its item, e.g. ``evaluate@adversarial``). ``craft_on``: the attacks
    differentiate this deployment instead, and their examples are scored on ``deployed`` (a
    transfer from one deployment of a model to another). ``surrogate``: the model ``transfer``
    attacks craft on.
    """
    source = deployed if craft_on is None else craft_on
    cascade = cfg.cascade if cascade is None else cascade
    cascade = cascade and not deployed.batch_dependent
    bs = cfg.deployment.batch_size if deployed.batch_dependent else cfg.batch_size
    clean = correct(deployed, x, y, bs)
    result = EvalResult(n=len(x), threat_eps=cfg.threat, clean=clean)
    grid = cfg.eps_grid
    jobs = [(spec, eps) for eps in grid for spec in cfg.attack_list
            if spec.at == "grid" or abs(eps - cfg.threat) < 1e-9]
    for eps in grid:
        result.worst[eps] = clean.clone()

    bar = progress_bar(jobs, desc=desc, unit="attack", disable=not progress)
    for spec, eps in bar:
        key = spec.key
        bar.set_postfix(attack=key, eps=f"{eps:.4f}", refresh=False)
        t0 = time.perf_counter()
        torch.manual_seed(_seed_for(seed, key, eps))
        standing = result.worst[eps] if (cascade and spec.at == "threat" and not spec.alone) else clean
        ok = clean.clone() if eps == 0 else torch.zeros_like(clean)
        minimal = result.minimal.setdefault(key, {}) if spec.name in ("cw", "deepfool") and eps > 0 else None
        if eps > 0 and standing.any():
            run = attack_fn(spec, source, cfg.deployment.eot, result.autoattack_flags,
                            minimal if source is deployed else None, early_exit=source is deployed,
                            surrogate=surrogate)
            if deployed.batch_dependent:  # whole deployment batches or it is another function
                for i in range(0, len(x), bs):
                    part = slice(i, i + bs)
                    ok[part] = correct(deployed, run(x[part], y[part], eps), y[part], bs) & standing[part]
            else:
                for part in standing.nonzero().squeeze(1).split(bs):
                    ok[part] = correct(deployed, run(x[part], y[part], eps), y[part], bs)
        result.ran_on[(key, eps)] = int(standing.sum()) if eps > 0 else 0
        if torch.equal(standing, clean):  # it ran on every sample it could fool: its own figure
            result.alone[(key, eps)] = ok.clone()
        if spec.at == "threat" and cascade:
            ok &= result.worst[eps]
        result.robust[(key, eps)] = ok
        result.worst[eps] &= ok
        result.seconds[f"{key}@{eps:.4f}"] = time.perf_counter() - t0
    return result
