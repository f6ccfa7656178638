"""The report's section on norm shaping ("Achieving Both Model Accuracy and Robustness by
Adversarial Training with Batch Norm Shaping"): Tables I and II (training mode x attack x
inference mode), Table III (adaptive attacks), Table IV (training ratio x inference ratio, as a
heat map), the three confoundings of Sec. IV, each beside the paper's figures, and a paragraph
on how far the paper's protocol (attacks crafted on population statistics, scored under shaping)
overstates robustness against an attacker who knows the deployment.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.analysis import paper_numbers as paper
from pipeline.analysis.plots import heatmaps
from pipeline.analysis.report import setting_note
from pipeline.analysis.thesis_report import Results
from pipeline.io import read_json, write_csv
from pipeline.layout import analysis_dir

LABELS = {"pgd": "PGD", "cw": "CW-L2", "fgsm": "FGSM", "deepfool": "DeepFool", "shaping": "Shaping"}


def _f(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def _analysis(res: Results, kind: str, name: str) -> dict | None:
    """The metrics of analysis ``name`` of ``kind`` (shaping, confoundings), when it exists."""
    if (kind, name) not in res.params.analysis_items:
        return None
    path = analysis_dir(res.params, kind, name, res.root) / "metrics.json"
    return read_json(path) if path.exists() else None


def _shaping(res: Results, name: str) -> dict | None:
    return _analysis(res, "shaping", name)


def _robust(m: dict, attack: str, mode: str) -> float | None:
    if attack == "shaping":
        return m["shaping_attack"].get(mode)
    for key, by_mode in m["protocol"].items():
        if key == attack or key.split("@")[0] == attack:
            return by_mode.get(mode)
    return None


def tables_1_2(res: Results) -> list[str]:
    found = {t: [(label, name, fig_clean, figs, _shaping(res, name)) for label, name, fig_clean, figs in rows]
             for t, rows in paper.SHAPING_TABLES.items()}
    if not any(m for rows in found.values() for *_, m in rows):
        return []
    first = next(m for rows in found.values() for *_, m in rows if m)  # the settings it ran with
    out = ["", "## Norm shaping: training modes x attacks x inference modes (Tables I and II)", "",
           f"Our models ({first['n_samples']} test images) beside the paper's ({paper.SHAPING_SETTING}); accuracies as "
           f"fractions, \"ours / paper\". Every attack but Shaping is crafted on population statistics (PN), as the "
           f"paper's attack code did, and scored under each inference mode: BN (statistics of test batches of "
           f"{res.params.evaluate.deployment.batch_size}), PN, BN+Shaping ({res.params.evaluate.deployment.n_ref} clean "
           f"training images per query). Shaping: PGD crafted with {first['shaping_refs']} unchanged test images per "
           f"query. FGSM at {first['fgsm_scale']:g}x the threat eps. {setting_note(res.params, paper.SHAPING_MATCH)}"]
    for table, rows in found.items():
        base = "PGD" if table == "I" else "TRADES"
        out += ["", f"### Table {table}: {base} base", "",
                "| training | attack | BN acc | BN robust | PN acc | PN robust | BN+Shaping acc | BN+Shaping robust |",
                "|---|---|---|---|---|---|---|---|"]
        for label, name, fig_clean, figs, m in rows:
            for i, attack in enumerate(paper.SHAPING_ATTACKS):
                cells = []
                for j, mode in enumerate(paper.SHAPING_MODES):
                    acc = f"{_f(m['clean'][mode]) if m else '—'} / {fig_clean[j]:.3f}" if i == 0 else ""
                    rob = f"{_f(_robust(m, attack, mode)) if m else '—'} / {figs[attack][j]:.3f}"
                    cells += [acc, rob]
                out.append(f"| {f'{label} (`{name}`)' if i == 0 else ''} | {LABELS[attack]} | " + " | ".join(cells) + " |")
    return out


def table_3(res: Results) -> list[str]:
    names = [n for n in res.params.analyses_of("shaping") if _shaping(res, n)]
    if not names:
        return []
    out = ["", "## Norm shaping against an attacker who knows the deployment (Table III and beyond)", "",
           "PGD crafted on the deployment that scores it. Under BN+Shaping: with each query's exact shaping images "
           "(known; the paper's adaptive attack), with other training images of the attacker's own (own; its "
           "\"slightly weaker\" attack), and with EOT over the random shaping images. Beside it, the paper's "
           "protocol: PGD crafted on PN and scored under BN+Shaping.", "",
           "| model | protocol (PGD on PN) under BN+Shaping | BN, white-box | PN, white-box | BN+Shaping: known | own | EOT | paper: own | paper: known | protocol overstates by |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    sentences = []
    for name in names:
        m = _shaping(res, name)
        a = m["adaptive"]
        protocol = _robust(m, "pgd", "BN+Shaping")
        fig = paper.SHAPING_TABLE3.get(name, (None, None))
        gap = m["protocol_overstates_by"]
        out.append(f"| {name} | {_f(protocol)} | {_f(a['BN'])} | {_f(a['PN'])} | {_f(a['known_references'])} | "
                   f"{_f(a['own_references'])} | {_f(a['eot'])} | {_f(fig[0])} | {_f(fig[1])} | "
                   f"{100 * gap:+.1f} points{' **(suspect)**' if m['suspect'] else ''} |")
        worst = min(("known", a["known_references"]), ("own", a["own_references"]), ("EOT", a["eot"]), key=lambda t: t[1])
        sentences.append(f"`{name}`: the protocol gives {100 * protocol:.1f}% under BN+Shaping; the strongest adaptive "
                         f"attack ({worst[0]}) leaves {100 * worst[1]:.1f}%"
                         + (f", so the protocol overstates its robustness by {100 * gap:.1f} points and the model is "
                            "flagged suspect." if m["suspect"] else
                            f" ({100 * gap:+.1f} points): within the tolerance of {100 * res.params.evaluate.checks.tolerance:.0f} points."))
    return out + ["", "How far the paper's protocol overstates robustness on our data: " + " ".join(sentences)]


def table_4(res: Results, out_dir: Path) -> list[str]:
    points = [(int(v), m) for v, m in res.grid("shaping_ratio") if m.get("robust_by_refs")]
    if not points:
        return []
    refs = list(res.params.ablations["shaping_ratio"].inference_refs or [])  # the grid's order (JSON keys are sorted)
    ours = [[m["robust_by_refs"].get(str(r)) for r in refs] for _, m in points]
    rows = [f"1:{v}" for v, _ in points]
    write_csv(out_dir / "shaping_ratio.csv", [{"training": f"1:{v}", **{f"1:{r}": m["robust_by_refs"].get(str(r))
                                                                      for r in refs}} for v, m in points])
    panels = {"ours": (rows, [f"1:{r}" for r in refs], ours)}
    paper_rows = [v for v, _ in points if v in paper.SHAPING_TABLE4]
    if paper_rows and refs == paper.SHAPING_TABLE4_REFS:
        panels["paper (WRN-32-10, CIFAR-10)"] = ([f"1:{v}" for v in paper_rows], [f"1:{r}" for r in refs],
                                                [paper.SHAPING_TABLE4[v] for v in paper_rows])
    heatmaps(panels, out_dir / "shaping_ratio.png", "Norm shaping: PGD robust accuracy by training and inference ratio",
             "adv:clean at inference", "adv:clean in training")
    out = ["", "## Norm shaping: training ratio against inference ratio (Table IV)", "",
           "PGD crafted on population statistics, each query scored with n clean training images (1:0: the "
           "statistics of the adversarial test batch alone); `ablations.shaping_ratio`. Ours / paper.", "",
           "| training | " + " | ".join(f"1:{r}" for r in refs) + " |", "|---|" + "---|" * len(refs)]
    for (v, m), row in zip(points, ours):
        fig = paper.SHAPING_TABLE4.get(v)
        out.append(f"| 1:{v} | " + " | ".join(f"{_f(o)} / {_f(fig[i]) if fig and i < len(fig) else '—'}"
                                              for i, o in enumerate(row)) + " |")
    best = max(points, key=lambda p: max(v for v in p[1]["robust_by_refs"].values()))
    out += ["", f"The paper finds 1:3 best overall and needs at least as many clean images at inference as in "
            f"training; ours is best at training ratio 1:{best[0]}.", "", "![ratio heat map](figures/shaping_ratio.png)"]
    return out


def confounding_section(res: Results) -> list[str]:
    found = [(n, m) for n in res.params.analyses_of("confoundings") if (m := _analysis(res, "confoundings", n))]
    if not found:
        return []
    out = ["", "## The three confoundings of BN in adversarial training (norm shaping, Sec. IV)", "",
           "On training images: I. the logit error of FGSM examples normalized with the clean batch's statistics "
           "against their own; II. PGD perturbation size (mean L2 per image) crafted with population against batch "
           "statistics; III. with the shaping attack (a clean part of 3 per adversarial sample held fixed) against "
           "plain PGD on the batch's own statistics. As \"x% larger\".", "",
           "| model | I (FGSM logit error) | II (PGD with PN) | III (shaping attack) |", "|---|---|---|---|"]
    for name, m in found:
        out.append(f"| {name} | {100 * m['confounding_I']:+.1f}% | {100 * m['confounding_II']:+.1f}% | "
                   f"{100 * m['confounding_III']:+.1f}% |")
    p = paper.CONFOUNDINGS
    out.append(f"| paper (WRN-32-10, CIFAR-10) | +{100 * p['confounding_I']:.0f}% | +{100 * p['confounding_II']:.0f}% | "
               f"+{100 * p['confounding_III']:.0f}% |")
    holds = [f"{k.split('_')[1]}: {'holds' if m[k] > 0 else 'does not hold'}" for k in p for _, m in found[:1]]
    return out + ["", "Whether each confounding points the paper's way on our data (larger, not smaller): "
                  + ", ".join(holds) + "."]


def shaping_sections(params, out_dir: Path, root: Path = Path(".")) -> list[str]:
    res = Results(params, root)
    return tables_1_2(res) + table_3(res) + table_4(res, out_dir) + confounding_section(res)
