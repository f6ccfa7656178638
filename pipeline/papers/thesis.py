"""C. Xie, "Towards robust representation learning and beyond" (PhD thesis). ImageNet; ResNet-152,
targeted PGD-2000 at 16/255 (Ch. 6); ResNet-50, PGD-200 (Ch. 5); ResNet-152, white-box PGD-100
(Ch. 4). Table 6.1 prints differences to the row above its block: the figures here are those
differences applied."""

from dataclasses import replace

from pipeline.papers.ledger import Claim, Column, Paper, Row, Setting, Table, Trend

SETTING = Setting(dataset="imagenet", arch="resnet152", epochs=None, threat_eps=16 / 255,
                  attack="targeted PGD-2000", deployment="as its method deploys it",
                  metric="correct on the attacked input")
CH5 = replace(SETTING, arch="resnet50", attack="PGD-200")
CH4 = replace(SETTING, attack="targeted PGD-100")

CLEAN_PGD = (Column("clean"), Column("PGD", "pgd"))
TABLE6_1 = Table("Table 6.1", "Mixture BN: MBN_clean and MBN_adv", SETTING, CLEAN_PGD, (
    Row("0% adv + 100% clean", "standard", (78.9, None)),
    Row("MBN_clean, 100% adv + 100% clean", "advprop", (78.9 + 0.4, None)),
    Row("MBN_clean, 100% adv + 100% clean, ALP", "mbn_alp", (78.9 - 0.5, None)),
    Row("100% adv + 0% clean", "adversarial", (62.3, 39.2)),
    Row("MBN_adv, 100% adv + 100% clean", "advprop_aux", (None, 39.2 - 0.9), deployment="branch 1"),
    Row("MBN_adv, 100% adv + 100% clean, ALP", "mbn_alp_aux", (None, 39.2 - 3.9), deployment="branch 1"),
), note="The MBN rows are one network read through its main BN (MBN_clean) and its auxiliary BN (MBN_adv); "
        "the 100% adv row's clean 62.3 is Sec. 6.4.2's.")
TABLE6_2 = Table("Table 6.2", "Consistent BN: running statistics at the end of training",
                 replace(SETTING, epochs=110), (Column("PGD", "pgd"),), (
    Row("100% adv + 0% clean", "adversarial", (39.2,)),
    Row("100% adv + 0% clean *", "adversarial_consistent", (39.2 + 3.0,)),
    Row("MBN_adv, 100% adv + 100% clean", "advprop_aux", (38.3,), deployment="branch 1"),
    Row("MBN_adv, 100% adv + 100% clean *", "advprop_consistent_aux", (38.3 + 1.6,), deployment="branch 1"),
    Row("MBN_adv, 100% adv + 100% clean, ALP", "mbn_alp_aux", (35.3,), deployment="branch 1"),
    Row("MBN_adv, 100% adv + 100% clean, ALP *", "mbn_alp_consistent_aux", (35.3 + 2.8,), deployment="branch 1"),
), note="*: running statistics recomputed over the last 10 of 110 epochs.")
GROUPNORM = Table("Sec. 6.4.2", "GroupNorm in place of BN", SETTING, CLEAN_PGD, (
    Row("BN, 100% adv + 0% clean", "adversarial", (62.3, 39.2)),
    Row("BN, 100% adv + 100% clean", "clean_ratio=1.0", (None, 20.9)),
    Row("GN, 100% adv + 100% clean", "adversarial_gn", (67.5, 39.0)),
), note="The thesis trains its GroupNorm network on 100% adv + 100% clean, the mixture that costs one BN its "
        "robustness (Fig. 6.1's 20.9): the like-for-like row is BN on the same mixture.")
FIG6_1 = Table("Fig. 6.1", "The share of clean images in the batch", SETTING, CLEAN_PGD, (
    Row("0% clean", "clean_ratio=0.0", (None, 39.2)),
    Row("50% clean", "clean_ratio=0.5", (None, None)),
    Row("100% clean", "clean_ratio=1.0", (None, 20.9)),
), note="The text states the endpoints only.")
FIG6_2 = Table("Fig. 6.2", "One BN: the three training strategies", SETTING, CLEAN_PGD, (
    Row("100% adv + 0% clean", "clean_ratio=0.0", (62.3, 39.2)),
    Row("100% adv + 100% clean", "clean_ratio=1.0", (None, 20.9)),
    Row("100% adv + 100% clean, ALP", "alp", (None, 23.0)),
), note="The thesis' figures at PGD-2000, the end of its curves over the attack's iterations (the next table "
        "lays ours); here ours at the screen tier's PGD. Its clean 62.3 is Sec. 6.4.2's.")
CURVES = Table("Figs. 6.2-6.3", "Robust accuracy over PGD's iterations", SETTING, tuple(
    Column(f"PGD-{k}", f"pgd_{k}_alone") for k in (10, 20, 100, 1000, 2000)), (
    Row("100% adv + 0% clean", "clean_ratio=0.0", (None, None, None, None, 39.2)),
    Row("100% adv + 100% clean", "clean_ratio=1.0", (None, None, None, None, 20.9)),
    Row("100% adv + 100% clean, ALP", "alp_curve", (None, None, None, None, 23.0)),
    Row("MBN_adv, 100% adv + 100% clean", "advprop_aux", (None, None, None, None, 38.3), deployment="branch 1"),
    Row("MBN_adv, 100% adv + 100% clean, ALP", "mbn_alp_aux", (None, None, None, None, 35.3), deployment="branch 1"),
), note="The thesis draws the curves and prints their PGD-2000 ends. Its point is their shape: with one BN, the "
        "strategies with clean images keep falling as the attack runs longer; 100% adv + 0% clean and MBN_adv level "
        "off. A blank column is a step count this config's ladder does not run.")
FIG5_3 = Table("Fig. 5.3", "Smooth activations", CH5, CLEAN_PGD, tuple(
    Row(name, f"activation={name}", figs) for name, figs in (
        ("relu", (68.8, 33.0)), ("softplus", (None, 38.7)), ("silu", (69.7, 42.3)), ("gelu", (None, None)),
        ("elu", (None, 41.4)), ("celu", (None, None)), ("smoothrelu", (69.4, 40.3)),
        ("relu_softplus_grad", (68.9, 36.9)))),
    note="relu_softplus_grad is Table 5.1's last row: ReLU forward, Softplus' gradient backward. Ours attacks it "
         "through both gradients, Softplus' and ReLU's own, and a sample counts robust only if both fail.")
FIG4_7 = Table("Fig. 4.7", "Feature-denoising blocks by filter, white-box", CH4, (Column("PGD", "pgd"),), (
    Row("null (1x1 conv and residual only)", "denoise=null", (None,)),
    Row("non-local, Gaussian", "denoise=nonlocal_gaussian", (45.5,)),
    Row("3x3 mean", "denoise=mean", (None,)),
), note="Fig. 4.7 draws every filter above null without printing figures (45.5 is Table 4.1's); Table 4.2's "
        "black-box, all-or-nothing figures at eps 32 are another setting and are not compared.")
TABLE4_1 = Table("Table 4.1", "The denoising block's design, white-box", CH4, (Column("PGD", "pgd"),), (
    Row("non-local, Gaussian", "denoise=nonlocal_gaussian", (45.5,)),
    Row("removing 1x1", "denoise_block=no_conv", (36.8,)),
    Row("removing residual", "denoise_block=no_residual", (None,)),
), note="The thesis' PGD-100 column (PGD-10: 55.7 and 52.1). It could not train the block without its residual "
        "(NaN); ours starts that block's 1x1 conv at the identity.")

BRANCHES = Table("Ch. 6, MBN branches", "Each MBN branch on its own domain and on the other's", SETTING, CLEAN_PGD, (
    Row("MBN_clean (main BN)", "advprop", (None, None)),
    Row("MBN_adv (auxiliary BN)", "advprop_aux", (None, None), deployment="branch 1"),
    Row("MBN_clean, PGD crafted on MBN_adv", "advprop_from_aux", (None, None)),
    Row("MBN_adv, PGD crafted on MBN_clean", "advprop_aux_from_main", (None, None), deployment="branch 1"),
), note="The thesis expects each branch to win its own domain; the crafted-on rows are transfers from the other BN "
        "of the same network. It prints no figures for this.")

PAPER = Paper("thesis", "Towards robust representation learning and beyond", SETTING, (
    Claim("thesis.mbn.adv_above_clean", "Ch. 6, MBN branches", "AdvProp's auxiliary BN (MBN_adv) is more robust than its "
          "main BN (MBN_clean)", a="advprop_aux", b="advprop", metric="pgd", direction=1),
    Claim("thesis.mbn.clean_wins_clean", "Ch. 6, MBN branches", "MBN_clean is more accurate on clean images than "
          "MBN_adv (each branch wins its own domain)", a="advprop", b="advprop_aux", metric="clean", direction=1),
    Claim("thesis.mbn.clean_above_adv_training", "Table 6.1", "MBN_clean is more accurate on clean "
          "images than 100% adversarial training", a="advprop", b="adversarial", metric="clean", direction=1,
          paper_a=78.9 + 0.4, paper_b=62.3),
    Claim("thesis.mbn_adv_below_adv_training", "Table 6.1", "Training on clean images too costs MBN_adv a little "
          "robustness against 100% adversarial training", a="advprop_aux", b="adversarial", metric="pgd",
          direction=-1, paper_a=39.2 - 0.9, paper_b=39.2),
    Claim("thesis.consistent_bn", "Table 6.2", "Running statistics recomputed at the end (consistent BN) make "
          "adversarial training more robust", a="adversarial_consistent", b="adversarial", metric="pgd",
          direction=1, paper_a=39.2 + 3.0, paper_b=39.2),
    Claim("thesis.consistent_mbn", "Table 6.2", "Consistent BN makes MBN_adv more robust too", a="advprop_consistent_aux",
          b="advprop_aux", metric="pgd", direction=1, paper_a=38.3 + 1.6, paper_b=38.3),
    Claim("thesis.gn.clean", "Sec. 6.4.2", "GroupNorm trained on adversarial and clean images is more accurate on "
          "clean images than BN adversarial training", a="adversarial_gn", b="adversarial", metric="clean",
          direction=1, paper_a=67.5, paper_b=62.3),
    Claim("thesis.gn.mixture", "Sec. 6.4.2", "On 100% adversarial + 100% clean images, GroupNorm keeps the "
          "robustness one BN loses", a="adversarial_gn", b="clean_ratio=1.0", metric="pgd", direction=1,
          paper_a=39.0, paper_b=20.9),
    Claim("thesis.clean_ratio", "Fig. 6.1", "Adding every clean image to the batch (one BN) costs robustness",
          a="clean_ratio=1.0", b="clean_ratio=0.0", metric="pgd", direction=-1, paper_a=20.9, paper_b=39.2),
    Claim("thesis.alp", "Fig. 6.2", "With one BN, logit pairing makes 100% adv + 100% clean a little more robust",
          a="alp", b="clean_ratio=1.0", metric="pgd", direction=1, paper_a=23.0, paper_b=20.9),
    Claim("thesis.alp_below_adv_only", "Fig. 6.2", "With one BN, dropping the clean images does more for robustness "
          "than logit pairing", a="clean_ratio=0.0", b="alp", metric="pgd", direction=1, paper_a=39.2, paper_b=23.0),
    Claim("thesis.silu", "Fig. 5.3", "SiLU adversarial training is more robust than ReLU's", a="activation=silu",
          b="activation=relu", metric="pgd", direction=1, paper_a=42.3, paper_b=33.0),
    Claim("thesis.smoothrelu", "Fig. 5.3", "SmoothReLU adversarial training is more robust than ReLU's",
          a="activation=smoothrelu", b="activation=relu", metric="pgd", direction=1, paper_a=40.3, paper_b=33.0),
    Claim("thesis.denoise", "Fig. 4.7", "A non-local (Gaussian) denoising block is more robust than the "
          "null block", a="denoise=nonlocal_gaussian", b="denoise=null", metric="pgd", direction=1),
    Claim("thesis.denoise.conv", "Table 4.1", "The denoising block's 1x1 conv adds robustness",
          a="denoise=nonlocal_gaussian", b="denoise_block=no_conv", metric="pgd", direction=1, paper_a=45.5,
          paper_b=36.8),
), tables=(TABLE6_1, BRANCHES, TABLE6_2, GROUPNORM, FIG6_1, FIG6_2, CURVES, FIG5_3, FIG4_7, TABLE4_1), trends=(
    Trend("thesis.fig6_1", "Fig. 6.1", "Robustness falls as the share of clean images in the batch grows",
          series="grid:clean_ratio", x="clean_fraction", y="pgd", direction=-1),
), short="thesis")
