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

import torch

from pipeline.attacks import Target, attack_of
from pipeline.attacks.base import Run
from pipeline.config import EvaluateConfig
from pipeline.deploy import Deployed
from pipeline.models.common import gradient_views
from pipeline.progress import progress as progress_bar


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
    # an attack made of parts (AFA's adaptive attack: its weightings): each part's own outcome per sample
    parts: dict[tuple[str, float], dict[str, torch.Tensor]] = field(default_factory=dict)

    def best_single(self, attack: str, eps: float) -> tuple[str, torch.Tensor] | None:
        """The part of ``attack`` that leaves fewest samples robust by itself, and its outcome."""
        parts = self.parts.get((attack, eps))
        if not parts:
            return None
        name = min(parts, key=lambda k: (int(parts[k].sum()), list(parts).index(k)))
        return name, parts[name]

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
        for attack, eps in self.parts:
            if eps == t and (best := self.best_single(attack, eps)) is not None:
                out[f"{attack}_best_single"] = best[1].float().mean().item()
                out[f"{attack}_best_single_part"] = best[0]
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


def attack_fn(spec, deployed: Deployed, eot: int, flags: list[str] | None = None,
              minimal: dict[str, list] | None = None, early_exit: bool = True,
              surrogate: Deployed | None = None, parts: dict[str, list] | None = None) -> Run:
    """``(x, y, eps) -> x_adv`` for one attack spec of params.yaml against ``deployed`` (its
    registered attack builds it). AutoAttack's own warnings about the model go to ``flags``; the
    unbounded outcome of a minimal-perturbation attack (success, L2 norm per sample) to
    ``minimal``. ``early_exit: False`` keeps attacking samples ``deployed`` already misclassifies
    (a transfer, whose success is decided on another deployment). ``surrogate``: the model
    transfer attacks are crafted on. ``eot`` applies to a randomized deployment only. ``parts``: an
    attack made of parts records each part's own outcome there (robust per sample)."""
    early = early_exit and not deployed.batch_dependent and not deployed.randomized
    target = Target(deployed, eot=eot if deployed.randomized else 1, early=early, surrogate=surrogate,
                    flags=flags, minimal=minimal, parts=parts)
    return attack_of(spec).build(spec, target)


@torch.no_grad()
def correct(deployed: Deployed, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Per-sample correctness, in batches of ``batch_size`` (for a batch-dependent deployment the
    batches it is deployed on: each sample is normalized with the rest of its batch)."""
    return torch.cat([deployed(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]
                      for i in range(0, len(x), batch_size)])


def evaluate(deployed: Deployed, x: torch.Tensor, y: torch.Tensor, cfg: EvaluateConfig, *, seed: int = 0,
             cascade: bool | None = None, progress: bool = True, desc: str = "evaluate",
             craft_on: Deployed | None = None, surrogate: Deployed | None = None,
             early_exit: bool = True) -> EvalResult:
    """Clean accuracy and every attack of ``cfg`` on ``x`` (float in [0, 1]) and ``y``.

    Batch-dependent deployments run on consecutive batches of ``cfg.deployment.batch_size`` (the
    norm-shaping paper's 100) and are attacked batch by batch, never in subsets (no early exit,
    no cascade): a subset would be a different function. ``desc`` labels the progress bar (a
    stage names it after its item, e.g. ``evaluate@adversarial``). ``craft_on``: the attacks
    differentiate this deployment instead, and their examples are scored on ``deployed`` (a
    transfer from one deployment of a model to another). ``surrogate``: the model ``transfer``
    attacks craft on. ``early_exit: False`` attacks every sample for every step (the exhaustive
    baseline the benchmarks compare with).
    """
    source = deployed if craft_on is None else craft_on
    cascade = cfg.cascade if cascade is None else cascade
    cascade = cascade and not deployed.batch_dependent
    bs = cfg.deployment.batch_size if deployed.batch_dependent else cfg.batch_size
    with deployed.held():
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
        minimal = result.minimal.setdefault(key, {}) if attack_of(spec).minimal and eps > 0 else None
        parts: dict[str, list] = {}
        # each gradient the model may be differentiated through (a surrogate-gradient activation's
        # and the true one) attacks what the ones before it left standing
        for view, (_, through) in enumerate(gradient_views(source.model) if eps > 0 and standing.any() else []):
            first = view == 0  # per-sample records (minimal, parts) keep the first's order
            if not (first or ok.any()):
                break
            run = attack_fn(spec, source, cfg.deployment.eot, result.autoattack_flags,
                            minimal if source is deployed and first else None,
                            early_exit=early_exit and source is deployed, surrogate=surrogate,
                            parts=parts if source is deployed and first else None)
            with source.held(), through():  # one entry of its mode and route for the whole run
                if deployed.batch_dependent:  # whole deployment batches or it is another function
                    for i in range(0, len(x), bs):
                        part = slice(i, i + bs)
                        alive = standing[part] if first else ok[part]
                        if first or alive.any():
                            ok[part] = correct(deployed, run(x[part], y[part], eps), y[part], bs) & alive
                else:
                    for part in (standing if first else ok).nonzero().squeeze(1).split(bs):
                        ok[part] = correct(deployed, run(x[part], y[part], eps), y[part], bs)
        if parts:  # in the order the samples were attacked: whole batches, or the standing ones
            where = torch.arange(len(x)) if deployed.batch_dependent else standing.nonzero().squeeze(1)
            result.parts[(key, eps)] = {name: torch.zeros_like(clean).index_put_(
                (where,), torch.tensor(robust, dtype=torch.bool)) & standing for name, robust in parts.items()}
        result.ran_on[(key, eps)] = int(standing.sum()) if eps > 0 else 0
        if torch.equal(standing, clean):  # it ran on every sample it could fool: its own figure
            result.alone[(key, eps)] = ok.clone()
        if spec.at == "threat" and cascade:
            ok &= result.worst[eps]
        result.robust[(key, eps)] = ok
        result.worst[eps] &= ok
        result.seconds[f"{key}@{eps:.4f}"] = time.perf_counter() - t0
    return result
