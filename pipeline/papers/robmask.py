""""Adversarial Masking: Towards Understanding Robustness Trade-off for Generalization". ResNet-18
on CIFAR-10, PGD at 8/255 (Table 1); clean accuracy of BN, AdvProp and RobMask over four
architectures, two datasets and 20 or 100 epochs (Table 3); PGD-100 and AutoAttack over
{0, 2, 4, 6, 8}/255 (Tables 5, 6); AdvProp's variants on DenseNet-121 (Table 7).

Tables 5 and 6: their clean column (RobMask 89.99, AdvProp 85.98) sits far below the same
methods' clean accuracy in Table 3 (96.10, 95.3), so their rows are read as the deployments made
for robustness: RobMask at the masking of eps_max (strength 1) and AdvProp through its auxiliary
BN. A config without those views fills the rows with the main deployment, and the table's
comparability line says so.
"""

from dataclasses import replace

from pipeline.papers.ledger import Claim, Column, Paper, Reading, Row, Setting, Table, Trend

SETTING = Setting(dataset="cifar10", arch="resnet18", epochs=None, threat_eps=8 / 255, attack="PGD",
                  deployment="as its method deploys it", metric="correct on the attacked input")
TABLE3_SETTING = replace(SETTING, attack="none (clean accuracy)", metric="correct on the clean input")

FIVE_EPS = (0.0, 0.25, 0.5, 0.75, 1.0)  # {0, 2, 4, 6, 8}/255 as fractions of 8/255

TABLE1 = Table("Table 1", "Fine-tuning BN in both directions", SETTING,
               (Column("clean"), Column("PGD", "pgd")), (
    Row("Standard Training", "standard", (91.97, 0.0)),
    Row("+ Adv. Finetuning of BN", "bn_params", (53.96, 26.51)),
    Row("Adv. Training", "adversarial", (78.47, 48.67)),
    Row("+ Standard Finetuning of BN", "adv_clean_bn", (86.96, 5.83)),
))


def _table3() -> list[Table]:
    """Table 3 per (architecture, dataset, epochs): one variant each. The report lays every variant
    whose cells a config trains under their own names, else the variant closest to ours."""
    figures = {  # arch -> dataset -> epochs -> (BN, AdvProp, RobMask)
        "resnet18": {"cifar10": {20: (92.59, 93.45, 94.64), 100: (94.87, 95.3, 96.10)},
                     "cifar100": {20: (75.88, 76.15, 77.61), 100: (77.7, 76.82, 78.77)}},
        "densenet121": {"cifar10": {20: (93.26, 94.61, 95.30), 100: (94.71, 94.61, 96.47)},
                        "cifar100": {20: (74.79, 73.61, 75.11), 100: (77.63, 76.88, 80.18)}},
        "preact_resnet18": {"cifar10": {20: (91.93, 92.55, 94.04), 100: (94.37, 95.33, 95.97)},
                            "cifar100": {20: (70.79, 72.71, 73.59), 100: (76.14, 76.87, 78.19)}},
        "resnext29": {"cifar10": {20: (93.12, 93.37, 95.03), 100: (95.15, 95.29, 96.06)},
                      "cifar100": {20: (74.26, 72.18, 74.65), 100: (78.60, 76.35, 79.54)}},
    }
    out = []
    for arch, by_data in figures.items():
        for data, by_epochs in by_data.items():
            for epochs, (bn, advprop, robmask) in by_epochs.items():
                # a cell's own models (``bn_resnet18_20``: configs/*_robmask_table3.yaml), else the roles
                out.append(Table("Table 3", "Clean accuracy of BN, AdvProp and RobMask",
                                 replace(TABLE3_SETTING, dataset=data, arch=arch, epochs=epochs), (Column("clean"),), (
                    Row("BN", f"bn_{arch}_{epochs}", (bn,), fallback="standard"),
                    Row("AdvProp", f"advprop_{arch}_{epochs}", (advprop,), fallback="advprop"),
                    Row("RobMask", f"robmask_{arch}_{epochs}", (robmask,), fallback="robmask"),
                )))
    return out


_GRID = tuple(Column(f"{e * 8:g}/255", "pgd", eps=e) for e in FIVE_EPS)
TABLE5 = Table("Table 5", "RobMask and AdvProp under PGD over eps", replace(SETTING, attack="PGD-100"), _GRID, (
    Row("Adv. Training", "adversarial", (78.86, 72.61, 65.27, 57.15, 47.97)),
    Row("AdvProp", "advprop_aux", (85.98, 78.34, 69.24, 57.61, 46.04), fallback="advprop", deployment="branch 1"),
    Row("RobMask", "robmask_max", (89.99, 82.91, 72.23, 58.63, 44.50), fallback="robmask", deployment="strength 1"),
), note="Eps columns are fractions of the threat eps: a column our eps grid lacks is \"—\".")
TABLE6 = Table("Table 6", "RobMask and AdvProp under AutoAttack over eps", replace(SETTING, attack="AutoAttack standard"),
               tuple(Column(f"{e * 8:g}/255", "autoattack", eps=e) for e in FIVE_EPS), (
    Row("Adv. Training", "adversarial", (78.86, 70.99, 62.94, 53.83, 44.66)),
    Row("AdvProp", "advprop_aux", (85.98, 77.73, 67.57, 55.36, 43.13), fallback="advprop", deployment="branch 1"),
    Row("RobMask", "robmask_max", (89.99, 81.87, 70.99, 55.9, 41.7), fallback="robmask", deployment="strength 1"),
    Row("RobMask eps_max 10/255", "robmask_wide", (86.5, 78.47, 68.08, 56.89, 44.69)),
), note="AutoAttack at an eps is ours only where the protocol runs it over the grid (protocol `robmask`); "
        "elsewhere it runs at the threat eps alone and the other columns are \"—\".")
TABLE7 = Table("Table 7", "AdvProp's extensions", replace(TABLE3_SETTING, arch="densenet121", epochs=100),
               (Column("clean"),), (
    Row("AdvProp", "advprop", (94.61,)),
    Row("with random perturbation strength", "advprop_random_eps", (94.50,)),
    Row("with 2 auxiliary BN", "advprop_2aux", (95.10,)),
    Row("RobMask", "robmask", (96.47,)),
))

# Table 2: BN interpolation, p = 1 (the first model) to p = 0 (its BN fine-tune): clean and robust %
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


def table9_means(layers: dict[str, list[int]] | None = None) -> dict[str, float | None]:
    """The paper's mean per column over ``layers[column]`` (default: every layer it gives)."""
    out = {}
    for i, name in enumerate(TABLE9_COLUMNS):
        keep = layers[name] if layers else table9_layers(name)
        values = [TABLE9[layer][i] for layer in keep if layer < len(TABLE9) and TABLE9[layer][i] is not None]
        out[name] = sum(values) / len(values) if values else None
    return out


PAPER = Paper("masking", "Adversarial Masking: Towards Understanding Robustness Trade-off for Generalization",
              SETTING, (
    Claim("robmask.t1.bn_params.robust", "Table 1", "Adversarial fine-tuning of BN alone makes a standard "
          "network robust", a="bn_params", b="standard", metric="pgd", direction=1, paper_a=26.51, paper_b=0.0),
    Claim("robmask.t1.bn_params.clean", "Table 1", "Adversarial fine-tuning of BN alone costs a standard network clean "
          "accuracy", a="bn_params", b="standard",
          metric="clean", direction=-1, paper_a=53.96, paper_b=91.97),
    Claim("robmask.t1.clean_bn.clean", "Table 1", "Standard fine-tuning of BN gives an adversarially trained "
          "network back clean accuracy", a="adv_clean_bn", b="adversarial", metric="clean", direction=1,
          paper_a=86.96, paper_b=78.47),
    Claim("robmask.t1.clean_bn.robust", "Table 1", "Standard fine-tuning of BN takes most of an adversarially trained "
          "network's robustness", a="adv_clean_bn",
          b="adversarial", metric="pgd", direction=-1, paper_a=5.83, paper_b=48.67),
    Claim("robmask.t3.robmask.clean", "Table 3", "RobMask (deployed at the clean masking) is more accurate on "
          "clean images than standard training", a="robmask", b="standard", metric="clean", direction=1,
          paper_a=94.64, paper_b=92.59),
    Claim("robmask.t3.advprop.clean", "Table 3", "AdvProp (main BN) is more accurate on clean images than "
          "standard training", a="advprop", b="standard", metric="clean", direction=1, paper_a=93.45, paper_b=92.59),
    Claim("robmask.t3.robmask_vs_advprop", "Table 3", "RobMask is more accurate on clean images than AdvProp",
          a="robmask", b="advprop", metric="clean", direction=1, paper_a=94.64, paper_b=93.45),
    # the same claims of RobMask trained as Algorithm 1 prints it, without the clean pass
    Claim("robmask.t3.alg1.clean", "Table 3", "RobMask as Algorithm 1 prints it (no clean pass) is more accurate on "
          "clean images than standard training", a="robmask_alg1", b="standard", metric="clean", direction=1,
          paper_a=94.64, paper_b=92.59),
    Claim("robmask.t3.alg1_vs_advprop", "Table 3", "RobMask as Algorithm 1 prints it is more accurate on clean images "
          "than AdvProp", a="robmask_alg1", b="advprop", metric="clean", direction=1, paper_a=94.64, paper_b=93.45),
), readings=(
    Reading("with the clean pass through u(0) (`robmask`, the default)",
            ("robmask.t3.robmask.clean", "robmask.t3.robmask_vs_advprop")),
    Reading("Algorithm 1 as printed (`robmask_alg1`)", ("robmask.t3.alg1.clean", "robmask.t3.alg1_vs_advprop")),
), tables=(TABLE1, *_table3(), TABLE5, TABLE6, TABLE7), trends=(
    Trend("robmask.dial.clean", "Sec. 4 (RobMask's strength dial)", "RobMask's masking of a larger strength costs "
          "clean accuracy", series="dial:robmask", x="strength", y="clean", direction=-1),
    Trend("robmask.dial.robust", "Sec. 4 (RobMask's strength dial)", "RobMask's masking of a larger strength is more "
          "robust", series="dial:robmask", x="strength", y="robust", direction=1),
    Trend("robmask.t2.clean", "Table 2", "Interpolating BN from the adversarial model (p = 1) to its clean BN "
          "fine-tune (p = 0) raises clean accuracy as p falls", series="interpolate:adv_to_clean_bn", x="p",
          y="clean", direction=-1),
    Trend("robmask.t2.robust", "Table 2", "Interpolating BN from the adversarial model to its clean BN fine-tune lowers robustness as p falls", series="interpolate:adv_to_clean_bn",
          x="p", y="robust", direction=1),
), short="Adversarial Masking")
#: the setting each claim's figures come from, where it is not the paper's default
SETTINGS = {c.id: replace(TABLE3_SETTING, epochs=20) for c in PAPER.claims if c.where == "Table 3"}
