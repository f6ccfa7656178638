"""The report: tables of the evaluation results of every model, in markdown."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Params
from pipeline.io import read_json


@dataclass
class ModelResult:
    name: str
    metrics: dict  # results/NAME/metrics.json
    curve: list[dict[str, float]]  # results/NAME/accuracy.csv
    training: dict  # models/NAME/metrics.json
    run_id: str | None


def load_results(names: list[str], root: Path = Path(".")) -> list[ModelResult]:
    out = []
    for name in names:
        res = root / "results" / name
        with open(res / "accuracy.csv") as f:
            curve = [{k: (float(v) if v != "" else None) for k, v in row.items()} for row in csv.DictReader(f)]
        ref = res / "mlflow_run.json"
        out.append(ModelResult(name, read_json(res / "metrics.json"), curve,
                               read_json(root / "models" / name / "metrics.json"),
                               read_json(ref)["run_id"] if ref.exists() else None))
    return out


def _pct(v: float | str | None) -> str:
    return "—" if v is None or v == "" else f"{100 * float(v):.1f}"


def _eps(e: float) -> str:
    return f"{e * 255:.3g}/255"


ATTACK_LABELS = {"fgsm": "FGSM", "pgd": "PGD", "cw": "CW-L2", "deepfool": "DeepFool", "autoattack": "AutoAttack"}


def build_report(results: list[ModelResult], params: Params) -> tuple[str, dict, list[dict]]:
    """Markdown text, a summary for ``dvc metrics``, and the PGD-against-eps rows for ``dvc plots``."""
    cfg = params.evaluate
    attacks = cfg.attack_list
    threat_attacks = [a.name for a in attacks]
    pgd = next((a for a in attacks if a.name == "pgd"), None)
    desc = []
    for a in attacks:
        label = ATTACK_LABELS[a.name]
        if a.name == "pgd":
            label += f"-{a.steps} (step {a.rel_step_size:g}·eps, {a.restarts} restart(s), {a.loss} loss)"
        elif a.name in ("cw", "deepfool"):
            label += f" ({a.steps} steps, projected onto the eps ball)"
        elif a.name == "autoattack":
            label += f" ({a.version}, official code)"
        desc.append(f"{label} {'over the eps grid' if a.at == 'grid' else 'at the threat eps'}")
    cascade_note = ("Threat-eps attacks run in cascade: each column after the grid attacks is the accuracy "
                    "under that attack *and every attack left of it* (worst case per sample)."
                    if cfg.cascade else "Each column is that attack alone; worst case is over all of them.")
    lines = [
        "# Robustness report",
        "",
        f"Dataset `{params.data.dataset}`, architecture `{params.model.arch}`, deployment "
        f"`{cfg.deployment.mode}`, protocol `{cfg.protocol}`, L-inf threat eps {_eps(cfg.threat)} "
        f"({cfg.threat:.4f}). Accuracies in % on {results[0].metrics['n_samples'] if results else 0} test images.",
        "",
        "Attacks: " + "; ".join(desc) + ". " + cascade_note,
        "",
        "## At the threat eps",
        "",
        "| model | method | clean | " + " | ".join(ATTACK_LABELS[a] for a in threat_attacks)
        + " | worst case | masking checks | MLflow run |",
        "|---|---|---|" + "---|" * len(threat_attacks) + "---|---|---|",
    ]
    summary = {}
    for r in results:
        m = r.metrics
        checks = m.get("checks")
        verdict = "—" if checks is None else ("**suspect**" if checks["suspect"] else "clean")
        lines.append(
            f"| {r.name} | {params.pretrain[r.name].method} | {_pct(m['clean'])} | "
            + " | ".join(_pct(m.get(a)) for a in threat_attacks)
            + f" | {_pct(m.get('worst_case'))} | {verdict} | `{r.run_id or '—'}` |"
        )
        summary[r.name] = {k: v for k, v in m.items() if isinstance(v, (int, float)) and k not in ("n_samples", "threat_eps")}

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
        lines += ["", "![PGD accuracy against eps](pgd_accuracy.png)", ""]
    return "\n".join(lines), summary, curve_rows
