"""DeepFool, L2 (Moosavi-Dezfooli et al., "DeepFool: a simple and accurate method to fool deep
neural networks").

Each iteration linearizes the logits around the current point and steps, per sample, onto the
nearest linearized decision boundary among the ``top_k`` classes most likely at the clean input;
the accumulated step is scaled by 1 + ``overshoot`` so the point lands past the boundary. A sample
stops once it is misclassified (per-sample active mask) or after ``max_iter`` iterations.

The iterates are clipped to [0, 1]. With ``eps`` given, the final perturbation is projected onto
the L-inf ball of radius ``eps`` (and clipped to [0, 1]), so that accuracy "at eps" is the
accuracy on the returned points. Samples are attacked as independent inputs, so batch-dependent
deployments are refused.
"""

from __future__ import annotations

from typing import Annotated, Callable, Literal

import torch
from pydantic import Field

from pipeline.attacks.base import At, Attack, AttackEntry
from pipeline.attacks.cw import Bound, as_linf, minimal_details, minimal_label, project_linf
from pipeline.schema import PositiveInt


def _candidates(logits: torch.Tensor, y: torch.Tensor, top_k: int) -> torch.Tensor:
    """The ``top_k`` most likely classes other than ``y``, per sample."""
    other = logits.detach().clone()
    other.scatter_(1, y[:, None], float("-inf"))
    return other.topk(min(top_k, logits.shape[1] - 1), dim=1).indices


def _step(f: Callable[[torch.Tensor], torch.Tensor], xs: torch.Tensor, y: torch.Tensor,
          cand: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The minimal L2 step to the nearest linearized boundary, and whether ``xs`` is already fooled."""
    xs = xs.clone().requires_grad_(True)
    logits = f(xs)
    fooled = logits.detach().argmax(1) != y
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    dist, step = None, None
    for k in range(cand.shape[1]):
        gap = logits.gather(1, cand[:, k:k + 1]).squeeze(1) - z_y  # < 0 while classified as y
        # per-sample gradients from one backward: samples do not interact (non-batch-dependent f)
        w, = torch.autograd.grad(gap.sum(), xs, retain_graph=k < cand.shape[1] - 1)
        w_norm = w.flatten(1).norm(dim=1).clamp_min(1e-12)
        d = gap.detach().abs() / w_norm
        r = ((d + 1e-4) / w_norm).reshape(-1, *([1] * (xs.dim() - 1))) * w
        if dist is None:
            dist, step = d, r
        else:
            nearer = d < dist
            dist = torch.where(nearer, d, dist)
            step[nearer] = r[nearer]
    return step, fooled


def deepfool(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
             top_k: int = 10, overshoot: float = 0.02, max_iter: int = 50,
             eps: float | None = None) -> torch.Tensor:
    """Minimal-L2 adversarial examples for ``f`` (see the module docstring for ``eps``)."""
    if getattr(f, "batch_dependent", False):
        raise ValueError("deepfool attacks samples independently; not valid for a batch-dependent deployment")
    x = x.detach()
    with torch.no_grad():
        cand = _candidates(f(x), y, top_k)
    x_adv = x.clone()
    r_tot = torch.zeros_like(x)
    active = torch.arange(len(x), device=x.device)
    for _ in range(max_iter):
        step, fooled = _step(f, x_adv[active], y[active], cand[active])
        keep = ~fooled
        active, step = active[keep], step[keep]
        if len(active) == 0:
            break
        r_tot[active] += step
        x_adv[active] = (x[active] + (1 + overshoot) * r_tot[active]).clamp(0, 1)
    return project_linf(x, x_adv, eps)


class DeepFoolSpec(AttackEntry):
    """DeepFool: projected onto the L-inf ball of eps for the accuracy at eps (``bound: none``:
    scored as found), and reported unbounded (success rate, median L2 of the minimal
    perturbation)."""

    name: Literal["deepfool"]
    at: At = "threat"
    steps: PositiveInt = 50
    overshoot: Annotated[float, Field(ge=0.0)] = 0.02
    bound: Bound = "linf"


DEEPFOOL = Attack("deepfool", DeepFoolSpec, lambda spec, t: as_linf(lambda x, y: deepfool(
    t.deployed, x, y, eps=None, max_iter=spec.steps, overshoot=spec.overshoot), t, spec.bound),
    minimal_label("DeepFool"), details=minimal_details, minimal=True)
