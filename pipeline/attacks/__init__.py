"""Attacks on a deployed model, all in [0, 1] pixel space; L-inf budgets unless an attack says L2.

White-box: FGSM, PGD (with momentum, input transforms and EOT), Carlini-Wagner L2, DeepFool.
Black-box: Square. Transfer: (M-)DI2-FGSM crafted on a surrogate. AutoAttack lives in
``pipeline.attacks.autoattack`` (it imports ``pyautoattack`` only when called).
"""

from pipeline.attacks.cw import cw_l2, project_linf
from pipeline.attacks.deepfool import deepfool
from pipeline.attacks.pgd import fgsm, pgd
from pipeline.attacks.square import square
from pipeline.attacks.transfer import TransferResult, di2_fgsm, input_diversity, m_di2_fgsm, transfer_attack

__all__ = ["TransferResult", "cw_l2", "deepfool", "di2_fgsm", "fgsm", "input_diversity", "m_di2_fgsm",
           "pgd", "project_linf", "square", "transfer_attack"]
