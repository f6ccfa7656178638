"""Walter, Stutz, Schiele: "On Fragile Features and Batch Normalization in Adversarial Training"
(poster). ResNet-20 on CIFAR-10, AutoAttack at 8/255. Its table prints errors; the claims
compare accuracies, 100 minus those errors."""

from pipeline.papers.ledger import Claim, Column, Paper, Row, Setting, Table

SETTING = Setting(dataset="cifar10", arch="resnet20", epochs=None, threat_eps=8 / 255, attack="AutoAttack standard",
                  deployment="as its method deploys it", metric="correct on the attacked input")

TABLE = Table("poster table", "BN-only fine-tuning", SETTING, (
    Column("test error", "clean", error=True),
    Column("robust test error", "worst_case", error=True),
    Column("%prms", "model.percent_params", scale=1.0),
), (
    Row("NORMAL", "standard", (4.11, 99.8, 100.0)),
    Row("ADV", "adversarial", (17.67, 58.4, 100.0)),
    Row("+BN ONLY", "adv_bn_only", (43.33, 98.0, 0.15)),
    Row("+BN ONLY + log + conv1", "adv_bn_only_logits_conv1", (35.22, 98.1, None)),
    Row("BN STATS", "bn_stats", (6.33, 99.6, 0.15)),
    Row("BN PARAMS", "bn_params", (29.67, 70.5, 0.15)),
    Row("BN PARAMS + log + conv1", "bn_params_logits_conv1", (26.89, 68.2, None)),
), note="%prms: the share of parameters trained (BN STATS trains none: its 0.15 is the BN share the paper prints).")

MEAN_M_DIFF = -0.177  # the poster's average difference in m, BN PARAMS against NORMAL
M_PAIR = ("standard", "bn_params")  # (a, b) of the analysis that figure is comparable with

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
), tables=(TABLE,), short="the poster")
