"""The report's sections on strength-conditioned normalization: RobMask ("Adversarial Masking",
Tables 5 and 6, its strength dial and the adaptive view of it) and AFA ("Adaptive Feature
Alignment for Adversarial Training", Tables 1, 3 and 4, Fig. 3 and Fig. 6), each beside the
papers' figures; and one frontier plot of clean against robust accuracy for every method with a
dial (RobMask's strength, AFA's fusion weight, BN interpolation, TRADES' beta).

Gaps between an attack that knows the defense and one that does not (AFA's adaptive attack
against plain PGD, RobMask's strength picked by the attacker against the deployed strength) are
findings: a gap above ``evaluate.checks.tolerance`` is flagged in words.
"""

from __future__ import annotations

import csv
from pathlib import Path

from pipeline.analysis import paper_numbers as paper
from pipeline.analysis.plots import frontier
from pipeline.analysis.report import setting_note
from pipeline.analysis.thesis_report import ROBUST, Results, _num, _pct, direction
from pipeline.io import read_json, write_csv
from pipeline.layout import analysis_dir, result_dir


def _curve(res: Results, name: str) -> dict[float, dict]:
    """A target's accuracy.csv as eps -> row (accuracies as floats, blanks as None)."""
    if name not in res.targets or not (path := result_dir(res.params, name, res.root) / "accuracy.csv").exists():
        return {}
    with open(path) as f:
        rows = [{k: (float(v) if v != "" else None) for k, v in row.items()} for row in csv.DictReader(f)]
    return {r["eps"]: r for r in rows}


def _analysis_file(res: Results, kind: str, name: str, file: str) -> Path | None:
    """A file of analysis ``name`` of ``kind``, if the params have that analysis and it exists."""
    if (kind, name) not in res.params.analysis_items:
        return None
    path = analysis_dir(res.params, kind, name, res.root) / file
    return path if path.exists() else None


def _read(res: Results, kind: str, name: str, file: str) -> dict | None:
    path = _analysis_file(res, kind, name, file)
    return read_json(path) if path else None


def _csv(res: Results, kind: str, name: str, file: str) -> list[dict]:
    path = _analysis_file(res, kind, name, file)
    if not path:
        return []
    with open(path) as f:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in row.items()} for row in csv.DictReader(f)]


def _f3(v: float | None, signed: bool = False) -> str:
    return "—" if v is None else (f"{v:+.3f}" if signed else f"{v:.3f}")


def _eps(e: float) -> str:
    return f"{e * 255:.3g}/255"


def _gap_sentence(what: str, white: float | None, adaptive: float | None, tolerance: float) -> str:
    if white is None or adaptive is None:
        return ""
    gap = 100 * (white - adaptive)
    if gap > 100 * tolerance:
        return (f"**Flagged:** {what}: the adaptive attack takes {gap:.1f} points more than the plain one "
                f"({_pct(white)} to {_pct(adaptive)}); the plain figure overstates robustness.")
    return f"{what}: the adaptive attack is within {100 * tolerance:.0f} points of the plain one ({_pct(white)} to {_pct(adaptive)})."


# --------------------------------------------------------------------------------------------
# RobMask


def robmask_tables(res: Results) -> list[str]:
    rows = [(label, name, fig, res(name)) for label, name, fig in paper.TABLE5]
    if not any(m for *_, m in rows) or not res("robmask"):
        return []
    grid = sorted({e for _, name, _, m in rows if m for e in _curve(res, name)})
    t = res.params.evaluate.threat
    out = ["", "## RobMask under attack (\"Adversarial Masking\", Tables 5 and 6)", "",
           f"Ours: PGD (the suite's) over our eps grid and AutoAttack (standard) at the threat eps {_eps(t)}; "
           f"paper: {paper.ROBUST_SETTING}, PGD-100 (Table 5) and AutoAttack (Table 6) at each eps. "
           f"{setting_note(res.params, {**paper.ROBMASK_MATCH, 'attack': None})}", "",
           "| row | ours (target) | " + " | ".join(f"PGD {_eps(e)}" for e in grid) + f" | AutoAttack {_eps(t)} | "
           + " | ".join(f"paper PGD {_eps(e)}" for e in paper.TABLE5_EPS) + " |",
           "|---|---|" + "---|" * (len(grid) + 1 + len(paper.TABLE5_EPS))]
    for label, name, fig, m in rows + [(lbl, n, None, res(n)) for lbl, n, _ in paper.TABLE6[3:]]:
        curve = _curve(res, name)
        cells = [_pct((curve.get(e) or {}).get(ROBUST)) for e in grid]
        aa = (m or {}).get("autoattack")
        out.append(f"| {label} | {name} ({(m or {}).get('tier', '—')}) | " + " | ".join(cells) + f" | {_pct(aa)} | "
                   + " | ".join(_num(v) for v in (fig or [None] * len(paper.TABLE5_EPS))) + " |")
    out += ["", "Paper AutoAttack at 8/255 (Table 6): " + ", ".join(f"{label} {fig[-1]}" for label, _, fig in paper.TABLE6)
            + ". Table 6 of the paper gives AutoAttack at every eps; ours runs it at the threat eps only."]
    adv, rob = res("adversarial"), res("robmask")
    if adv and rob:
        out += ["", direction(adv, rob, "clean", fig_delta(paper.TABLE5, 0), "RobMask against adversarial training (clean)")
                + " " + direction(adv, rob, ROBUST, fig_delta(paper.TABLE5, -1), f"RobMask against adversarial training (PGD at {_eps(t)})")]
    return out


def fig_delta(table, column: int) -> float:
    """RobMask minus adversarial training in a paper table's column."""
    by = {name: fig for _, name, fig in table}
    return by["robmask"][column] - by["adversarial"][column]


def robmask_dial(res: Results) -> list[str]:
    name = next((d for d, dial in res.params.analyses_of("dial").items() if dial.key == "strength"), None)
    rows = _csv(res, "dial", str(name), "dial.csv") if name else []
    meta = _read(res, "dial", str(name), "metrics.json") if name else None
    if not rows or not meta:
        return []
    adaptive = "robust_adaptive" in rows[0]
    out = ["", f"## RobMask's strength dial (`{name}`)", "",
           f"`{meta['model']}` deployed with the masking of strength p (p = 0: the clean masking it deploys by "
           f"default; p = 1: the one trained at eps_max), each setting attacked with {meta['attacks']} at eps "
           f"{meta['eps']:.4f} on {meta['n_samples']} test images"
           + ("; \"crafted at any p\" is the per-sample worst case over the attack crafted at every p of the dial, "
              "the adaptive view: the attacker need not craft at the deployed strength." if adaptive else "."), "",
           "| p | clean | PGD, crafted at p | " + ("PGD, crafted at any p |" if adaptive else ""),
           "|---|---|---|" + ("---|" if adaptive else "")]
    for r in rows:
        out.append(f"| {r['strength']:g} | {_pct(r['clean'])} | {_pct(r['robust'])} | "
                   + (f"{_pct(r['robust_adaptive'])} |" if adaptive else ""))
    if adaptive:
        worst = max(rows, key=lambda r: r["robust"] - r["robust_adaptive"])
        out += ["", _gap_sentence(f"RobMask at p = {worst['strength']:g}", worst["robust"], worst["robust_adaptive"],
                                  res.params.evaluate.checks.tolerance)]
    return out + ["", f"![strength dial](../{analysis_dir(res.params, 'dial', name)}/dial.png)"]


# --------------------------------------------------------------------------------------------
# AFA


def _afa_grid_row(res: Results, name: str | None) -> tuple[list[float | None], float | None]:
    """PGD accuracy at the AFA grid (fractions of the threat eps) and its average, from a view on that grid."""
    if not name:
        return [], None
    curve = _curve(res, name)
    t = res.params.evaluate.threat
    values = []
    for f in paper.AFA_EPS_FRACTIONS:
        row = next((r for e, r in curve.items() if abs(e - f * t) < 1e-9), None)
        values.append(None if row is None else row.get(ROBUST))
    known = [v for v in values if v is not None]
    return values, (sum(known) / len(known) if len(known) == len(values) else None)


def _view_on_afa_grid(res: Results, model: str) -> str | None:
    """What evaluated ``model`` on AFA's grid (relative to the threat eps): a view of it with its
    own extra attacks first (AFA's adaptive attack, the transfer), else the model's own row."""
    t = res.params.evaluate.threat
    want = [round(f * t, 9) for f in paper.AFA_EPS_FRACTIONS]
    targets = res.params.targets
    candidates = [n for n, t in targets.items() if t.view is not None and t.model == model]
    candidates += [model] if model in targets else []
    for name in candidates:
        if [round(e, 9) for e in res.params.evaluation_config(name).eps_grid] == want:
            return name
    return None


def afa_table1(res: Results) -> list[str]:
    rows = []
    for label, base, afa, fig_base, fig_afa in paper.AFA_TABLE1:
        rows.append((label, base, _view_on_afa_grid(res, base), fig_base))
        if afa:
            rows.append((f"{label} + AFA", afa, _view_on_afa_grid(res, afa), fig_afa))
    if not any(view and res(view) for _, _, view, _ in rows):
        return []
    t = res.params.evaluate.threat
    eps = [f * t for f in paper.AFA_EPS_FRACTIONS]
    out = ["", "## AFA against its bases (\"Adaptive Feature Alignment\", Table 1)", "",
           f"PGD accuracy over AFA's grid, {{0, 1/8, 1/4, 1/2, 1}} x the threat eps (the paper's {{0, 1, 2, 4, 8}}/255 "
           f"at 8/255); ours: {', '.join(_eps(e) for e in eps)}, the suite's PGD, from the `*_afa_grid` and "
           f"`afa_*_adaptive` views. Paper: {paper.AFA_SETTING}. {setting_note(res.params, paper.AFA_MATCH)}", "",
           "| method | ours (view) | " + " | ".join(_eps(e) for e in eps) + " | avg | paper: 0 | 1 | 2 | 4 | 8 | avg |",
           "|---|---|" + "---|" * (len(eps) + 1) + "---|" * 6]
    for label, model, view, fig in rows:
        values, avg = _afa_grid_row(res, view)
        out.append(f"| {label} | {model} ({view or '—'}) | " + " | ".join(_pct(v) for v in values or [None] * len(eps))
                   + f" | {_pct(avg)} | " + " | ".join(_num(v) for v in fig) + " |")
    sentences = []
    for label, base, afa, fig_base, fig_afa in paper.AFA_TABLE1:
        if not afa:
            continue
        mb, ma = res(_view_on_afa_grid(res, base)), res(_view_on_afa_grid(res, afa))
        if mb and ma:
            sentences.append(direction(mb, ma, "clean", fig_afa[0] - fig_base[0], f"AFA on {label} (clean)"))
            sentences.append(direction(mb, ma, ROBUST, fig_afa[4] - fig_base[4], f"AFA on {label} (PGD at {_eps(t)})"))
    return out + (["", " ".join(sentences)] if sentences else [])


def afa_table3(res: Results) -> list[str]:
    names = [(n, _view_on_afa_grid(res, n)) for n in paper.AFA_TABLE3]
    if not any(v and res(v) for _, v in names):
        return []
    t = res.params.evaluate.threat
    eps = [f * t for f in paper.AFA_EPS_FRACTIONS]
    out = ["", "## AFA under other attacks, its adaptive attack and black-box transfer (\"Adaptive Feature Alignment\", Table 3)", "",
           f"At the threat eps {_eps(t)}: clean, PGD, FGSM, CW-Linf (PGD on the CW margin, the paper's C&W) and, for AFA, "
           "its adaptive attack alone (PGD+Ada: CE plus BCE on the generator's W0, the worst of seven weightings; "
           "the plain PGD already differentiates through the generator). Black-box: PGD crafted on the standard "
           f"model, over AFA's grid. Paper: {paper.AFA_SETTING}.", "",
           "| model (view) | clean | PGD | FGSM | CW-Linf | PGD+Ada | black-box " + " | ".join(_eps(e) for e in eps)
           + " | paper: clean | PGD | FGSM | C&W | PGD+Ada | black-box avg |",
           "|---|---|---|---|---|---|" + "---|" * len(eps) + "---|" * 6]
    flags = []
    for model, view in names:
        m = res(view) if view else None
        if not m:
            continue
        curve = _curve(res, view)
        black = [(curve.get(e) or {}).get("transfer") for e in sorted(curve)] if curve else []
        (f_std, f_pgd, f_fgsm, f_cw, f_ada), f_black = paper.AFA_TABLE3[model]
        fgsm = next((r.get("fgsm") for e, r in curve.items() if abs(e - t) < 1e-9), None)
        ada = m.get("afa_adaptive_alone")
        out.append(f"| {model} ({view}) | {_pct(m['clean'])} | {_pct(m.get(ROBUST))} | {_pct(fgsm)} | "
                   f"{_pct(m.get('cw_linf_alone', m.get('cw_linf')))} | {_pct(ada)} | "
                   + " | ".join(_pct(b) for b in black or [None] * len(eps))
                   + f" | {_num(f_std)} | {_num(f_pgd)} | {_num(f_fgsm)} | {_num(f_cw)} | {_num(f_ada)} | {_num(f_black[-1])} |")
        if ada is not None:
            flags.append(_gap_sentence(f"{model}", m.get(ROBUST), ada, res.params.evaluate.checks.tolerance))
    note = ("CW-Linf runs in the cascade after PGD, so its column is cumulative (PGD and CW-Linf) unless the "
            "attack is measured alone.")
    return out + ["", note] + (["", " ".join(flags)] if flags else [])


def afa_table4(res: Results) -> list[str]:
    points = res.grid("afa_k")
    if not points:
        return []
    grid = res.params.ablations["afa_k"]
    cfg = grid.config_for(points[0][0])
    then = grid.then_config()
    out = ["", "## AFA: the number of BN branches K (\"Adaptive Feature Alignment\", Table 4)", "",
           f"`ablations.afa_k`: stage I with K branches (PGD-AT, {cfg.epochs} epochs, PGD-{cfg.attack.steps}), then "
           f"stage II ({then.epochs} epochs), screened at the threat eps. Paper: {paper.AFA_SETTING}, accuracy at "
           "0 and 8/255 of its grid.", "",
           "| K | clean | PGD | screen worst case | paper clean | paper 8/255 | paper avg |", "|---|---|---|---|---|---|---|"]
    for k, m in points:
        fig = paper.AFA_TABLE4.get(int(k), [None] * 6)
        out.append(f"| {k} | {_pct(m['clean'])} | {_pct(m.get(ROBUST))} | {_pct(m['worst_case'])} | "
                   f"{_num(fig[0])} | {_num(fig[4])} | {_num(fig[5])} |")
    first, last = points[0], points[-1]
    fig_first, fig_last = paper.AFA_TABLE4.get(int(first[0])), paper.AFA_TABLE4.get(int(last[0]))
    if fig_first and fig_last and len(points) > 1:
        out += ["", direction(first[1], last[1], ROBUST, fig_last[4] - fig_first[4], f"K = {last[0]} against K = {first[0]} (PGD)")]
    return out


def afa_statistics(res: Results) -> list[str]:
    found = [(name, _read(res, "strength", name, "metrics.json")) for name in res.params.analyses_of("strength")]
    found = [(n, m) for n, m in found if m]
    if not found:
        return []
    ran = found[0][1]  # the settings it ran with (the report reads no analysis settings from params)
    out = ["", "## Feature statistics and the fusion weight against eps (\"Adaptive Feature Alignment\", Fig. 3 and Fig. 6)", "",
           f"PGD at each eps of {', '.join(_eps(e) for e in ran['eps'])} on {ran['n_samples']} test images; the "
           f"per-channel mean and variance of `{ran['feature']}`'s output, and Spearman's rho of each channel's statistic "
           "with eps (|rho| = 1: monotone). The paper finds both change smoothly and monotonically, and W1 = 1 - W0 "
           "rising with eps.", "",
           "| model | mean: mean abs rho | mean: share monotone | var: mean abs rho | var: share monotone | W1 rank correlation with eps | W1 at each eps |",
           "|---|---|---|---|---|---|---|"]
    sentences = []
    for name, m in found:
        w1 = m.get("w1_mean")
        out.append(f"| {name} | {_f3(m.get('mean_abs_rho'))} | {_pct(m.get('mean_monotone_share'))} | "
                   f"{_f3(m.get('var_abs_rho'))} | {_pct(m.get('var_monotone_share'))} | "
                   f"{_f3(m.get('w1_spearman'), signed=True)} | {', '.join(f'{v:.4f}' for v in w1) if w1 else '—'} |")
        if m.get("w1_spearman") is not None:
            holds = m["w1_spearman"] > 0
            sentences.append(f"{name}: W1 {'rises' if holds else 'does not rise'} with eps (rho {m['w1_spearman']:+.3f}); "
                             f"the paper's direction {'holds' if holds else 'does not hold'} on our data.")
    images = [f"![features of {n}](../{analysis_dir(res.params, 'strength', n)}/features.png)" for n, _ in found]
    images += [f"![fusion weight of {n}](../{analysis_dir(res.params, 'strength', n)}/fusion.png)"
               for n, m in found if m.get("w1_mean")]
    return out + (["", " ".join(sentences)] if sentences else []) + [""] + images


# --------------------------------------------------------------------------------------------
# the frontier


def frontier_section(res: Results, out_dir: Path) -> list[str]:
    """Clean against robust accuracy of every method with a dial, and of single models, in one plot."""
    curves: dict[str, list[tuple[float, float, str]]] = {}
    rows = []

    def add(label: str, clean: float | None, robust: float | None, tag: str) -> None:
        if clean is None or robust is None:
            return
        curves.setdefault(label, []).append((clean, robust, tag))
        rows.append({"series": label, "setting": tag, "clean": clean, "robust": robust})

    for name, dial in res.params.analyses_of("dial").items():
        for r in _csv(res, "dial", name, "dial.csv"):
            add(f"{dial.model} along {dial.key}", r["clean"], r["robust"], f"{r[dial.key]:g}")
            if r.get("robust_adaptive") is not None:
                add(f"{dial.model} along {dial.key}, crafted at any setting", r["clean"], r["robust_adaptive"], "")
    for pair_name, pair in res.params.analyses_of("interpolate").items():
        for r in _csv_text(res, "interpolate", pair_name, "interpolation.csv"):
            if r["stats"] == "interpolate":
                add(f"BN interpolation {pair.a} -> {pair.b}", float(r["clean"]), float(r["robust"]), f"p={float(r['p']):g}")
    trades = [(float(v), m) for v, m in res.grid("trades_beta")]
    if res("trades"):
        trades.append((res.params.training("trades").options.beta, res("trades")))
    for beta, m in sorted(trades, key=lambda p: p[0]):
        add("TRADES over beta", m["clean"], m.get(ROBUST), f"beta={beta:g}")
    for name in ("standard", "adversarial", "advprop", "mart", "iat", "afa_pgd_at"):
        m = res(name)
        if m:
            add(name, m["clean"], m.get(ROBUST), "")
    if not rows:
        return []
    write_csv(out_dir / "frontier.csv", rows)
    frontier(curves, out_dir / "frontier.png", f"Clean against robust accuracy (PGD at eps {res.params.evaluate.threat:.4f})")
    return ["", "## The trade-off frontier", "",
            "Every method that has a dial traced along it (RobMask's strength, AFA's fixed fusion weight, BN "
            "interpolation, TRADES' beta), beside single models; robust is the suite's PGD at the threat eps "
            "(a dial's adaptive series: crafted at any setting). `reports/figures/frontier.csv` holds the points.", "",
            "![frontier](figures/frontier.png)"]


def _csv_text(res: Results, kind: str, name: str, file: str) -> list[dict]:
    path = _analysis_file(res, kind, name, file)
    if not path:
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def strength_sections(params, out_dir: Path, root: Path = Path(".")) -> list[str]:
    """Markdown for every section whose results exist; plots and their CSVs go to ``out_dir``."""
    res = Results(params, root)
    return (robmask_tables(res) + robmask_dial(res) + afa_table1(res) + afa_table3(res) + afa_table4(res)
            + afa_statistics(res) + frontier_section(res, out_dir))
