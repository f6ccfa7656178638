"""Named evaluation protocols: the eps grids and attacks the papers report, as presets for
``evaluate.protocol`` in params.yaml."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.attacks.autoattack import AutoAttackSpec
from pipeline.attacks.cw import CWSpec
from pipeline.attacks.deepfool import DeepFoolSpec
from pipeline.attacks.pgd import CWLinfSpec, FGSMSpec, PGDSpec


@dataclass(frozen=True)
class Protocol:
    description: str
    eps: list[float]
    threat_eps: float
    attacks: list


PROTOCOLS: dict[str, Protocol] = {
    # "Adversarial Masking: Towards Understanding Robustness Trade-off for Generalization",
    # Tables 5-6: PGD-100, step eps/5, random start, eps in {0, 2, 4, 6, 8}/255, and AutoAttack.
    "robmask": Protocol(
        "PGD-100 (step eps/5) over eps {0,2,4,6,8}/255 and AutoAttack at 8/255",
        [0.0, 2 / 255, 4 / 255, 6 / 255, 8 / 255], 8 / 255,
        [PGDSpec(name="pgd", steps=100, rel_step_size=0.2), AutoAttackSpec(name="autoattack", at="grid")],
    ),
    # "Adaptive Feature Alignment for Adversarial Training": eps in {0, 1, 2, 4, 8}/255 for PGD,
    # FGSM, PGD and C&W at 8/255. Its C&W is the L-inf one of its bases' papers (PGD on the CW
    # margin), measured by itself (``alone``), as Table 3 reports it beside PGD.
    "afa": Protocol(
        "FGSM, PGD-20 over eps {0,1,2,4,8}/255; CW-Linf (PGD-30 on the CW margin) at 8/255, by itself",
        [0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255], 8 / 255,
        [FGSMSpec(name="fgsm", at="threat"), PGDSpec(name="pgd", steps=20, rel_step_size=0.25),
         CWLinfSpec(name="cw_linf", steps=30, rel_step_size=0.1, alone=True)],
    ),
    # "On Fragile Features and Batch Normalization in Adversarial Training": AutoAttack at 8/255.
    "poster": Protocol(
        "AutoAttack (standard) at 8/255",
        [0.0, 8 / 255], 8 / 255,
        [AutoAttackSpec(name="autoattack")],
    ),
    # "Achieving Both Model Accuracy and Robustness by Adversarial Training with Batch Norm
    # Shaping": PGD and CW at 8/255, FGSM at 16/255 (the paper raises it from 8), DeepFool.
    "normshaping": Protocol(
        "FGSM at 16/255; PGD-10 (step 2/255), CW-L2 and DeepFool at 8/255",
        [0.0, 8 / 255, 16 / 255], 8 / 255,
        [FGSMSpec(name="fgsm", at="grid"), PGDSpec(name="pgd", at="threat", steps=10, rel_step_size=0.25),
         DeepFoolSpec(name="deepfool"), CWSpec(name="cw")],
    ),
}
