"""Feature statistics and fusion weights against the attack strength ("Adaptive Feature Alignment
for Adversarial Training": per-channel mean and variance of an intermediate feature map, Fig. 3;
the fusion weight W1 = 1 - W0 of the weight generator, Fig. 6).

Test images are attacked with PGD at each eps of a grid on the model as it deploys; the features
of one module (its output, captured by a forward hook) and the generator's weights are read off
the forward pass of the attacked images. Monotonicity is a rank correlation with eps: Spearman's
rho per channel for the statistics, pooled over samples for the fusion weight.
"""

from __future__ import annotations

import torch

from pipeline.attacks.pgd import pgd
from pipeline.deploy import Deployed
from pipeline.norms import generators


def ranks(v: torch.Tensor) -> torch.Tensor:
    """Average ranks (ties share the mean of their ranks) of a 1-D tensor, from 1."""
    order = v.argsort()
    r = torch.empty(len(v), dtype=torch.float64)
    r[order] = torch.arange(1, len(v) + 1, dtype=torch.float64)
    for value in v.unique():
        tied = v == value
        if tied.sum() > 1:
            r[tied] = r[tied].mean()
    return r


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two 1-D tensors (nan when either is constant)."""
    ra, rb = ranks(a.flatten().double().cpu()), ranks(b.flatten().double().cpu())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = (ra.norm() * rb.norm()).item()
    return float("nan") if denom == 0 else float((ra @ rb).item() / denom)


def strength_statistics(deployed: Deployed, x: torch.Tensor, y: torch.Tensor, eps_grid: list[float], *,
                        feature: str, steps: int, rel_step_size: float, seed: int = 0,
                        craft_on: Deployed | None = None) -> dict:
    """Per eps: the per-channel mean and variance of ``feature``'s output on PGD examples at that
    eps, and (for a model with a weight generator) each sample's W1. ``craft_on``: the examples are
    crafted on this other model and transferred (AFA's Fig. 6 crafts on a separately trained one)."""
    model = deployed.model
    modules = dict(model.named_modules())
    if feature not in modules:
        raise ValueError(f"feature: the model has no module {feature!r} (e.g. {', '.join(list(modules)[1:4])}, ...)")
    captured: list[torch.Tensor] = []
    hook = modules[feature].register_forward_hook(lambda m, i, out: captured.append(out.detach()))
    gens = generators(model)
    out: dict = {"eps": list(eps_grid), "mean": [], "var": [], "w1": []}
    try:
        for eps in eps_grid:
            torch.manual_seed(seed)
            x_adv = x if eps == 0 else pgd(craft_on or deployed, x, y, eps=eps, step_size=rel_step_size * eps,
                                           steps=steps)
            captured.clear()
            with torch.no_grad():
                deployed(x_adv)
            f = captured[-1]
            out["mean"].append(f.mean(dim=(0, 2, 3)).cpu())
            out["var"].append(f.var(dim=(0, 2, 3)).cpu())
            if gens:
                out["w1"].append((1 - torch.cat([g.last for g in gens], 1).mean(1)).detach().cpu())
    finally:
        hook.remove()
    return out


def monotonicity(stats: dict) -> dict:
    """How monotone each channel's mean and variance are in eps (Spearman's rho over the grid),
    and the fusion weight's rank correlation with eps over every attacked sample."""
    eps = torch.tensor(stats["eps"], dtype=torch.float64)
    out = {}
    for what in ("mean", "var"):
        table = torch.stack(stats[what])  # (E, C)
        rho = torch.tensor([spearman(eps, table[:, c]) for c in range(table.shape[1])], dtype=torch.float64)
        rho = rho[~rho.isnan()]
        out[f"{what}_abs_rho"] = rho.abs().mean().item() if len(rho) else None
        out[f"{what}_monotone_share"] = (rho.abs() > 1 - 1e-6).double().mean().item() if len(rho) else None
        out[f"{what}_increasing_share"] = (rho > 1 - 1e-6).double().mean().item() if len(rho) else None
    if stats["w1"]:
        w1 = torch.cat(stats["w1"])
        per_eps = torch.cat([torch.full((len(w),), e) for w, e in zip(stats["w1"], stats["eps"])])
        out["w1_spearman"] = spearman(per_eps, w1)
        out["w1_mean"] = [w.mean().item() for w in stats["w1"]]
    return out
