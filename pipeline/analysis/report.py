"""The report: tables of the evaluation results of every model, in markdown."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from pipeline import divergence
from pipeline.attacks import attack_of
from pipeline.config import Params
from pipeline.io import read_json
from pipeline.layout import model_dir, result_dir
from pipeline.papers.render import eps_label, pct


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
        out.append(f"| {r.name} | " + " | ".join(pct(r.metrics.get(f"{k}_alone")) for k in keys) + " |")
    return out


def minimal_table(results: list, attacks: list, labels: dict) -> list[str]:
    """CW-L2 and DeepFool unbounded, as the norm-shaping paper reports them."""
    keys = [a.key for a in attacks if attack_of(a).minimal]
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
            cells.append(f"{pct(m.get('success_rate'))} | {'—' if med is None else f'{med:.3f}'} | {m.get('n_attacked', 0)}")
        out.append(f"| {r.name} | " + " | ".join(cells) + " |")
    return out


def _ci(metrics: dict, key: str) -> str:
    ci = (metrics.get("ci95") or {}).get(key)
    return f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else ""


def overlap_sentence(results: list) -> str:
    """Neighbours (sorted by worst case) whose worst-case intervals overlap, named pair by pair:
    two rows whose intervals do not overlap are never joined, whatever lies between them."""
    rows = sorted((r for r in results if (r.metrics.get("ci95") or {}).get("worst_case")),
                  key=lambda r: r.metrics["worst_case"])
    pairs = [f"{a.name} ~ {b.name}" for a, b in zip(rows, rows[1:])
             if b.metrics["ci95"]["worst_case"][0] <= a.metrics["ci95"]["worst_case"][1]]
    if not pairs:
        return "No two neighbouring rows' worst-case intervals overlap."
    return ("Neighbouring rows whose worst-case intervals overlap (each pair on its own; unpaired intervals, so a "
            "paired comparison on the same images can still tell them apart, as claims.md does): " + "; ".join(pairs) + ".")


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


def attack_label(spec) -> str:
    """The column heading of an attack entry (its registered attack decides, or the entry's label)."""
    return attack_of(spec).column(spec)


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
    # the screen tier's own attacks (AutoAttack's APGD pair) get columns too: its worst case goes through them
    screen_only = [a for a in (cfg.screen.attacks if cfg.screen is not None else [])
                   if a.key not in {b.key for b in attacks}]
    threat_attacks = [a.key for a in attacks] + [a.key for a in screen_only]
    labels = {a.key: attack_label(a) for a in [*attacks, *screen_only]}
    pgd = next((a for a in attacks if a.name == "pgd"), None)
    desc = []
    for a in attacks:
        label = labels[a.key] + attack_of(a).details(a)
        desc.append(f"{label} {'over the eps grid' if a.at == 'grid' else 'at the threat eps'}")
    cascade_note = ("Threat-eps attacks run in cascade: each column after the grid attacks is the accuracy "
                    "under that attack *and every attack left of it* (worst case per sample)."
                    if cfg.cascade else "Each column is that attack alone; worst case is over all of them.")
    lines = [
        "# Robustness report",
        "",
        f"Dataset `{params.data.dataset}`, architecture `{params.model.arch}` unless a row says otherwise, "
        f"deployment `{cfg.deployment.mode or 'each model as its method deploys it'}`, protocol `{cfg.protocol}`, L-inf threat eps {eps_label(cfg.threat)} "
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
            f"| {r.name} | {_method(params, r.name)} | {m.get('tier', 'full')} | {pct(m['clean'])} | "
            + " | ".join(pct(m.get(a)) for a in threat_attacks)
            + f" | {pct(m.get('worst_case'))} {_ci(m, 'worst_case')} | {verdict} | {run_link(r.run)} |"
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
            lines.append(f"| {name} | {c['n_samples']} | {pct(c['fgsm'])} | {pct(c['pgd'])} | {pct(c['pgd_more'])} | "
                         f"{pct(c['pgd_large_eps'])} | {pct(c.get('square'))} | {pct(c.get('transfer'))} | "
                         f"{pct(c['zero_gradient_fraction'])} | {'; '.join(c['flags']) or 'none'} |")

    eps_grid = sorted({row["eps"] for r in results for row in r.curve})
    curve_rows = [{"eps": e} for e in eps_grid]
    if pgd is not None:
        lines += ["", f"## PGD-{pgd.steps} accuracy over eps", "",
                  "| model | " + " | ".join(eps_label(e) for e in eps_grid) + " |",
                  "|---|" + "---|" * len(eps_grid)]
        for r in results:
            by_eps = {row["eps"]: row.get("pgd") for row in r.curve}
            lines.append(f"| {r.name} | " + " | ".join(pct(by_eps.get(e)) for e in eps_grid) + " |")
            for row in curve_rows:
                row[r.name] = by_eps.get(row["eps"])
        lines += ["", "![PGD accuracy against eps](figures/pgd_accuracy.png)", ""]
    return "\n".join(lines), summary, curve_rows
