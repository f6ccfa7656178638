"""The three confoundings of BN in adversarial training that norm shaping measures ("Achieving
Both Model Accuracy and Robustness by Adversarial Training with Batch Norm Shaping", Sec. IV),
on training images of an adversarially trained model:

I. the logit error of FGSM examples (one step of ``step``) against their clean images is larger
   when the examples are normalized with the clean batch's statistics, with which they were
   crafted, than with their own (paper: 63% larger): the examples do not expose the weakness of
   the boundary the update then patches;
II. PGD perturbations crafted with population statistics (PN, as at inference) are larger than
   with batch statistics (BN, as in training; the moving target): paper 17%;
III. the shaping attack (Eq. 5: a clean part of the batch held fixed, n:1) gives larger
   perturbations than PGD on the batch's own statistics (Eq. 4): paper 41%.

Each is reported as a ratio minus one (0.63 for 63% larger); perturbation size is the mean L2
norm per image.
"""

from __future__ import annotations

import torch

from pipeline.attacks.pgd import fgsm, pgd
from pipeline.deploy import Deployed
from pipeline.norms import statistics_of


def _l2(d: torch.Tensor) -> torch.Tensor:
    return d.flatten(1).norm(dim=1)


def confoundings(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, step: float, steps: int, ratio: int,
                 seed: int = 0) -> dict:
    from pipeline.methods.norm_shaping import split

    bn, pn = Deployed(model, "batch"), Deployed(model, "eval")
    torch.manual_seed(seed)
    x_fgsm = fgsm(bn, x, y, eps=step)
    with torch.no_grad():
        clean = bn(x)
        own = bn(x_fgsm)
        with statistics_of(model, x):
            with_clean_stats = model(x_fgsm)
    err_clean, err_own = (with_clean_stats - clean).norm(dim=1), (own - clean).norm(dim=1)

    def attack(f, perturb=None):
        torch.manual_seed(seed)
        return pgd(f, x, y, eps=eps, step_size=step, steps=steps, random_start=True, perturb=perturb) - x

    d_pn, d_bn = _l2(attack(pn)), _l2(attack(bn))
    mask = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    mask[split(len(x), ratio):] = True
    d_shaped = _l2(attack(bn, mask)[mask])
    return {
        "n_samples": len(x),
        "fgsm_logit_error_clean_stats": err_clean.mean().item(),
        "fgsm_logit_error_own_stats": err_own.mean().item(),
        "confounding_I": (err_clean.mean() / err_own.mean()).item() - 1,
        "pgd_l2_pn": d_pn.mean().item(), "pgd_l2_bn": d_bn.mean().item(),
        "confounding_II": (d_pn.mean() / d_bn.mean()).item() - 1,
        "pgd_l2_shaping": d_shaped.mean().item(), "pgd_l2_default": d_bn[mask].mean().item(),
        "confounding_III": (d_shaped.mean() / d_bn[mask].mean()).item() - 1,
    }
