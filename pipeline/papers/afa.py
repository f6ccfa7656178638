""""Adaptive Feature Alignment for Adversarial Training". WRN-28-10 on CIFAR-10, PGD at 8/255
over the grid {0, 1, 2, 4, 8}/255 (Table 1: four base methods with and without AFA; Table 3:
other attacks, its adaptive attack and black-box transfer; Table 4: the number of BN branches K;
Fig. 6: the fusion weight against eps)."""

from pipeline.papers.ledger import Claim, Column, Paper, Row, Setting, Table, Trend

SETTING = Setting(dataset="cifar10", arch="wrn28_10", epochs=None, threat_eps=8 / 255, attack="PGD",
                  deployment="as its method deploys it", metric="correct on the attacked input")

FRACTIONS = (0.0, 1 / 8, 1 / 4, 1 / 2, 1.0)  # {0, 1, 2, 4, 8}/255 at 8/255
GRID = tuple(Column(f"{f * 8:g}/255", "pgd", eps=f) for f in FRACTIONS)

TABLE1 = Table("Table 1", "AFA against its bases", SETTING, GRID, (
    Row("Standard", "standard_afa_grid", (95.2, 30.5, 3.0, 0.0, 0.0, 25.7)),
    Row("PGD-AT", "adversarial_afa_grid", (86.9, 81.5, 78.5, 68.8, 46.2, 72.4)),
    Row("PGD-AT + AFA", "afa_pgd_at_adaptive", (95.8, 87.0, 83.9, 72.6, 50.0, 77.9)),
    Row("TRADES", "trades_afa_grid", (83.2, 80.5, 77.6, 71.3, 53.8, 73.3)),
    Row("TRADES + AFA", "afa_trades_adaptive", (95.4, 86.8, 82.7, 72.1, 52.6, 77.9)),
    Row("IAT", "iat_afa_grid", (92.9, 88.3, 84.4, 73.5, 46.2, 77.0)),
    Row("IAT + AFA", "afa_iat_adaptive", (96.1, 86.2, 81.7, 73.7, 46.2, 76.7)),
    Row("MART", "mart_afa_grid", (83.6, 81.0, 78.2, 72.3, 55.3, 74.1)),
    Row("MART + AFA", "afa_mart_adaptive", (95.9, 84.3, 84.2, 73.5, 56.1, 78.8)),
), average="pgd", note="Eps columns are fractions of the threat eps, read from views on AFA's grid.")

BLACK_BOX = tuple(Column(f"black-box {f * 8:g}/255", "transfer", eps=f) for f in FRACTIONS)
TABLE3 = Table("Table 3", "AFA under other attacks, its adaptive attack and black-box transfer", SETTING, (
    Column("clean"), Column("PGD", "pgd"), Column("FGSM", "fgsm"), Column("C&W", "cw_linf_alone"),
    Column("PGD+Ada, best single weighting", "afa_adaptive_best_single"),
    Column("PGD+Ada, all seven per sample (ours)", "afa_adaptive_alone"), *BLACK_BOX), tuple(
    Row(label, source, figs) for label, source, figs in (
        ("PGD-AT", "adversarial_afa_grid", (86.9, 46.2, 56.1, 45.3, None, None, 86.9, 85.2, 83.1, 78.2, 66.8, 80.0)),
        ("PGD-AT + AFA", "afa_pgd_at_adaptive", (95.8, 50.0, 81.1, 48.3, 48.2, None, 95.8, 94.6, 90.5, 91.9, 67.9, 88.1)),
        ("TRADES", "trades_afa_grid", (83.2, 53.8, 64.6, 52.5, None, None, 83.2, 81.5, 79.0, 74.1, 65.3, 76.6)),
        ("TRADES + AFA", "afa_trades_adaptive", (95.4, 52.6, 80.3, 51.0, 52.2, None, 95.4, 94.7, 92.7, 82.4, 65.9, 86.2)),
        ("IAT", "iat_afa_grid", (92.9, 46.2, 65.7, 43.4, None, None, 92.9, 91.2, 88.7, 84.5, 71.8, 85.8)),
        ("IAT + AFA", "afa_iat_adaptive", (96.1, 46.2, 80.6, 43.5, 46.1, None, 96.1, 95.2, 93.6, 87.0, 74.0, 89.2)),
        ("MART", "mart_afa_grid", (83.6, 55.3, 64.3, 53.4, None, None, 83.6, 82.0, 80.0, 76.1, 66.0, 77.6)),
        ("MART + AFA", "afa_mart_adaptive", (95.9, 56.0, 81.3, 53.6, 55.6, None, 95.9, 95.3, 93.4, 83.7, 67.7, 87.2)))),
    average="transfer", note="C&W: CW-Linf measured by itself (\"—\" where the cascade ran it only after PGD). "
    "PGD+Ada: AFA's adaptive attack by itself, each of its seven CE:BCE weightings on every image; the paper "
    "reports the best single weighting, ours also the per-image union of the seven (robust only if every weighting "
    "fails). Black-box: PGD crafted on the surrogate of `evaluate.checks.surrogate` "
    "(the paper's: a separately trained model).")

TABLE4 = Table("Table 4", "AFA: the number of BN branches K", SETTING, GRID, (
    Row("K = 2", "afa_k=2", (95.0, 85.1, 82.2, 70.4, 48.1, 76.2)),
    Row("K = 3", "afa_k=3", (95.5, 86.7, 83.2, 72.3, 48.6, 77.3)),
    Row("K = 5", "afa_k=5", (95.8, 87.0, 83.9, 72.6, 50.0, 77.9), fallback="afa_pgd_at_adaptive"),
    Row("K = 9", "afa_k=9", (95.6, 87.2, 84.5, 72.9, 50.4, 78.1)),
), average="pgd", note="K = 5 is the main model where the grid has no K = 5 point.")

PAPER = Paper("afa", "Adaptive Feature Alignment for Adversarial Training", SETTING, (
    Claim("afa.pgd_at.clean", "Table 1", "AFA on PGD-AT is more accurate on clean images than PGD-AT",
          a="afa_pgd_at", b="adversarial", metric="clean", direction=1, paper_a=95.8, paper_b=86.9),
    Claim("afa.pgd_at.robust", "Table 1", "AFA on PGD-AT is more robust than PGD-AT at the threat eps",
          a="afa_pgd_at", b="adversarial", metric="pgd", direction=1, paper_a=50.0, paper_b=46.2),
    Claim("afa.t3.adaptive", "Table 3", "AFA's adaptive attack (PGD+Ada, its best single weighting) takes little "
          "beyond plain PGD: it is below PGD", a="afa_pgd_at_adaptive", b="afa_pgd_at_adaptive",
          metric="afa_adaptive_best_single",
          metric_b="pgd", direction=-1, paper_a=48.2, paper_b=50.0),
    Claim("afa.k5_vs_k2", "Table 4", "Five BN branches are more robust than two", a="afa_k=5", b="afa_k=2",
          metric="pgd", direction=1, paper_a=50.0, paper_b=48.1),
), tables=(TABLE1, TABLE3, TABLE4), trends=(
    Trend("afa.fig6.w1", "Fig. 6", "AFA's fusion weight W1 rises with the attack's eps", series="strength:afa_pgd_at",
          x="eps", y="w1_mean", direction=1),
), short="AFA")
