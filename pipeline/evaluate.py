"""Robustness evaluation: the attack suite over the eps grid against one deployed model.

Returns per-sample correctness for each (attack, eps), from which the metrics table is made.
Every attack runs against the same ``Deployed`` callable that clean prediction uses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from pipeline.attacks import fgsm, pgd
from pipeline.attacks.autoattack import autoattack
from pipeline.config import EvaluateConfig
from pipeline.deploy import Deployed


@dataclass
class EvalResult:
    n: int
    clean: torch.Tensor  # bool per sample: correct on the clean input
    robust: dict[tuple[str, float], torch.Tensor] = field(default_factory=dict)  # (attack, eps) -> bool per sample
    seconds: dict[str, float] = field(default_factory=dict)
    autoattack_flags: list[str] = field(default_factory=list)

    def accuracy(self, attack: str, eps: float) -> float:
        return self.robust[(attack, eps)].float().mean().item()

    def headline(self, threat_eps: float, aa_n: int | None) -> dict[str, float]:
        """Accuracies at the threat eps; attacks run on fewer samples also get PGD on those samples."""
        out = {"clean": self.clean.float().mean().item(), "n_samples": self.n, "threat_eps": threat_eps}
        for (attack, eps), ok in self.robust.items():
            if eps == threat_eps:
                out[attack] = ok.float().mean().item()
        if aa_n is not None and ("autoattack", threat_eps) in self.robust:
            out["autoattack_n_samples"] = aa_n
            out["pgd_on_autoattack_samples"] = self.robust[("pgd", threat_eps)][:aa_n].float().mean().item()
        return out

    def curve_rows(self) -> list[dict[str, float]]:
        """One row per eps with every attack's accuracy: the CSV behind ``dvc plots``."""
        eps_values = sorted({eps for _, eps in self.robust})
        attacks = [a for a in ("fgsm", "pgd") if any(k[0] == a for k in self.robust)]
        return [{"eps": eps, **{a: self.accuracy(a, eps) for a in attacks if (a, eps) in self.robust}}
                for eps in eps_values]


def _batched(fn, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([fn(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def evaluate(deployed: Deployed, x: torch.Tensor, y: torch.Tensor, cfg: EvaluateConfig,
             progress: bool = True) -> EvalResult:
    """Clean accuracy, FGSM and PGD over ``cfg.eps``, AutoAttack at ``cfg.threat_eps``.

    ``x`` is float in [0, 1]. PGD stops attacking a sample once it is misclassified (early
    exit) unless the deployment is batch-dependent.
    """
    bs = len(x) if deployed.batch_dependent else cfg.batch_size
    early = not deployed.batch_dependent
    with torch.no_grad():
        clean = _batched(lambda a, b: deployed(a).argmax(1) == b, x, y, bs)
    result = EvalResult(n=len(x), clean=clean)
    jobs = [("fgsm", eps) for eps in cfg.eps if cfg.fgsm] + [("pgd", eps) for eps in cfg.eps]
    aa_n = min(cfg.autoattack.n_ex, len(x)) if cfg.autoattack.enabled else None
    if aa_n:
        jobs.append(("autoattack", cfg.threat_eps))

    bar = tqdm(jobs, desc="evaluate", unit="attack", disable=not progress, dynamic_ncols=True)
    for attack, eps in bar:
        bar.set_postfix(attack=attack, eps=f"{eps:.4f}")
        t0 = time.perf_counter()
        if eps == 0:
            ok = clean.clone()
        elif attack == "fgsm":
            ok = _batched(lambda a, b: _correct(deployed, fgsm(deployed, a, b, eps=eps), b), x, y, bs)
        elif attack == "pgd":
            p = cfg.pgd
            ok = _batched(lambda a, b: _correct(deployed, pgd(
                deployed, a, b, eps=eps, step_size=p.rel_step_size * eps, steps=p.steps,
                random_start=p.random_start, restarts=p.restarts, early_stop=early), b), x, y, bs)
        else:
            aa = autoattack(deployed, x[:aa_n], y[:aa_n], eps=eps, version=cfg.autoattack.version,
                            batch_size=bs)
            result.autoattack_flags = aa.flags
            ok = _correct(deployed, aa.x_adv, y[:aa_n], bs)
        result.robust[(attack, eps)] = ok & clean[:len(ok)]
        result.seconds[f"{attack}@{eps:.4f}"] = time.perf_counter() - t0
    return result


@torch.no_grad()
def _correct(deployed: Deployed, x_adv: torch.Tensor, y: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    if batch_size is None or deployed.batch_dependent:
        return deployed(x_adv).argmax(1) == y
    return _batched(lambda a, b: deployed(a).argmax(1) == b, x_adv, y, batch_size)
