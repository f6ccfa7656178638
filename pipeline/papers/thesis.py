"""C. Xie, "Towards robust representation learning and beyond" (PhD thesis). ImageNet; ResNet-152,
targeted PGD-2000 at 16/255 (Ch. 6). Table 6.1 prints differences to the row above its block:
the figures here are those differences applied."""

from pipeline.papers.ledger import Claim, Paper, Setting

SETTING = Setting(dataset="imagenet", arch="resnet152", epochs=None, threat_eps=16 / 255,
                  attack="targeted PGD-2000", deployment="as its method deploys it",
                  metric="correct on the attacked input")

PAPER = Paper("thesis", "Towards robust representation learning and beyond", SETTING, (
    Claim("thesis.mbn.adv_above_clean", "Table 6.1", "AdvProp's auxiliary BN (MBN_adv) is more robust than its "
          "main BN (MBN_clean)", a="advprop_aux", b="advprop", metric="pgd", direction=1),
    Claim("thesis.mbn.clean_above_adv_training", "Table 6.1, Sec. 6.4.2", "MBN_clean is more accurate on clean "
          "images than 100% adversarial training", a="advprop", b="adversarial", metric="clean", direction=1,
          paper_a=78.9 + 0.4, paper_b=62.3),
    Claim("thesis.mbn_adv_below_adv_training", "Table 6.1", "Training on clean images too costs MBN_adv a little "
          "robustness against 100% adversarial training", a="advprop_aux", b="adversarial", metric="pgd",
          direction=-1, paper_a=39.2 - 0.9, paper_b=39.2),
    Claim("thesis.consistent_bn", "Table 6.2", "Running statistics recomputed at the end (consistent BN) make "
          "adversarial training more robust", a="adversarial_consistent", b="adversarial", metric="pgd",
          direction=1, paper_a=39.2 + 3.0, paper_b=39.2),
    Claim("thesis.consistent_mbn", "Table 6.2", "Consistent BN makes MBN_adv more robust too", a="advprop_consistent_aux", b="advprop_aux",
          metric="pgd", direction=1, paper_a=38.3 + 1.6, paper_b=38.3),
))
