"""The report's sections on the mixture-BN family: C. Xie's thesis (Tables 6.1 and 6.2, Fig. 6.1,
GroupNorm, Fig. 5.3 and Table 5.1, the denoising blocks of Ch. 4) and the AdvProp rows of
"Adversarial Masking" (Tables 3 and 7), each with the papers' figures beside ours and a sentence
on whether the paper's direction holds on our data.

Robust figures are the suite's PGD (PGD-50 in the default) at the threat eps (the thesis reports targeted PGD-2000 or PGD-200 at
16/255 on ImageNet); both evaluation tiers run that PGD identically, so full and screen rows
compare. A direction "holds" when our difference has the paper's sign; when the two 95%
intervals overlap we say the difference is within the noise of our sample.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.analysis import paper_numbers as paper
from pipeline.analysis.plots import bars, lines_plot
from pipeline.analysis.report import setting_note
from pipeline.io import read_json, write_csv
from pipeline.layout import ablation_dir, result_dir

ROBUST = "pgd"  # the column every section reads its robust figure from


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def _num(v: float | None, signed: bool = False) -> str:
    return "—" if v is None else (f"{v:+.1f}" if signed else f"{v:.1f}")


class Results:
    """The metrics of evaluated targets and ablation points that exist under ``root``."""

    def __init__(self, params, root: Path):
        self.params, self.root = params, root
        self.targets = params.targets

    def __call__(self, name: str | None) -> dict | None:
        if name not in self.targets:
            return None
        path = result_dir(self.params, name, self.root) / "metrics.json"
        return read_json(path) if path.exists() else None

    def grid(self, name: str) -> list[tuple[object, dict]]:
        grid = self.params.ablations.get(name)
        out = []
        for v in (grid.values if grid else []):
            path = ablation_dir(name, v, self.root) / "screen" / "metrics.json"
            if path.exists():
                out.append((v, read_json(path)))
        return out


def _interval(m: dict, key: str) -> list[float] | None:
    return (m.get("ci95") or {}).get(key)


def direction(a: dict, b: dict, key: str, paper_delta: float, what: str) -> str:
    """Whether ``b - a`` on ``key`` has the paper's sign, in words."""
    if a.get(key) is None or b.get(key) is None:
        return f"{what}: not measured."
    delta = 100 * (b[key] - a[key])
    ia, ib = _interval(a, key), _interval(b, key)
    noise = ia is not None and ib is not None and ia[0] <= ib[1] and ib[0] <= ia[1]
    if abs(delta) < 0.05:
        verdict = "ours shows no difference"
    else:
        verdict = f"the paper's direction {'holds' if (delta > 0) == (paper_delta > 0) else 'does not hold'} on our data"
    return (f"{what}: paper {paper_delta:+.1f}, ours {delta:+.1f}: {verdict}"
            + (" (within the 95% intervals: not distinguishable at our sample size)." if noise else "."))


def _pgd(params) -> str:
    """The robust column's attack as the report names it (PGD-50)."""
    spec = next((a for a in params.evaluate.attack_list if a.key == ROBUST), None)
    return f"PGD-{spec.steps}" if spec is not None else "PGD"


def _tier(m: dict | None) -> str:
    return "—" if m is None else m.get("tier", "full")


# --------------------------------------------------------------------------------------------


def mixture_bn(res: Results) -> list[str]:
    rows = [(label, name, measure, fig, rel, res(name)) for label, name, measure, fig, rel in paper.TABLE6_1]
    if not any(r[-1] for r in rows):
        return []
    note = setting_note(res.params, paper.THESIS_MATCH)
    out = ["", "## Mixture BN: MBN_clean and MBN_adv (thesis Table 6.1)", "",
           f"Paper: {paper.THESIS_SETTING}; ours: {_pgd(res.params)} at the threat eps. The MBN rows are the AdvProp model "
           f"read through its main BN (MBN_clean) and its auxiliary BN (MBN_adv); the ALP rows add adversarial logit "
           f"pairing with Eq. 6.1's alpha 0.5. {note}", "",
           "| training strategy | ours (target, tier) | measure | ours | ours, difference | paper | paper, difference |",
           "|---|---|---|---|---|---|---|"]
    base = None
    for label, name, measure, fig, rel, m in rows:
        if not rel:
            base = m
        value = None if m is None else m.get(measure)
        diff = None if (not rel or m is None or base is None) else 100 * (m[measure] - base[measure])
        out.append(f"| {label} | {name} ({_tier(m)}) | {'clean' if measure == 'clean' else 'PGD'} | {_pct(value)} | "
                   f"{_num(diff, True) if rel else ''} | {'' if rel else _num(fig)} | {_num(fig, True) if rel else ''} |")
    sentences = []
    by = {name: m for _, name, _, _, _, m in rows}
    for (_, a, measure, _, _), (_, b, _, fig, _) in ((paper.TABLE6_1[0], paper.TABLE6_1[1]),
                                                      (paper.TABLE6_1[3], paper.TABLE6_1[4])):
        if by.get(a) and by.get(b):
            sentences.append(direction(by[a], by[b], measure, fig, f"{b} against {a} ({measure})"))
    out += ["", " ".join(sentences)] if sentences else []

    main, aux = res("advprop"), res("advprop_aux")
    cross_main, cross_aux = res("advprop_from_aux"), res("advprop_aux_from_main")
    if main and aux:
        out += ["", "### Each branch on its own domain and on the other's", "",
                "Clean accuracy is each branch on clean images; PGD through its own branch is the white-box attack; "
                "PGD crafted on the other branch is a transfer from the other BN of the same network.", "",
                "| branch | clean | PGD, own branch | PGD, crafted on the other branch |", "|---|---|---|---|",
                f"| MBN_clean (advprop, main BN) | {_pct(main['clean'])} | {_pct(main.get(ROBUST))} | "
                f"{_pct((cross_main or {}).get(ROBUST))} |",
                f"| MBN_adv (advprop_aux, auxiliary BN) | {_pct(aux['clean'])} | {_pct(aux.get(ROBUST))} | "
                f"{_pct((cross_aux or {}).get(ROBUST))} |", ""]
        def verdict(mine: float, other: float) -> str:  # a tie (the same count of test images) is no win
            return "wins" if mine > other else "ties" if mine == other else "loses"

        on_clean = verdict(main["clean"], aux["clean"])
        under_pgd = verdict(aux.get(ROBUST, 0), main.get(ROBUST, 0))
        both = {on_clean, under_pgd}
        out.append(f"The thesis expects each branch to win its own domain: on clean images MBN_clean "
                   f"{on_clean} ({_pct(main['clean'])} against {_pct(aux['clean'])}); under "
                   f"PGD MBN_adv {under_pgd} ({_pct(aux.get(ROBUST))} against {_pct(main.get(ROBUST))}). "
                   + ("Ours does on both." if both == {"wins"} else
                      "Ours does where a branch wins; a tie at this sample size supports neither reading."
                      if "loses" not in both else "Ours does not on both."))
    return out


def consistent_bn(res: Results) -> list[str]:
    rows = [(label, a, fig_a, b, fig_b, res(a), res(b) if b else None) for label, a, fig_a, b, fig_b in paper.TABLE6_2]
    if not any(r[-1] for r in rows):
        return []
    epochs = {n: cfg.running_stats_epochs for n, (_, cfg) in res.params.trained.items()}
    out = ["", "## Consistent BN: running statistics at the end of training (thesis Table 6.2)", "",
           f"Paper: {paper.THESIS_SETTING}, running statistics for the last 10 of 110 epochs; ours: the last "
           f"{max(epochs.values() or [0])} epochs, {_pgd(res.params)} at the threat eps. {setting_note(res.params, paper.THESIS_MATCH)}", "",
           "| training strategy | ours | ours, consistent (*) | difference | paper | paper, * |", "|---|---|---|---|---|---|"]
    sentences = []
    for label, a, fig_a, b, fig_b, ma, mb in rows:
        diff = None if not (ma and mb) else 100 * (mb[ROBUST] - ma[ROBUST])
        out.append(f"| {label} | {_pct((ma or {}).get(ROBUST))} ({a}) | {_pct((mb or {}).get(ROBUST))} ({b or '—'}) | "
                   f"{_num(diff, True)} | {_num(fig_a)} | {_num(fig_b, True)} |")
        if ma and mb:
            sentences.append(direction(ma, mb, ROBUST, fig_b, f"{b} against {a}"))
    return out + ["", " ".join(sentences)]


def groupnorm(res: Results) -> list[str]:
    bn, gn = res("adversarial"), res("adversarial_gn")
    if not (bn and gn):
        return []
    return ["", "## GroupNorm in place of BN (thesis Sec. 6.4.2)", "",
            f"Both PGD-AT; the thesis trains its GroupNorm network on 100% adv + 100% clean. "
            f"{setting_note(res.params, paper.THESIS_MATCH)}", "",
            "| norm | clean | PGD | paper clean | paper PGD-2000 |", "|---|---|---|---|---|",
            f"| BatchNorm (adversarial) | {_pct(bn['clean'])} | {_pct(bn.get(ROBUST))} | 62.3 | 39.2 |",
            f"| GroupNorm (adversarial_gn) | {_pct(gn['clean'])} | {_pct(gn.get(ROBUST))} | "
            f"{_num(paper.GROUPNORM['clean'])} | {_num(paper.GROUPNORM['pgd'])} |", "",
            direction(bn, gn, "clean", paper.GROUPNORM["clean"] - 62.3, "GroupNorm against BatchNorm (clean)") + " "
            + direction(bn, gn, ROBUST, paper.GROUPNORM["pgd"] - 39.2, "GroupNorm against BatchNorm (PGD)")]


def _grid_table(points: list[tuple[object, dict]], label: str, paper_col: dict | None = None) -> list[str]:
    head = f"| {label} | clean | PGD | screen worst case [95% CI] |" + (" paper robust |" if paper_col is not None else "")
    out = [head, "|---|---|---|---|" + ("---|" if paper_col is not None else "")]
    for v, m in points:
        ci = _interval(m, "worst_case")
        cell = f"{_pct(m['worst_case'])}" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")
        extra = ""
        if paper_col is not None:
            fig = paper_col.get(v)
            extra = f" {_num(fig[1] if isinstance(fig, tuple) else fig)} |"
        out.append(f"| {v} | {_pct(m['clean'])} | {_pct(m.get(ROBUST))} | {cell} |{extra}")
    return out


def clean_ratio(res: Results, out_dir: Path) -> list[str]:
    points = res.grid("clean_ratio")
    if not points:
        return []
    rows = [{"clean_fraction": float(v), "clean": m["clean"], "pgd": m.get(ROBUST), "worst_case": m["worst_case"]}
            for v, m in points]
    write_csv(out_dir / "clean_ratio.csv", rows)
    lines_plot({"clean": [(r["clean_fraction"], r["clean"]) for r in rows],
                "PGD": [(r["clean_fraction"], r["pgd"]) for r in rows],
                "paper PGD-2000": [(k, v / 100) for k, v in sorted(paper.FIG6_1.items())]},
               out_dir / "clean_ratio.png", "Share of clean images in the batch (thesis Fig. 6.1)",
               "clean images per adversarial image")
    first, last = points[0][1], points[-1][1]
    epochs = res.params.ablations["clean_ratio"].config_for(points[0][0]).epochs
    out = ["", "## The clean-image ratio (thesis Fig. 6.1)", "",
           "Every PGD example of the batch plus this share of their clean counterparts, all through one BN "
           f"(`ablations.clean_ratio`, {epochs} epochs, screen tier). Paper: {paper.THESIS_SETTING}; it states the endpoints, "
           f"{paper.FIG6_1[0.0]} (0%) and {paper.FIG6_1[1.0]} (100%) under PGD-2000.", ""]
    out += _grid_table(points, "clean share", {k: v for k, v in paper.FIG6_1.items()})
    out += ["", direction(first, last, ROBUST, paper.FIG6_1[1.0] - paper.FIG6_1[0.0],
                          f"{points[-1][0]} against {points[0][0]} clean share (PGD)"),
            "", "![clean ratio](figures/clean_ratio.png)"]
    return out


def activations(res: Results, out_dir: Path) -> list[str]:
    points = res.grid("activation")
    if not points:
        return []
    bars({str(v): {"clean": m["clean"], "PGD": m.get(ROBUST) or 0.0} for v, m in points},
         out_dir / "activations.png", "Accuracy and robustness per activation (thesis Fig. 5.3)")
    write_csv(out_dir / "activations.csv", [{"activation": v, "clean": m["clean"], "pgd": m.get(ROBUST),
                                             "worst_case": m["worst_case"]} for v, m in points])
    attack = res.params.ablations["activation"].config_for(points[0][0]).attack
    epochs = res.params.ablations["activation"].config_for(points[0][0]).epochs
    out = ["", "## Smooth activations (thesis Fig. 5.3, Table 5.1)", "",
           f"PGD-AT with a {attack.steps}-step attack (the thesis trains with PGD-1) for {epochs} epochs, one network "
           "per activation (`ablations.activation`, screen tier); `relu_softplus_grad` is ReLU with Softplus' gradient "
           "in every backward pass (Table 5.1, last row); `celu` with its default alpha 1 is `elu` exactly (the "
           f"thesis tells them apart at alpha != 1, Table 5.2). Paper: {paper.THESIS_SETTING}, clean and PGD-200 "
           "where its text states them.", "",
           "| activation | clean | PGD | screen worst case [95% CI] | paper clean | paper PGD-200 |",
           "|---|---|---|---|---|---|"]
    for line, (v, _) in zip(_grid_table(points, "activation")[2:], points):
        fig = paper.FIG5_3.get(v, (None, None))
        out.append(f"{line} {_num(fig[0])} | {_num(fig[1])} |")
    relu = dict(points).get("relu")
    if relu:
        helped = [str(v) for v, m in points if v != "relu" and m.get(ROBUST, 0) > relu.get(ROBUST, 0)]
        clear = [str(v) for v, m in points if v != "relu"
                 and (_interval(m, ROBUST) or [0])[0] > (_interval(relu, ROBUST) or [0, 1])[1]]
        out += ["", f"The thesis finds every smooth activation more robust than ReLU. Ours: "
                f"{', '.join(helped) or 'none'} of {len(points) - 1} beat ReLU under PGD "
                f"({_pct(relu.get(ROBUST))}); beyond the 95% intervals: {', '.join(clear) or 'none'}."]
    return out + ["", "![activations](figures/activations.png)"]


def denoising(res: Results) -> list[str]:
    points = res.grid("denoise")
    if not points:
        return []
    after = res.params.ablations["denoise"].train.get("model", {}).get("denoise", {}).get("after")
    epochs = res.params.ablations["denoise"].config_for(points[0][0]).epochs
    out = ["", "## Feature-denoising blocks (thesis Ch. 4, Tables 4.1 and 4.2)", "",
           f"PGD-AT for {epochs} epochs with a denoising block after stage(s) {after} (`ablations.denoise`, screen "
           "tier); `null` "
           "is the block without its filter (1x1 conv and residual only), the thesis' control. Paper: four blocks in "
           f"ResNet-152 on ImageNet, black-box accuracy (Table 4.2; the baseline without blocks: "
           f"{paper.TABLE4_2_BASELINE}).", ""]
    out += _grid_table(points, "filter", paper.TABLE4_2)
    null = dict(points).get("null")
    if null:
        sentences = [direction(null, m, ROBUST, paper.TABLE4_2[v] - paper.TABLE4_2["null"], f"{v} against null")
                     for v, m in points if v != "null" and v in paper.TABLE4_2]
        out += ["", " ".join(sentences) or "No filter of ours has a paper figure to compare with."]
    return out


def advprop_tables(res: Results) -> list[str]:
    rows3 = [(label, name, f20, f100, res(name)) for label, name, f20, f100 in paper.TABLE3]
    rows7 = [(label, name, fig, res(name)) for label, name, fig in paper.TABLE7]
    if not any(r[-1] for r in rows3 + rows7):
        return []
    out = ["", "## AdvProp in \"Adversarial Masking\" (Tables 3 and 7)", "",
           f"Clean accuracy. Paper: Table 3 {paper.TABLE3_SETTING}; Table 7 {paper.TABLE7_SETTING}. "
           f"{setting_note(res.params, paper.ROBMASK_MATCH)}", "",
           "| table | row | ours (target) | ours clean | paper clean |", "|---|---|---|---|---|"]
    for label, name, f20, f100, m in rows3:
        out.append(f"| 3 | {label} | {name} | {_pct((m or {}).get('clean'))} | {f20} (20 ep.), {f100} (100 ep.) |")
    for label, name, fig, m in rows7:
        out.append(f"| 7 | {label} | {name} | {_pct((m or {}).get('clean'))} | {fig} |")
    sentences = []
    if rows3[0][-1] and rows3[1][-1]:
        sentences.append(direction(rows3[0][-1], rows3[1][-1], "clean", rows3[1][3] - rows3[0][3], "AdvProp against BN"))
    base = rows7[0][-1]
    for label, name, fig, m in rows7[1:]:
        if base and m:
            sentences.append(direction(base, m, "clean", fig - rows7[0][2], f"AdvProp {label}"))
    return out + ["", " ".join(sentences)]


def thesis_sections(params, out_dir: Path, root: Path = Path(".")) -> list[str]:
    """Markdown for every section whose results exist; plots and their CSVs go to ``out_dir``."""
    res = Results(params, root)
    return (mixture_bn(res) + consistent_bn(res) + groupnorm(res) + clean_ratio(res, out_dir)
            + activations(res, out_dir) + denoising(res) + advprop_tables(res))
