"""Attacks on a deployed model, all in [0, 1] pixel space; L-inf budgets unless an attack says L2.

White-box: FGSM and PGD (``pgd``: with momentum, input transforms and EOT), Carlini-Wagner L2
(``cw``), DeepFool (``deepfool``). Black-box: Square (``square``). Transfer: (M-)DI2-FGSM crafted on
a surrogate (``transfer``). AutoAttack: ``autoattack`` (imports ``pyautoattack`` only when called).
The typed entries of ``evaluate.attacks``: ``specs``.

Import from the submodules (``from pipeline.attacks.pgd import pgd``): the package imports none of
them, so that a stage depends only on the attacks it runs.
"""
