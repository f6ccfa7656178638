"""The report: tables of the evaluation results of every model, in markdown."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from pipeline import divergence
from pipeline.config import Params
from pipeline.io import read_json
from pipeline.layout import analysis_dir, model_dir, result_dir


@dataclass
class ModelResult:
    name: str
    metrics: dict  # results/GROUP/NAME/metrics.json
    curve: list[dict[str, float]]  # results/GROUP/NAME/accuracy.csv
    training: dict  # models/GROUP/MODEL/metrics.json
    run: dict | None  # results/GROUP/NAME/mlflow_run.json: the evaluation's MLflow run
    diverged: dict | None = None  # results/GROUP/NAME/diverged.json: its model diverged, nothing ran

    @property
    def model(self) -> str | None:
        return self.metrics.get("model")


UI = "http://127.0.0.1:5000"  # where `make mlflow-ui` serves a local store


def run_link(ref: dict | None) -> str:
    """A markdown link to the run in the MLflow UI (the tracking server's, else the local UI)."""
    if not ref or not ref.get("run_id"):
        return "—"
    uri = ref.get("tracking_uri") or ""
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else UI
    return f"[{ref['run_id'][:8]}]({base}/#/experiments/{ref.get('experiment_id')}/runs/{ref['run_id']})"


def load_results(params: Params, names: list[str], root: Path = Path(".")) -> list[ModelResult]:
    """Each target's evaluation, with the training metrics of its model (a view's: its model's);
    a target whose model diverged is a row with its marker and no figures."""
    out = []
    for name in names:
        res = result_dir(params, name, root)
        marker = divergence.read(res)
        if marker is not None:
            out.append(ModelResult(name, {"model": params.targets[name].model}, [], {}, None, marker))
            continue
        with open(res / "accuracy.csv") as f:
            curve = [{k: (float(v) if v != "" else None) for k, v in row.items()} for row in csv.DictReader(f)]
        ref = res / "mlflow_run.json"
        out.append(ModelResult(name, read_json(res / "metrics.json"), curve,
                               read_json(model_dir(params, params.targets[name].model, root) / "metrics.json"),
                               read_json(ref) if ref.exists() else None))
    return out


def _pct(v: float | str | None) -> str:
    return "—" if v is None or v == "" else f"{100 * float(v):.1f}"


def alone_table(results: list, attacks: list, labels: dict, cascade: bool) -> list[str]:
    """Each attack's own accuracy at the threat eps, as the papers' tables give it. Under the
    cascade an attack after the first threat-eps one ran only on what the earlier ones left, so
    its own figure is known only with ``alone: true``."""
    if not cascade:
        return []
    keys = [a.key for a in attacks]
    out = ["", "### Each attack alone", "",
           "Accuracy under each attack by itself. \"—\": the cascade ran it only on the samples the "
           "attacks before it left standing; set `alone: true` on the attack to measure it on all.", "",
           "| model | " + " | ".join(labels[k] for k in keys) + " |", "|---|" + "---|" * len(keys)]
    for r in results:
        out.append(f"| {r.name} | " + " | ".join(_pct(r.metrics.get(f"{k}_alone")) for k in keys) + " |")
    return out


def minimal_table(results: list, attacks: list, labels: dict) -> list[str]:
    """CW-L2 and DeepFool unbounded, as the norm-shaping paper reports them."""
    keys = [a.key for a in attacks if a.name in ("cw", "deepfool")]
    rows = [r for r in results if r.metrics.get("minimal")]
    if not keys or not rows:
        return []
    out = ["", "### Minimal perturbations (unbounded)", "",
           "Success rate on the samples each attack ran on, and the median L2 norm of its successful "
           "minimal perturbations (pixels in [0, 1]).", "",
           "| model | " + " | ".join(f"{labels[k]} success % | {labels[k]} median L2 | {labels[k]} n" for k in keys) + " |",
           "|---|" + "---|---|---|" * len(keys)]
    for r in rows:
        cells = []
        for k in keys:
            m = r.metrics["minimal"].get(k) or {}
            med = m.get("median_l2")
            cells.append(f"{_pct(m.get('success_rate'))} | {'—' if med is None else f'{med:.3f}'} | {m.get('n_attacked', 0)}")
        out.append(f"| {r.name} | " + " | ".join(cells) + " |")
    return out


def _ci(metrics: dict, key: str) -> str:
    ci = (metrics.get("ci95") or {}).get(key)
    return f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else ""


def overlap_sentence(results: list) -> str:
    """Which rows' worst-case intervals overlap: sorted by worst case, neighbours whose intervals
    overlap are joined with ~ (their order is within the noise)."""
    rows = sorted((r for r in results if (r.metrics.get("ci95") or {}).get("worst_case")),
                  key=lambda r: r.metrics["worst_case"])
    groups, current = [], rows[:1]
    for prev, row in zip(rows, rows[1:]):
        if row.metrics["ci95"]["worst_case"][0] <= prev.metrics["ci95"]["worst_case"][1]:
            current.append(row)
        else:
            groups.append(current)
            current = [row]
    groups.append(current)
    tied = [" ~ ".join(r.name for r in g) for g in groups if len(g) > 1]
    if not tied:
        return "No two neighbouring rows' worst-case intervals overlap."
    return "Worst-case figures whose intervals overlap (not distinguishable at this sample size): " + "; ".join(tied) + "."


def _eps(e: float) -> str:
    return f"{e * 255:.3g}/255"


def _options(cfg) -> str:
    opts = cfg.options.model_dump()
    return f" ({', '.join(f'{k} {v:g}' if isinstance(v, float) else f'{k} {v}' for k, v in opts.items())})" if opts else ""


def _method(params: Params, name: str) -> str:
    """How a row was made: the method (with its options), what a fine-tune trained, or the view."""
    target = params.targets.get(name)
    view = target.view if target is not None else None
    if view is not None:
        how = [f"mode {view.mode}"] if view.mode else []
        how += [f"{k} {v}" for k, v in view.route.items()]
        if view.craft is not None:
            how += ["attacks crafted on " + ", ".join([f"mode {view.craft.mode}"] if view.craft.mode else []
                                                      + [f"{k} {v}" for k, v in view.craft.route.items()])]
        return f"view of {view.model}: {', '.join(how) or 'its default deployment'}"
    if params.is_finetune(name):
        ft = params.training(name)
        return f"{ft.method}{_options(ft)} on {ft.trainable} from {ft.start}"
    cfg = params.training(name)
    arch = cfg.model or params.model
    extra = "" if arch == params.model else f" on {arch.arch}" + "".join(
        f", {k} {v}" for k, v in arch.model_dump(exclude={"arch"}, exclude_defaults=True).items())
    if cfg.running_stats_epochs:
        extra += f", running statistics for the last {cfg.running_stats_epochs} epochs"
    return f"{cfg.method}{_options(cfg)}{extra}"


ATTACK_LABELS = {"fgsm": "FGSM", "pgd": "PGD", "cw_linf": "CW-Linf", "cw": "CW-L2", "deepfool": "DeepFool",
                 "autoattack": "AutoAttack", "transfer": "Transfer", "afa_adaptive": "PGD+Ada"}


def attack_label(spec) -> str:
    if spec.name == "autoattack" and spec.version == "custom":  # never shown as AutoAttack's figure
        targets = f", {spec.target_classes} target classes" if spec.target_classes != 9 else ""
        return "+".join(a.upper() for a in spec.attacks) + f" (of AutoAttack{targets})"
    return spec.label or ATTACK_LABELS[spec.name]


def diverged_row(r: ModelResult, params: Params, columns: int) -> str:
    """The threat-eps table's row of a target whose model diverged: where, and no figures."""
    tier = params.targets[r.name].tier if r.name in params.targets else "full"
    return (f"| {r.name} | {_method(params, r.name)} | {tier} | **{divergence.describe(r.diverged, of=r.model)}** | "
            + " | ".join("—" for _ in range(columns)) + " | — | — | — |")


def diverged_section(root: Path = Path(".")) -> list[str]:
    """Every item that diverged in training or would have read a model that did, with its folder
    and why: each holds ``diverged.json`` in place of its results (pipeline.divergence)."""
    found = divergence.found(root)
    if not found:
        return []
    lines = ["", "## Diverged", "",
             "Trainings whose loss turned NaN or Inf, and every item that would have read their models: "
             "each folder holds `diverged.json` in place of its results, and the tables leave them out "
             "(`on_divergence: fail` in params stops the training's group instead).", "",
             "| item | folder | why |", "|---|---|---|"]
    lines += [f"| {info.get('item', '—')} | `{folder.as_posix()}` | {info.get('reason', '—')} |" for folder, info in found]
    return lines


def build_report(results: list[ModelResult], params: Params, root: Path = Path(".")) -> tuple[str, dict, list[dict]]:
    """Markdown text, a summary for ``dvc metrics``, and the PGD-against-eps rows for ``dvc plots``.
    A target whose model diverged keeps its row in the threat-eps table, saying so; every other
    table and figure leaves it out."""
    table_rows, results = results, [r for r in results if r.diverged is None]
    cfg = params.evaluate
    attacks = cfg.attack_list
    threat_attacks = [a.key for a in attacks]
    labels = {a.key: attack_label(a) for a in attacks}
    pgd = next((a for a in attacks if a.name == "pgd"), None)
    desc = []
    for a in attacks:
        label = labels[a.key]
        if a.name == "pgd":
            label += f"-{a.steps} (step {a.rel_step_size:g}·eps, {a.restarts} restart(s), {a.loss} loss)"
        elif a.name == "cw_linf":
            label += f" ({a.steps} steps of {a.rel_step_size:g}·eps on the CW margin loss)"
        elif a.name in ("cw", "deepfool"):
            label += f" ({a.steps} steps; its minimal L2 perturbation projected onto the eps ball)"
        elif a.name == "autoattack":
            label += f" ({a.version}, official code)"
        desc.append(f"{label} {'over the eps grid' if a.at == 'grid' else 'at the threat eps'}")
    cascade_note = ("Threat-eps attacks run in cascade: each column after the grid attacks is the accuracy "
                    "under that attack *and every attack left of it* (worst case per sample)."
                    if cfg.cascade else "Each column is that attack alone; worst case is over all of them.")
    lines = [
        "# Robustness report",
        "",
        f"Dataset `{params.data.dataset}`, architecture `{params.model.arch}` unless a row says otherwise, "
        f"deployment `{cfg.deployment.mode or 'each model as its method deploys it'}`, protocol `{cfg.protocol}`, L-inf threat eps {_eps(cfg.threat)} "
        f"({cfg.threat:.4f}). Accuracies in % on {results[0].metrics['n_samples'] if results else 0} test images.",
        "",
        "Attacks: " + "; ".join(desc) + ". " + cascade_note,
        "",
        "## At the threat eps",
        "",
        "| model | method | tier | clean | " + " | ".join(("+" if i and cfg.cascade else "") + labels[a]
                                                          for i, a in enumerate(threat_attacks))
        + " | worst case [95% CI] | masking checks | MLflow run |",
        "|---|---|---|---|" + "---|" * len(threat_attacks) + "---|---|---|",
    ]
    summary = {}
    for r in table_rows:
        if r.diverged is not None:
            lines.append(diverged_row(r, params, len(threat_attacks)))
            summary[r.name] = {"diverged_at_epoch": r.diverged.get("epoch")}
            continue
        m = r.metrics
        checks = m.get("checks")
        verdict = "—" if checks is None else ("**suspect**" if checks["suspect"] else "none")
        lines.append(
            f"| {r.name} | {_method(params, r.name)} | {m.get('tier', 'full')} | {_pct(m['clean'])} | "
            + " | ".join(_pct(m.get(a)) for a in threat_attacks)
            + f" | {_pct(m.get('worst_case'))} {_ci(m, 'worst_case')} | {verdict} | {run_link(r.run)} |"
        )
        summary[r.name] = {k: v for k, v in m.items() if isinstance(v, (int, float)) and k not in ("n_samples", "threat_eps")}

    if params.evaluate.screen is not None:
        screen = ", ".join(labels.get(a.key, attack_label(a)) for a in params.evaluate.screen.attacks)
        lines += ["", f"Tier `screen`: only {screen} at the threat eps (no AutoAttack, no masking checks), so its "
                  "worst case is an upper bound on the full suite's; its grid attacks run exactly as the full "
                  "suite's, so those columns compare across tiers. \"—\": not run at that tier."]
    lines += ["", "Intervals are Wilson 95% intervals over the test images. " + overlap_sentence(results),
              "", "Model cards (threat model, attacks and their settings, effort, deployment, training recipe): "
              + ", ".join(f"[{r.name}](../{result_dir(params, r.name)}/model_card.md)" for r in results) + "."]
    lines += diverged_section(root)
    lines += alone_table(results, attacks, labels, cfg.cascade) + minimal_table(results, attacks, labels)

    flagged = [(r.name, r.metrics["checks"]) for r in results if r.metrics.get("checks")]
    if flagged:
        lines += ["", "## Gradient-masking checks", "",
                  "At the threat eps on the first test images: FGSM, PGD, PGD with more steps and restarts, "
                  "PGD at a large eps, Square (black-box), DI2-FGSM transferred from the surrogate, and the "
                  "share of exactly-zero input gradients.", "",
                  "| model | n | FGSM | PGD | PGD more | PGD large eps | Square | transfer | zero grad | flags |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for name, c in flagged:
            lines.append(f"| {name} | {c['n_samples']} | {_pct(c['fgsm'])} | {_pct(c['pgd'])} | {_pct(c['pgd_more'])} | "
                         f"{_pct(c['pgd_large_eps'])} | {_pct(c.get('square'))} | {_pct(c.get('transfer'))} | "
                         f"{_pct(c['zero_gradient_fraction'])} | {'; '.join(c['flags']) or 'none'} |")

    eps_grid = sorted({row["eps"] for r in results for row in r.curve})
    curve_rows = [{"eps": e} for e in eps_grid]
    if pgd is not None:
        lines += ["", f"## PGD-{pgd.steps} accuracy over eps", "",
                  "| model | " + " | ".join(_eps(e) for e in eps_grid) + " |",
                  "|---|" + "---|" * len(eps_grid)]
        for r in results:
            by_eps = {row["eps"]: row.get("pgd") for row in r.curve}
            lines.append(f"| {r.name} | " + " | ".join(_pct(by_eps.get(e)) for e in eps_grid) + " |")
            for row in curve_rows:
                row[r.name] = by_eps.get(row["eps"])
        lines += ["", "![PGD accuracy against eps](figures/pgd_accuracy.png)", ""]
    return "\n".join(lines), summary, curve_rows


# --------------------------------------------------------------------------------------------
# BN-only fine-tuning, interpolation and BN statistics, beside the papers' figures


def _read_csv(path: Path) -> list[dict]:
    def value(v):
        try:
            return float(v)
        except (TypeError, ValueError):  # labels: a layer's name, a statistics reading
            return v

    with open(path) as f:
        return [{k: (v if k == "layer" else value(v)) for k, v in row.items()} for row in csv.DictReader(f)]


def _num(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def bn_sections(params: Params, root: Path = Path(".")) -> list[str]:
    """Markdown for the poster's table and "Adversarial Masking" Tables 1, 2 and 9, ours beside theirs."""
    from pipeline.analysis import paper_numbers as paper

    ours = f"ours: `{params.data.dataset}`, `{params.model.arch}`, worst case over the suite at eps {cfg_eps(params)}"
    evaluated = params.targets

    def result(name: str) -> dict | None:
        if name not in evaluated:
            return None
        path = result_dir(params, name, root) / "metrics.json"
        return read_json(path) if path.exists() else None

    def training(name: str) -> dict:
        path = model_dir(params, name, root) / "metrics.json"
        return read_json(path) if name in params.trained and path.exists() else {}

    lines: list[str] = []
    rows = [(label, name, *fig) for label, name, *fig in paper.POSTER if result(name)]
    if rows:
        lines += ["", "## BN-only fine-tuning (the poster's table)", "",
                  f"Paper: {paper.POSTER_SETTING}; {ours}. Errors in %. {setting_note(params, paper.POSTER_MATCH)}", "",
                  "| row | model | test error | robust test error | %prms | paper test error | paper robust error | paper %prms |",
                  "|---|---|---|---|---|---|---|---|"]
        for label, name, p_err, p_rob, p_prms in rows:
            r, t = result(name), training(name)
            finetune = name in params.trained and params.is_finetune(name)
            prms = t.get("percent_params", None if finetune else 100.0)
            prms_s = "—" if prms is None else (f"({prms:.2f})" if finetune and
                                                params.training(name).trainable == "bn_stats" else f"{prms:.2f}")
            lines.append(f"| {label} | {name} | {_num(100 * (1 - r['clean']))} | {_num(100 * (1 - r['worst_case']))} | "
                         f"{prms_s} | {_num(p_err, 2)} | {_num(p_rob)} | {_num(p_prms, 2)} |")

    rows = [(label, name, c, rob) for label, name, c, rob in paper.TABLE1 if result(name)]
    if rows:
        lines += ["", "## Fine-tuning BN in both directions (\"Adversarial Masking\", Table 1)", "",
                  f"Paper: {paper.ROBMASK_SETTING}; {ours}. Accuracies in %. {setting_note(params, paper.ROBMASK_MATCH)}", "",
                  "| row | model | clean | robust | paper clean | paper robust |", "|---|---|---|---|---|---|"]
        for label, name, p_clean, p_rob in rows:
            r = result(name)
            lines.append(f"| {label} | {name} | {_pct(r['clean'])} | {_pct(r['worst_case'])} | "
                         f"{_num(p_clean, 2)} | {_num(p_rob, 2)} |")

    for pair_name in [n for kind, n in params.analysis_items if kind == "interpolate"]:
        pair = params.analysis("interpolate", pair_name)
        folder = analysis_dir(params, "interpolate", pair_name)
        path = root / folder / "interpolation.csv"
        if not path.exists():
            continue
        rows = _read_csv(path)
        meta = read_json(path.parent / "metrics.json")
        fig = paper.TABLE2.get(pair_name)
        ps = sorted({r["p"] for r in rows}, reverse=True)
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
                lines.append(f"| {what}, stats {stats} ({against} against the trend) | "
                             + " | ".join(_pct(by_p[v][what]) if v in by_p else "—" for v in ps) + " |")
        if fig and ps == paper.TABLE2_P:
            lines += ["| paper clean | " + " | ".join(_num(v, 2) for v in fig[0]) + " |",
                      "| paper robust | " + " | ".join(_num(v, 2) for v in fig[1]) + " |"]
        lines += ["", f"![trade-off](../{folder}/tradeoff.png)"]

    for pair_name in [n for kind, n in params.analysis_items if kind == "analyze_bn"]:
        pair = params.analysis("analyze_bn", pair_name)
        folder = analysis_dir(params, "analyze_bn", pair_name)
        path = root / folder
        if not (path / "metrics.json").exists():
            continue
        m = read_json(path / "metrics.json")
        layers = _read_csv(path / "layers.csv")
        lines += ["", f"## BN statistics: `{pair.a}` against `{pair.b}`", "",
                  f"Mean over {len(layers)} BN layers of the cosine similarity between the two models "
                  f"(\"Adversarial Masking\", Table 9{'; paper and ours compared over the same layers below' if pair_name == paper.TABLE9_PAIR else ''}); "
                  f"the poster's rewrite BN(z) = m·z + b: mean difference in m ({pair.b} minus {pair.a}) "
                  f"{m['mean_m_diff']:+.3f} "
                  + (f"(the poster's, for the same pair BN PARAMS against NORMAL: {paper.POSTER_MEAN_M_DIFF:+.3f})"
                     if (pair.a, pair.b) == paper.POSTER_M_PAIR else
                     f"(the poster reports {paper.POSTER_MEAN_M_DIFF:+.3f} for another pair, BN PARAMS against "
                     f"NORMAL, and none for this one)")
                  + f"; channels turned off "
                  f"{m['channels_off']}, turned on {m['channels_on']}, magnified {m['channels_magnified']} "
                  f"of {m['channels']}.", "",
                  "| | running mean | running var | gamma | beta |", "|---|---|---|---|---|",
                  "| ours | " + " | ".join(_num(m[f"mean_cos_{f}"], 4) for f in ("mean", "var", "gamma", "beta")) + " |"]
        if pair_name == paper.TABLE9_PAIR:
            # the layers both have: the paper gives gamma and beta for layers 0-18, mean and var for 1-18
            shared = {c: [i for i in paper.table9_layers(c) if i < len(layers)] for c in paper.TABLE9_COLUMNS}
            ours = {c: sum(layers[i][f"cos_{c}"] for i in idx) / len(idx) if idx else None
                    for c, idx in shared.items()}
            pm = paper.table9_means(shared)
            span = {c: f"{idx[0]}-{idx[-1]}" if idx else "none" for c, idx in shared.items()}
            lines += ["| ours, shared layers | " + " | ".join(_num(ours[c], 4) for c in paper.TABLE9_COLUMNS) + " |",
                      "| paper, shared layers | " + " | ".join(_num(pm[c], 4) for c in paper.TABLE9_COLUMNS) + " |",
                      "| layers compared | " + " | ".join(span[c] for c in paper.TABLE9_COLUMNS) + " |"]
        for ref, sims in (m.get(f"logits_vs_{pair.logits_of}") or {}).items():
            lines.append(f"\nLogits of `{ref}` against `{pair.logits_of}`: cosine {sims['cosine']:.3f}, "
                         f"same prediction on {100 * sims['agreement']:.1f}% of {sims['n']} test images.")
        lines += ["", f"![first BN layer](../{folder}/first_bn_layer.png)",
                  f"![m and b](../{folder}/rescaling.png)",
                  f"![feature maps](../{folder}/feature_maps.png)"]
    return lines


def setting_note(params: Params, match: dict) -> str:
    """Whether our run is the paper's setting for a comparison, and where it differs."""
    ours = {"arch": params.model.arch, "dataset": params.data.dataset, "eps": params.evaluate.threat}
    diffs = [f"{what} (ours `{ours[k]}`, paper `{match[k]}`)" for k, what in
             (("arch", "architecture"), ("dataset", "dataset")) if ours[k] != match[k]]
    if abs(ours["eps"] - match["eps"]) > 1e-6:
        diffs.append(f"threat eps (ours {ours['eps']:.4f}, paper {match['eps']:.4f})")
    attacks = {a.name for a in params.evaluate.attack_list}
    if match["attack"] is None:  # the section names its own attack
        pass
    elif match["attack"] == "AutoAttack" and "autoattack" not in attacks:
        diffs.append("attack (the paper uses AutoAttack; our suite has none)")
    elif match["attack"] == "PGD" and attacks - {"pgd", "fgsm"}:
        diffs.append("attack (the paper reports PGD; ours is the worst case over the whole suite)")
    if not diffs:
        return "This is the paper's setting: the figures are directly comparable."
    return ("Differs from the paper's setting in " + "; ".join(diffs)
            + ": compare directions (which model is more robust or accurate), not values.")


def cfg_eps(params: Params) -> str:
    return f"{params.evaluate.threat:.4f}"
