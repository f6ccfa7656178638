"""The confoundings of BN in adversarial training that norm shaping names ("Achieving Both Model
Accuracy and Robustness by Adversarial Training with Batch Norm Shaping", Sec. IV), measured on an
adversarially trained model, numbered as the paper numbers them:

I. norm differences degrade accuracy: the population statistics (PN) that adversarial training
   accumulates are not those of clean test batches. The paper argues it without a measurement;
   ours is clean test accuracy with the BN of each clean test batch against PN (``confounding_I``:
   the BN accuracy over the PN accuracy, minus one);
II. norm differences hinder robustness: the logit error of FGSM examples (one step of ``step``)
   against their clean images is larger when the examples are normalized with the clean batch's
   statistics, with which they were crafted, than with their own (paper: 63% larger);
III. attacking with BN is weak (the moving target): PGD perturbations crafted with PN, as at
   inference, are larger than with the batch's own statistics, as in training (paper: 17%).

Besides them, Sec. V justifies the shaping attack (Eq. 5: a clean part of the batch held fixed,
n:1) by its larger perturbations than PGD on the batch's own statistics (Eq. 4; paper: 41%):
``design_sec_v``.

Each is a ratio minus one (0.63 for 63% larger). Perturbation size is the mean L2 norm per image.
Everything that depends on batch statistics runs in batches of ``batch_size`` (the model's training
batch, as in the paper), never the whole sample as one batch.
"""

from __future__ import annotations

import torch

from pipeline.attacks.pgd import fgsm, pgd
from pipeline.deploy import Deployed
from pipeline.evaluate import correct
from pipeline.norms import statistics_of


def _l2(d: torch.Tensor) -> torch.Tensor:
    return d.flatten(1).norm(dim=1)


def _batch(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, step: float, steps: int, ratio: int,
           seed: int) -> dict[str, torch.Tensor]:
    """Per-image measurements of one training-size batch."""
    from pipeline.methods.norm_shaping import split

    bn, pn = Deployed(model, "batch"), Deployed(model, "eval")
    torch.manual_seed(seed)
    x_fgsm = fgsm(bn, x, y, eps=step)
    with torch.no_grad():
        clean = bn(x)
        own = bn(x_fgsm)
        with statistics_of(model, x):
            with_clean_stats = model(x_fgsm)

    def attack(f, perturb=None):
        torch.manual_seed(seed)
        return pgd(f, x, y, eps=eps, step_size=step, steps=steps, random_start=True, perturb=perturb) - x

    mask = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    mask[split(len(x), ratio):] = True
    d_bn = _l2(attack(bn))
    return {"err_clean": (with_clean_stats - clean).norm(dim=1), "err_own": (own - clean).norm(dim=1),
            "d_pn": _l2(attack(pn)), "d_bn": d_bn, "d_shaped": _l2(attack(bn, mask)[mask]), "d_default": d_bn[mask]}


def confoundings(model, x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, *, eps: float,
                 step: float, steps: int, ratio: int, batch_size: int, seed: int = 0) -> dict:
    """The measurements on training images ``x`` (II, III, Sec. V) and test images ``x_test`` (I),
    in batches of ``batch_size``; a last partial batch is dropped (its statistics would be another
    function's)."""
    n = len(x) // batch_size * batch_size
    if n == 0 or len(x_test) < batch_size:
        raise ValueError(f"confoundings: batches of {batch_size} need at least that many training and test images, "
                         f"got {len(x)} and {len(x_test)}")
    parts = [_batch(model, x[i:i + batch_size], y[i:i + batch_size], eps=eps, step=step, steps=steps, ratio=ratio,
                    seed=seed + i) for i in range(0, n, batch_size)]
    m = {k: torch.cat([p[k] for p in parts]).mean() for k in parts[0]}
    n_test = len(x_test) // batch_size * batch_size
    acc_bn = correct(Deployed(model, "batch"), x_test[:n_test], y_test[:n_test], batch_size).float().mean()
    acc_pn = correct(Deployed(model, "eval"), x_test[:n_test], y_test[:n_test], batch_size).float().mean()
    return {
        "n_samples": n, "n_test": n_test, "batch_size": batch_size,
        "clean_acc_bn": acc_bn.item(), "clean_acc_pn": acc_pn.item(),
        "confounding_I": (acc_bn / acc_pn).item() - 1,
        "fgsm_logit_error_clean_stats": m["err_clean"].item(), "fgsm_logit_error_own_stats": m["err_own"].item(),
        "confounding_II": (m["err_clean"] / m["err_own"]).item() - 1,
        "pgd_l2_pn": m["d_pn"].item(), "pgd_l2_bn": m["d_bn"].item(),
        "confounding_III": (m["d_pn"] / m["d_bn"]).item() - 1,
        "pgd_l2_shaping": m["d_shaped"].item(), "pgd_l2_default": m["d_default"].item(),
        "design_sec_v": (m["d_shaped"] / m["d_default"]).item() - 1,
    }
