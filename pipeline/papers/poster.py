"""Walter, Stutz, Schiele: "On Fragile Features and Batch Normalization in Adversarial Training"
(poster). ResNet-20 on CIFAR-10, AutoAttack at 8/255; figures as 100 minus the printed errors."""

from pipeline.papers.ledger import Claim, Paper, Setting

SETTING = Setting(dataset="cifar10", arch="resnet20", epochs=None, threat_eps=8 / 255, attack="AutoAttack standard",
                  deployment="as its method deploys it", metric="correct on the attacked input")

PAPER = Paper("poster", "On Fragile Features and Batch Normalization in Adversarial Training", SETTING, (
    Claim("poster.bn_params.robust", "poster table", "Adversarial training of only BN's parameters makes a standard "
          "network robust", a="bn_params", b="standard", metric="worst_case", direction=1,
          paper_a=100 - 70.5, paper_b=100 - 99.8),
    Claim("poster.bn_params.clean", "poster table", "Adversarial training of only BN's parameters costs a standard network much "
          "clean accuracy", a="bn_params", b="standard",
          metric="clean", direction=-1, paper_a=100 - 29.67, paper_b=100 - 4.11),
    Claim("poster.adv_above_bn_params", "poster table", "Full adversarial training stays more robust than adversarial "
          "training of BN's parameters alone", a="adversarial", b="bn_params", metric="worst_case", direction=1,
          paper_a=100 - 58.4, paper_b=100 - 70.5),
    Claim("poster.adv_bn_only.clean", "poster table", "BN trained adversarially on random filters (ADV BN ONLY) is far "
          "less accurate than full adversarial training", a="adv_bn_only", b="adversarial", metric="clean",
          direction=-1, paper_a=100 - 43.33, paper_b=100 - 17.67),
))
