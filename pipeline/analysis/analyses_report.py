"""The report's sections on analyses (what the pipeline measures besides the attack suite): BN
interpolation ("Adversarial Masking", Table 2), per-layer BN statistics (its Table 9, the
poster's m/b rewrite), strength dials, feature statistics and fusion weights against eps (AFA,
Fig. 3 and 6), and the plots of the grids whose tables the ledger lays (thesis Fig. 6.1 and 5.3,
norm shaping's Table IV) and of the clean/robust frontier. The paper figures they set beside
ours come from the ledger's paper modules; every file is read through the ledger's reader."""

from __future__ import annotations

from pathlib import Path

from pipeline.analysis.plots import bars, frontier, heatmaps, lines_plot
from pipeline.io import write_csv
from pipeline.layout import analysis_dir
from pipeline.papers import poster, robmask, shaping, thesis
from pipeline.papers.built import Built
from pipeline.papers.render import eps_label, num, pct

ROBUST = "pgd"  # the column the dial, grid and frontier sections read their robust figure from


def _f(v: float | None, digits: int = 3, signed: bool = False) -> str:
    return "—" if v is None else (f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}")


def _gap_sentence(what: str, white: float | None, adaptive: float | None, tolerance: float) -> str:
    """Whether an attack that knows the defense takes more than ``tolerance`` beyond the plain one."""
    if white is None or adaptive is None:
        return ""
    gap = 100 * (white - adaptive)
    if gap > 100 * tolerance:
        return (f"**Flagged:** {what}: the adaptive attack takes {gap:.1f} points more than the plain one "
                f"({pct(white)} to {pct(adaptive)}); the plain figure overstates robustness.")
    return f"{what}: the adaptive attack is within {100 * tolerance:.0f} points of the plain one ({pct(white)} to {pct(adaptive)})."


# --------------------------------------------------------------------------------------------
# BN interpolation and BN statistics ("Adversarial Masking", Tables 2 and 9; the poster)


def interpolation(built: Built) -> list[str]:
    params, lines = built.params, []
    for name, pair in params.analyses_of("interpolate").items():
        rows = built.analysis_rows("interpolate", name, "interpolation.csv")
        meta = built.analysis("interpolate", name)
        if not rows or not meta:
            continue
        fig = robmask.TABLE2.get(name)
        ps = sorted({r["p"] for r in rows}, reverse=True)
        folder = analysis_dir(params, "interpolate", name)
        lines += ["", f"## BN interpolation `{pair.a}` (p=1) to `{pair.b}` (p=0) (\"Adversarial Masking\", Table 2)", "",
                  f"gamma = p·gamma_a + (1-p)·gamma_b, beta likewise. Robust: {meta['attacks']} at eps "
                  f"{meta['eps']:.4f} (the worst case over them), on {meta['n_samples']} test images; at p=1 "
                  f"(and at p=0 when the statistics are interpolated) the model is `{pair.a}` (`{pair.b}`), so "
                  f"the endpoints equal their rows of the threat-eps table under the same attacks. Running "
                  f"statistics: `interpolate` mixes them with p, `a` keeps `{pair.a}`'s (the paper does not "
                  f"say which it uses).", "",
                  "| | " + " | ".join(f"p={v:.1f}" for v in ps) + " |", "|---|" + "---|" * len(ps)]
        for stats in dict.fromkeys(r["stats"] for r in rows):
            by_p = {r["p"]: r for r in rows if r["stats"] == stats}
            for what in ("clean", "robust"):
                against = meta.get(f"{what}_violations_{stats}", 0)
                lines.append(f"| {what}, stats {stats} ({int(against)} against the trend) | "
                             + " | ".join(pct(by_p[v][what]) if v in by_p else "—" for v in ps) + " |")
        if fig and ps == robmask.TABLE2_P:
            lines += ["| paper clean | " + " | ".join(num(v) for v in fig[0]) + " |",
                      "| paper robust | " + " | ".join(num(v) for v in fig[1]) + " |"]
        lines += ["", f"![trade-off](../{folder}/tradeoff.png)"]
    return lines


def bn_statistics(built: Built) -> list[str]:
    params, lines = built.params, []
    for name, pair in params.analyses_of("analyze_bn").items():
        m = built.analysis("analyze_bn", name)
        layers = built.analysis_rows("analyze_bn", name, "layers.csv")
        if not m or not layers:
            continue
        folder = analysis_dir(params, "analyze_bn", name)
        table9 = name == robmask.TABLE9_PAIR
        same_pair = (pair.a, pair.b) == poster.M_PAIR
        lines += ["", f"## BN statistics: `{pair.a}` against `{pair.b}`", "",
                  f"Mean over {len(layers)} BN layers of the cosine similarity between the two models "
                  f"(\"Adversarial Masking\", Table 9{'; paper and ours compared over the same layers below' if table9 else ''}); "
                  f"the poster's rewrite BN(z) = m·z + b: mean difference in m ({pair.b} minus {pair.a}) "
                  f"{m['mean_m_diff']:+.3f} "
                  + (f"(the poster's, for the same pair BN PARAMS against NORMAL: {poster.MEAN_M_DIFF:+.3f})" if same_pair else
                     f"(the poster reports {poster.MEAN_M_DIFF:+.3f} for another pair, BN PARAMS against NORMAL, and none "
                     "for this one)")
                  + f"; channels turned off {m['channels_off']}, turned on {m['channels_on']}, magnified "
                  f"{m['channels_magnified']} of {m['channels']}.", "",
                  "| | running mean | running var | gamma | beta |", "|---|---|---|---|---|",
                  "| ours | " + " | ".join(_f(m[f"mean_cos_{c}"], 4) for c in robmask.TABLE9_COLUMNS) + " |"]
        if table9:  # the paper gives gamma and beta for layers 0-18, mean and var for 1-18
            shared = {c: [i for i in robmask.table9_layers(c) if i < len(layers)] for c in robmask.TABLE9_COLUMNS}
            ours = {c: sum(layers[i][f"cos_{c}"] for i in idx) / len(idx) if idx else None for c, idx in shared.items()}
            theirs = robmask.table9_means(shared)
            span = {c: f"{idx[0]}-{idx[-1]}" if idx else "none" for c, idx in shared.items()}
            lines += ["| ours, shared layers | " + " | ".join(_f(ours[c], 4) for c in robmask.TABLE9_COLUMNS) + " |",
                      "| paper, shared layers | " + " | ".join(_f(theirs[c], 4) for c in robmask.TABLE9_COLUMNS) + " |",
                      "| layers compared | " + " | ".join(span[c] for c in robmask.TABLE9_COLUMNS) + " |"]
        for ref, sims in (m.get(f"logits_vs_{pair.logits_of}") or {}).items():
            lines.append(f"\nLogits of `{ref}` against `{pair.logits_of}`: cosine {sims['cosine']:.3f}, "
                         f"same prediction on {100 * sims['agreement']:.1f}% of {sims['n']} test images.")
        lines += ["", f"![first BN layer](../{folder}/first_bn_layer.png)", f"![m and b](../{folder}/rescaling.png)",
                  f"![feature maps](../{folder}/feature_maps.png)"]
    return lines


# --------------------------------------------------------------------------------------------
# dials and feature statistics against eps


def dials(built: Built) -> list[str]:
    params, lines = built.params, []
    for name, dial in params.analyses_of("dial").items():
        rows = built.analysis_rows("dial", name, "dial.csv")
        meta = built.analysis("dial", name)
        if not rows or not meta:
            continue
        adaptive = rows[0].get("robust_adaptive") is not None
        lines += ["", f"## `{dial.model}` along its dial `{dial.key}` (`{name}`)", "",
                  f"`{meta['model']}` deployed at each setting of `{dial.key}`, attacked with {meta['attacks']} at eps "
                  f"{meta['eps']:.4f} on {meta['n_samples']} test images"
                  + ("; \"crafted at any setting\" is the per-sample worst case over the attack crafted at every "
                     "setting of the dial, the adaptive view: the attacker need not craft at the deployed one."
                     if adaptive else "."), "",
                  f"| {dial.key} | clean | PGD, crafted at it |" + (" PGD, crafted at any setting |" if adaptive else ""),
                  "|---|---|---|" + ("---|" if adaptive else "")]
        for r in rows:
            lines.append(f"| {r[dial.key]:g} | {pct(r['clean'])} | {pct(r['robust'])} |"
                         + (f" {pct(r['robust_adaptive'])} |" if adaptive else ""))
        if adaptive:
            worst = max(rows, key=lambda r: r["robust"] - r["robust_adaptive"])
            lines += ["", _gap_sentence(f"{dial.model} at {dial.key} = {worst[dial.key]:g}", worst["robust"],
                                        worst["robust_adaptive"], params.evaluate.checks.tolerance)]
        lines += ["", f"![{dial.key} dial](../{analysis_dir(params, 'dial', name)}/dial.png)"]
    return lines


def feature_statistics(built: Built) -> list[str]:
    params = built.params
    found = [(n, m) for n in params.analyses_of("strength") if (m := built.analysis("strength", n))]
    if not found:
        return []
    ran = found[0][1]
    out = ["", "## Feature statistics and the fusion weight against eps (\"Adaptive Feature Alignment\", Fig. 3 and Fig. 6)", "",
           f"PGD at each eps of {', '.join(eps_label(e) for e in ran['eps'])} on {ran['n_samples']} test images; the "
           f"per-channel mean and variance of `{ran['feature']}`'s output, and Spearman's rho of each channel's statistic "
           "with eps (|rho| = 1: monotone). The paper finds both change smoothly and monotonically, and W1 = 1 - W0 "
           "rising with eps (its trend's verdict: claims.md). The paper's Fig. 6 feeds AFA examples crafted on a "
           "separately trained model: the last two columns, crafted on `evaluate.checks.surrogate`.", "",
           "| model | mean: mean abs rho | mean: share monotone | var: mean abs rho | var: share monotone | "
           "W1 rank correlation with eps | W1 at each eps | transferred: W1 rank correlation | transferred: W1 at each eps |",
           "|---|---|---|---|---|---|---|---|---|"]

    def series(values):
        return ", ".join(f"{v:.4f}" for v in values) if values else "—"

    for name, m in found:
        out.append(f"| {name} | {_f(m.get('mean_abs_rho'))} | {pct(m.get('mean_monotone_share'))} | "
                   f"{_f(m.get('var_abs_rho'))} | {pct(m.get('var_monotone_share'))} | "
                   f"{_f(m.get('w1_spearman'), signed=True)} | {series(m.get('w1_mean'))} | "
                   f"{_f(m.get('w1_spearman_transfer'), signed=True)} | {series(m.get('w1_mean_transfer'))} |")
    out += [""] + [f"![features of {n}](../{analysis_dir(params, 'strength', n)}/features.png)" for n, _ in found]
    return out + [f"![fusion weight of {n}](../{analysis_dir(params, 'strength', n)}/fusion.png)"
                  for n, m in found if m.get("w1_mean")]


# --------------------------------------------------------------------------------------------
# plots of the grids the ledger's tables lay, and the frontier


def _points(built: Built, grid: str) -> list[tuple[object, dict]]:
    spec = built.params.ablations.get(grid)
    return [(v, m) for v in (spec.values if spec else []) if (m := built.metrics(f"{grid}={v}"))]


def grid_plots(built: Built, out_dir: Path) -> list[str]:
    """Thesis Fig. 6.1 and Fig. 5.3 and norm shaping's Table IV as pictures (their tables are the ledger's)."""
    lines = []
    ratio = _points(built, "clean_ratio")
    if ratio:
        rows = [{"clean_fraction": float(v), "clean": m["clean"], "pgd": m.get(ROBUST)} for v, m in ratio]
        write_csv(out_dir / "clean_ratio.csv", rows)
        paper = {r.source: r.paper[1] for r in thesis.FIG6_1.rows if r.paper[1] is not None}
        lines_plot({"clean": [(r["clean_fraction"], r["clean"]) for r in rows],
                    "PGD": [(r["clean_fraction"], r["pgd"]) for r in rows],
                    "paper PGD-2000": [(float(s.partition("=")[2]), v / 100) for s, v in paper.items()]},
                   out_dir / "clean_ratio.png", "Share of clean images in the batch (thesis Fig. 6.1)",
                   "clean images per adversarial image")
        lines += ["", "![clean ratio](figures/clean_ratio.png)"]
    acts = _points(built, "activation")
    if acts:
        bars({str(v): {"clean": m["clean"], "PGD": m.get(ROBUST) or 0.0} for v, m in acts},
             out_dir / "activations.png", "Accuracy and robustness per activation (thesis Fig. 5.3)")
        write_csv(out_dir / "activations.csv", [{"activation": v, "clean": m["clean"], "pgd": m.get(ROBUST),
                                                 "worst_case": m["worst_case"]} for v, m in acts])
        lines += ["", "![activations](figures/activations.png)"]
    points = [(int(v), m) for v, m in _points(built, "shaping_ratio") if m.get("robust_by_refs")]
    if points:
        refs = list(built.params.ablations["shaping_ratio"].inference_refs or [])
        ours = [[m["robust_by_refs"].get(str(r)) for r in refs] for _, m in points]
        write_csv(out_dir / "shaping_ratio.csv", [{"training": f"1:{v}", **{f"1:{r}": m["robust_by_refs"].get(str(r))
                                                                          for r in refs}} for v, m in points])
        panels = {"ours": ([f"1:{v}" for v, _ in points], [f"1:{r}" for r in refs], ours)}
        paper = {r.source: [x / 100 for x in r.paper] for r in shaping.TABLE_IV.rows}
        have = [v for v, _ in points if f"shaping_ratio={v}" in paper]
        if have and tuple(refs) == shaping.REFS:
            panels["paper (WRN-32-10, CIFAR-10)"] = ([f"1:{v}" for v in have], [f"1:{r}" for r in refs],
                                                    [paper[f"shaping_ratio={v}"] for v in have])
        heatmaps(panels, out_dir / "shaping_ratio.png", "Norm shaping: PGD robust accuracy by training and inference ratio",
                 "adv:clean at inference", "adv:clean in training")
        best = max(points, key=lambda p: max(p[1]["robust_by_refs"].values()))
        lines += ["", f"Norm shaping's Table IV: the paper finds 1:3 best overall; of the training ratios this config "
                  f"ran ({', '.join(f'1:{v}' for v, _ in points)}), ours is best at 1:{best[0]}.", "",
                  "![ratio heat map](figures/shaping_ratio.png)"]
    return lines


def frontier_section(built: Built, out_dir: Path) -> list[str]:
    """Clean against robust accuracy of every method with a dial (a strength or fusion dial, a BN
    interpolation, a grid over a method's option), beside every model evaluated at the full tier."""
    params = built.params
    curves: dict[str, list[tuple[float, float, str]]] = {}
    rows = []

    def add(label: str, clean: float | None, robust: float | None, tag: str) -> None:
        if clean is None or robust is None:
            return
        curves.setdefault(label, []).append((clean, robust, tag))
        rows.append({"series": label, "setting": tag, "clean": clean, "robust": robust})

    for name, dial in params.analyses_of("dial").items():
        for r in built.analysis_rows("dial", name, "dial.csv"):
            add(f"{dial.model} along {dial.key}", r["clean"], r["robust"], f"{r[dial.key]:g}")
            if r.get("robust_adaptive") is not None:
                add(f"{dial.model} along {dial.key}, crafted at any setting", r["clean"], r["robust_adaptive"], "")
    for name, pair in params.analyses_of("interpolate").items():
        for r in built.analysis_rows("interpolate", name, "interpolation.csv"):
            if r["stats"] == "interpolate":
                add(f"BN interpolation {pair.a} -> {pair.b}", r["clean"], r["robust"], f"p={r['p']:g}")
    for grid, spec in params.ablations.items():
        if not spec.key.startswith("options.") or spec.then is not None:
            continue  # a dial of one method's option (TRADES' beta), with the method's own model on it
        option = spec.key.removeprefix("options.")
        method = spec.config_for(spec.values[0]).method
        points = [(v, m) for v, m in _points(built, grid) if isinstance(v, (int, float))]
        points += [(getattr(params.training(t.model).options, option), built.metrics(name))
                   for name, t in params.targets.items() if t.view is None and t.model in params.trained
                   and params.training(t.model).method == method and not params.is_finetune(t.model)
                   and built.metrics(name)]
        if len(points) < 2:
            continue
        for v, m in sorted(points, key=lambda p: p[0]):
            add(f"{method} over {option}", m["clean"], m.get(ROBUST), f"{option}={v:g}")
    for name, t in params.targets.items():
        m = built.metrics(name)
        if t.view is None and t.tier == "full" and m:
            add(name, m["clean"], m.get(ROBUST), "")
    if not rows:
        return []
    write_csv(out_dir / "frontier.csv", rows)
    frontier(curves, out_dir / "frontier.png", f"Clean against robust accuracy (PGD at eps {params.evaluate.threat:.4f})")
    return ["", "## The trade-off frontier", "",
            "Every method with a dial traced along it (a strength or fusion dial, BN interpolation, a grid over one "
            "method's option such as TRADES' beta), beside every model of the full tier; robust is the suite's PGD at "
            "the threat eps (a dial's adaptive series: crafted at any setting). `reports/figures/frontier.csv` holds "
            "the points.", "", "![frontier](figures/frontier.png)"]


def adaptive_gaps(built: Built) -> list[str]:
    """Every target attacked by an attack that knows its defense (``*_adaptive``, by itself) against
    the plain PGD of the same row: a gap beyond ``evaluate.checks.tolerance`` is flagged."""
    params, sentences = built.params, []
    for name in params.targets:
        m = built.metrics(name) or {}
        for key in (k for k in m if k.endswith("_adaptive_alone")):
            sentences.append(_gap_sentence(f"`{name}` ({key.removesuffix('_alone')})", m.get(ROBUST), m[key],
                                           params.evaluate.checks.tolerance))
    if not sentences:
        return []
    return ["", "## Adaptive attacks against plain PGD", "",
            "Each row an attack that knows the defense ran on (AFA's PGD+Ada: cross-entropy plus BCE on the weight "
            "generator's W0, the worst of seven weightings) by itself, against the row's plain PGD at the threat eps; "
            "a gap beyond the masking checks' tolerance means the plain figure overstates robustness.", "",
            *[f"- {s}" for s in sentences]]


def analyses_sections(params, out_dir: Path, root: Path | str = Path(".")) -> list[str]:
    """Markdown for every analysis section whose results exist; plots and their CSVs go to ``out_dir``."""
    built = Built(params, root)
    return (interpolation(built) + bn_statistics(built) + dials(built) + feature_statistics(built)
            + adaptive_gaps(built) + grid_plots(built, out_dir) + frontier_section(built, out_dir))
