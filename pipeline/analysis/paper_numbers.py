"""Figures reported by the papers, set beside ours in the report. Each entry names its table and
the setting it came from; numbers are accuracies or errors in %, as printed in the paper."""

from __future__ import annotations

# "On Fragile Features and Batch Normalization in Adversarial Training" (poster), ResNet-20 on
# CIFAR-10, AutoAttack at 8/255. Our model names for each row, then test error, robust test
# error and the share of trained parameters (%prms; BN STATS' share is in parentheses there).
POSTER_SETTING = "ResNet-20, CIFAR-10, AutoAttack L-inf 8/255"
POSTER_MATCH = {"arch": "resnet20", "dataset": "cifar10", "eps": 8 / 255, "attack": "AutoAttack"}
POSTER = [
    ("NORMAL", "standard", 4.11, 99.8, 100.0),
    ("ADV", "adversarial", 17.67, 58.4, 100.0),
    ("+BN ONLY", "adv_bn_only", 43.33, 98.0, 0.15),
    ("+BN ONLY + log + conv1", "adv_bn_only_logits_conv1", 35.22, 98.1, None),
    ("BN STATS", "bn_stats", 6.33, 99.6, 0.15),
    ("BN PARAMS", "bn_params", 29.67, 70.5, 0.15),
    ("BN PARAMS + log + conv1", "bn_params_logits_conv1", 26.89, 68.2, None),
]
POSTER_MEAN_M_DIFF = -0.177  # average difference in m, BN PARAMS against NORMAL
POSTER_M_PAIR = ("standard", "bn_params")  # (a, b) of the analysis that figure is comparable with

# "Adversarial Masking: Towards Understanding Robustness Trade-off for Generalization",
# ResNet-18 on CIFAR-10, robust accuracy at L-inf 8/255.
ROBMASK_SETTING = "ResNet-18, CIFAR-10, PGD L-inf 8/255"
ROBMASK_MATCH = {"arch": "resnet18", "dataset": "cifar10", "eps": 8 / 255, "attack": "PGD"}
TABLE1 = [  # (row, our model, clean %, robust %)
    ("Standard Training", "standard", 91.97, 0.0),
    ("+ Adv. Finetuning of BN", "bn_params", 53.96, 26.51),
    ("Adv. Training", "adversarial", 78.47, 48.67),
    ("+ Standard Finetuning of BN", "adv_clean_bn", 86.96, 5.83),
]
TABLE2_P = [1.0, 0.8, 0.6, 0.4, 0.2, 0.0]
TABLE2 = {  # our interpolation pair -> (clean %, robust %) per p of TABLE2_P
    "adv_to_clean_bn": ([78.47, 81.16, 82.8, 84.66, 86.06, 86.96], [48.67, 44.88, 37.2, 24.79, 12.85, 5.83]),
    "standard_to_bn_params": ([91.97, 88.66, 74.87, 58.76, 53.89, 53.96], [0.0, 0.0, 0.12, 5.73, 19.93, 26.51]),
}
# Table 9: cosine similarity per BN layer (ADV against ADV + standard fine-tuning of BN), layers
# 0-18; layer 0's mean and variance are illegible in the source (None). Columns: mean, var, weight, bias.
TABLE9 = [
    (None, None, 0.7620, 1.0),
    (0.9842, 0.9718, 0.7883, 1.0), (0.9530, 0.9199, 0.7544, 1.0), (0.9743, 0.9691, 0.8594, 1.0),
    (0.8894, 0.9340, 0.8126, 1.0), (0.9555, 0.9516, 0.8813, 1.0), (0.9853, 0.9452, 0.7141, 1.0),
    (0.9554, 0.9169, 0.8609, 1.0), (0.9903, 0.9646, 0.8961, 1.0), (0.9635, 0.9755, 0.8046, 1.0),
    (0.9823, 0.9522, 0.9396, 1.0), (0.9823, 0.9769, 0.7906, 1.0), (0.9753, 0.9593, 0.7839, 1.0),
    (0.9914, 0.9874, 0.8891, 1.0), (0.9699, 0.9898, 0.6593, 1.0), (0.9902, 0.9870, 0.8605, 1.0),
    (0.9603, 0.9889, 0.7423, 1.0), (0.9736, 0.9742, 0.6809, 1.0), (0.9772, 0.9838, 0.9573, 1.0),
]
TABLE9_PAIR = "adv_vs_clean_bn"


TABLE9_COLUMNS = ("mean", "var", "gamma", "beta")


def table9_layers(column: str) -> list[int]:
    """The layers the paper gives ``column`` for (gamma and beta: 0-18; mean and var: 1-18)."""
    i = TABLE9_COLUMNS.index(column)
    return [layer for layer, row in enumerate(TABLE9) if row[i] is not None]


def table9_means(layers: dict[str, list[int]] | None = None) -> dict[str, float]:
    """The paper's mean per column over ``layers[column]`` (default: every layer it gives)."""
    out = {}
    for i, name in enumerate(TABLE9_COLUMNS):
        keep = layers[name] if layers else table9_layers(name)
        values = [TABLE9[layer][i] for layer in keep if layer < len(TABLE9) and TABLE9[layer][i] is not None]
        out[name] = sum(values) / len(values) if values else None
    return out


# C. Xie's thesis "Towards robust representation learning and beyond": ResNet-152 (Ch. 4, 6) or
# ResNet-50 (Ch. 5) on ImageNet, targeted PGD at L-inf 16/255 (PGD-2000 in Ch. 6, PGD-200 in Ch. 5).
THESIS_SETTING = "ImageNet, ResNet-152 (Ch. 4, 6) / ResNet-50 (Ch. 5), targeted PGD L-inf 16/255"
THESIS_MATCH = {"arch": "resnet152", "dataset": "imagenet", "eps": 16 / 255, "attack": None}  # sections read PGD
# Table 6.1: (row, our target, measure, the paper's figure, whether it is a difference to the row above the block)
TABLE6_1 = [
    ("0% adv + 100% clean", "standard", "clean", 78.9, False),
    ("MBN_clean, 100% adv + 100% clean", "advprop", "clean", +0.4, True),
    ("MBN_clean, 100% adv + 100% clean, ALP", "mbn_alp", "clean", -0.5, True),
    ("100% adv + 0% clean", "adversarial", "pgd", 39.2, False),
    ("MBN_adv, 100% adv + 100% clean", "advprop_aux", "pgd", -0.9, True),
    ("MBN_adv, 100% adv + 100% clean, ALP", "mbn_alp_aux", "pgd", -3.9, True),
]
# Table 6.2 (PGD-2000 %): (row, our target, paper) pairs of (without, with running statistics at the end)
TABLE6_2 = [
    ("100% adv + 0% clean", "adversarial", 39.2, "adversarial_consistent", +3.0),
    ("MBN_adv, 100% adv + 100% clean", "advprop_aux", 38.3, "advprop_consistent_aux", +1.6),
    ("MBN_adv, 100% adv + 100% clean, ALP", "mbn_alp_aux", 35.3, None, +2.8),
]
# Fig. 6.1 (PGD-2000 %), only its endpoints are stated in the text: share of clean images -> accuracy
FIG6_1 = {0.0: 39.2, 1.0: 20.9}
# GroupNorm (Sec. 6.4.2), "100% adv + 100% clean": clean 67.5, PGD-2000 39.0 (BN, 100% adv + 0% clean: 62.3, 39.2)
GROUPNORM = {"clean": 67.5, "pgd": 39.0}
# Fig. 5.3 and Table 5.1 (ResNet-50, PGD-200 %): activation -> (clean, robust) as the text states them
FIG5_3 = {
    "relu": (68.8, 33.0),
    "softplus": (None, 38.7),
    "silu": (69.7, 42.3),
    "elu": (None, 41.4),
    "smoothrelu": (69.4, 40.3),
    "relu_softplus_grad": (68.9, 36.9),
}
# Table 4.2 (black-box, all-or-nothing %) and Table 4.1 (white-box PGD-100 %): four denoising blocks in ResNet-152
TABLE4_2 = {"null": 44.1, "nonlocal_gaussian": 46.4, "nonlocal_dot": 46.2}
TABLE4_2_BASELINE = 43.1
TABLE4_1_PGD100 = {"nonlocal_gaussian": 45.5}

# "Adversarial Masking": clean accuracy (%) of BN and AdvProp on CIFAR-10, ResNet-18 (Table 3),
# and of AdvProp's variants on CIFAR-10, DenseNet-121, 100 epochs (Table 7).
TABLE3_SETTING = "CIFAR-10, ResNet-18, 20 / 100 epochs, clean accuracy"
TABLE3 = [("BN", "standard", 92.59, 94.87), ("AdvProp", "advprop", 93.45, 95.3), ("RobMask", "robmask", 94.64, 96.10)]
TABLE7_SETTING = "CIFAR-10, DenseNet-121, 100 epochs, clean accuracy"
TABLE7 = [("AdvProp", "advprop", 94.61), ("with random perturbation strength", "advprop_random_eps", 94.50),
          ("with 2 auxiliary BN", "advprop_2aux", 95.10), ("RobMask", "robmask", 96.47)]
# Tables 5 (PGD-100) and 6 (AutoAttack), ResNet-18 on CIFAR-10, at eps {0, 2, 4, 6, 8}/255.
ROBUST_SETTING = "CIFAR-10, ResNet-18, eps {0, 2, 4, 6, 8}/255"
TABLE5_EPS = [0.0, 2 / 255, 4 / 255, 6 / 255, 8 / 255]
TABLE5 = [("Adv. Training", "adversarial", [78.86, 72.61, 65.27, 57.15, 47.97]),
          ("AdvProp", "advprop", [85.98, 78.34, 69.24, 57.61, 46.04]),
          ("RobMask", "robmask", [89.99, 82.91, 72.23, 58.63, 44.50])]
TABLE6 = [("Adv. Training", "adversarial", [78.86, 70.99, 62.94, 53.83, 44.66]),
          ("AdvProp", "advprop", [85.98, 77.73, 67.57, 55.36, 43.13]),
          ("RobMask", "robmask", [89.99, 81.87, 70.99, 55.9, 41.7]),
          ("RobMask eps_max 10/255", "robmask_wide", [86.5, 78.47, 68.08, 56.89, 44.69])]

# "Adaptive Feature Alignment for Adversarial Training", WRN-28-10 on CIFAR-10, eps in /255.
AFA_SETTING = "WRN-28-10, CIFAR-10, PGD at eps {0, 1, 2, 4, 8}/255"
AFA_MATCH = {"arch": "wrn28_10", "dataset": "cifar10", "eps": 8 / 255, "attack": "PGD"}
AFA_EPS_FRACTIONS = [0.0, 1 / 8, 1 / 4, 1 / 2, 1.0]  # the paper's grid as fractions of its threat eps
# Table 1 (CIFAR-10): base method, our base model, our AFA target; accuracy at each eps, then the average
AFA_TABLE1 = [
    ("Standard", "standard", None, [95.2, 30.5, 3.0, 0.0, 0.0, 25.7], None),
    ("PGD-AT", "adversarial", "afa_pgd_at", [86.9, 81.5, 78.5, 68.8, 46.2, 72.4], [95.8, 87.0, 83.9, 72.6, 50.0, 77.9]),
    ("TRADES", "trades", "afa_trades", [83.2, 80.5, 77.6, 71.3, 53.8, 73.3], [95.4, 86.8, 82.7, 72.1, 52.6, 77.9]),
    ("IAT", "iat", "afa_iat", [92.9, 88.3, 84.4, 73.5, 46.2, 77.0], [96.1, 86.2, 81.7, 73.7, 46.2, 76.7]),
    ("MART", "mart", "afa_mart", [83.6, 81.0, 78.2, 72.3, 55.3, 74.1], [95.9, 84.3, 84.2, 73.5, 56.1, 78.8]),
]
# Table 3 (CIFAR-10, eps 8/255): (std, PGD, FGSM, C&W, PGD+Ada) and black-box at {0, 1, 2, 4, 8}/255 + average
AFA_TABLE3 = {
    "adversarial": ((86.9, 46.2, 56.1, 45.3, None), [86.9, 85.2, 83.1, 78.2, 66.8, 80.0]),
    "afa_pgd_at": ((95.8, 50.0, 81.1, 48.3, 48.2), [95.8, 94.6, 90.5, 91.9, 67.9, 88.1]),
    "trades": ((83.2, 53.8, 64.6, 52.5, None), [83.2, 81.5, 79.0, 74.1, 65.3, 76.6]),
    "afa_trades": ((95.4, 52.6, 80.3, 51.0, 52.2), [95.4, 94.7, 92.7, 82.4, 65.9, 86.2]),
    "iat": ((92.9, 46.2, 65.7, 43.4, None), [92.9, 91.2, 88.7, 84.5, 71.8, 85.8]),
    "afa_iat": ((96.1, 46.2, 80.6, 43.5, 46.1), [96.1, 95.2, 93.6, 87.0, 74.0, 89.2]),
    "mart": ((83.6, 55.3, 64.3, 53.4, None), [83.6, 82.0, 80.0, 76.1, 66.0, 77.6]),
    "afa_mart": ((95.9, 56.0, 81.3, 53.6, 55.6), [95.9, 95.3, 93.4, 83.7, 67.7, 87.2]),
}
# Table 4: K BN branches -> accuracy at {0, 1, 2, 4, 8}/255 and the average (PGD-AT base)
AFA_TABLE4 = {2: [95.0, 85.1, 82.2, 70.4, 48.1, 76.2], 3: [95.5, 86.7, 83.2, 72.3, 48.6, 77.3],
              5: [95.8, 87.0, 83.9, 72.6, 50.0, 77.9], 9: [95.6, 87.2, 84.5, 72.9, 50.4, 78.1]}

# "Achieving Both Model Accuracy and Robustness by Adversarial Training with Batch Norm Shaping",
# WRN-32-10 on CIFAR-10 at 8/255 (FGSM at 16/255). Tables I (PGD base) and II (TRADES base): per
# training mode and attack, (accuracy, robust accuracy) under BN, PN and BN+Shaping; accuracy is
# the clean accuracy of that mode (the same for every attack of a block).
SHAPING_SETTING = "WRN-32-10, CIFAR-10, eps 8/255 (FGSM 16/255), batches of 100, BN+Shaping with 9 clean images"
SHAPING_MATCH = {"arch": "wrn32_10", "dataset": "cifar10", "eps": 8 / 255, "attack": None}
SHAPING_MODES = ("BN", "PN", "BN+Shaping")
SHAPING_ATTACKS = ("pgd", "cw", "fgsm", "deepfool", "shaping")
# (training mode label, our model) -> clean per mode, then robust per attack per mode
SHAPING_TABLES = {
    "I": [
        ("Adv. only", "adversarial", (0.877, 0.869, 0.873),
         {"pgd": (0.501, 0.47, 0.504), "cw": (0.865, 0.821, 0.864), "fgsm": (0.391, 0.376, 0.395),
          "deepfool": (0.503, 0.071, 0.515), "shaping": (0.606, 0.614, 0.600)}),
        ("Shaping in training", "ns_pgd_training", (0.932, 0.922, 0.932),
         {"pgd": (0.142, 0.0, 0.384), "cw": (0.92, 0.0, 0.896), "fgsm": (0.263, 0.502, 0.544),
          "deepfool": (0.929, 0.051, 0.903), "shaping": (0.696, 0.727, 0.447)}),
        ("Shaping in attack + training", "ns_pgd_shaping", (0.941, 0.944, 0.942),
         {"pgd": (0.281, 0.030, 0.816), "cw": (0.905, 0.069, 0.904), "fgsm": (0.552, 0.597, 0.740),
          "deepfool": (0.914, 0.037, 0.911), "shaping": (0.481, 0.494, 0.533)}),
    ],
    "II": [
        ("Adv. only", "ns_trades_adv", (0.890, 0.888, 0.889),
         {"pgd": (0.476, 0.462, 0.481), "cw": (0.880, 0.845, 0.880), "fgsm": (0.351, 0.347, 0.359),
          "deepfool": (0.521, 0.066, 0.521), "shaping": (0.522, 0.533, 0.539)}),
        ("Shaping in training", "ns_trades_training", (0.937, 0.925, 0.938),
         {"pgd": (0.298, 0.028, 0.529), "cw": (0.933, 0.053, 0.925), "fgsm": (0.348, 0.467, 0.489),
          "deepfool": (0.941, 0.052, 0.924), "shaping": (0.729, 0.851, 0.472)}),
        ("Shaping in attack + training", "ns_trades_shaping", (0.945, 0.945, 0.944),
         {"pgd": (0.202, 0.004, 0.817), "cw": (0.899, 0.026, 0.899), "fgsm": (0.510, 0.546, 0.737),
          "deepfool": (0.908, 0.037, 0.914), "shaping": (0.499, 0.521, 0.542)}),
    ],
}
# Table III: PGD under BN+Shaping when the attacker shapes with other training images of its own
# ("slightly weaker") and with each query's exact shaping images (adaptive)
SHAPING_TABLE3 = {"ns_pgd_shaping": (0.518, 0.508), "ns_trades_shaping": (0.514, 0.505)}
# Table IV: training ratio (clean images per adversarial one) -> PGD robust accuracy per inference
# ratio (clean images per query; 0: no shaping)
SHAPING_TABLE4_REFS = [0, 1, 3, 9, 19, 49]
SHAPING_TABLE4 = {1: [0.477, 0.478, 0.476, 0.476, 0.477, 0.476], 2: [0.385, 0.837, 0.835, 0.753, 0.668, 0.573],
                  3: [0.281, 0.692, 0.820, 0.817, 0.813, 0.815], 7: [0.039, 0.138, 0.706, 0.781, 0.776, 0.779]}
# Sec. IV: confoundings as "x% larger" (ratio minus one)
CONFOUNDINGS = {"confounding_I": 0.63, "confounding_II": 0.17, "confounding_III": 0.41}
