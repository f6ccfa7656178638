"""Attacks on a deployed model, all in [0, 1] pixel space; L-inf budgets unless an attack says L2.

White-box: FGSM, PGD and CW-Linf (``pgd``: with momentum, input transforms and EOT), Carlini-Wagner
L2 (``cw``), DeepFool (``deepfool``), AFA's adaptive attack on a weight generator (``adaptive``).
Black-box: Square (``square``). Transfer: PGD and (M-)DI2-FGSM crafted on a surrogate
(``transfer``). AutoAttack: ``autoattack`` (imports ``pyautoattack`` only when called).

``ATTACKS`` is what ``evaluate.attacks`` may name. Adding one: a module with its spec and
``Attack(...)`` (``pipeline.attacks.base``), and one entry below.
"""

from pipeline.attacks.adaptive import FUSION_ADAPTIVE
from pipeline.attacks.autoattack import AUTOATTACK
from pipeline.attacks.base import Attack, AttackEntry, AttackSpec, Target, attack_of
from pipeline.attacks.cw import CW
from pipeline.attacks.deepfool import DEEPFOOL
from pipeline.attacks.pgd import CW_LINF, FGSM, PGD
from pipeline.attacks.transfer import TRANSFER

ATTACKS: dict[str, Attack] = {a.name: a for a in (FGSM, PGD, CW_LINF, CW, DEEPFOOL, AUTOATTACK, TRANSFER,
                                                   FUSION_ADAPTIVE)}

__all__ = ["ATTACKS", "Attack", "AttackEntry", "AttackSpec", "Target", "attack_of"]
