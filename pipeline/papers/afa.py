""""Adaptive Feature Alignment for Adversarial Training". WRN-28-10 on CIFAR-10, PGD at 8/255
(Table 1: PGD-AT base)."""

from pipeline.papers.ledger import Claim, Paper, Setting

SETTING = Setting(dataset="cifar10", arch="wrn28_10", epochs=None, threat_eps=8 / 255, attack="PGD",
                  deployment="as its method deploys it", metric="correct on the attacked input")

PAPER = Paper("afa", "Adaptive Feature Alignment for Adversarial Training", SETTING, (
    Claim("afa.pgd_at.clean", "Table 1", "AFA on PGD-AT is more accurate on clean images than PGD-AT",
          a="afa_pgd_at", b="adversarial", metric="clean", direction=1, paper_a=95.8, paper_b=86.9),
    Claim("afa.pgd_at.robust", "Table 1", "AFA on PGD-AT is more robust than PGD-AT at the threat eps",
          a="afa_pgd_at", b="adversarial", metric="pgd", direction=1, paper_a=50.0, paper_b=46.2),
))
