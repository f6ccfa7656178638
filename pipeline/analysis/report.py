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
            curve = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
        ref = res / "mlflow_run.json"
        out.append(ModelResult(name, read_json(res / "metrics.json"), curve,
                               read_json(root / "models" / name / "metrics.json"),
                               read_json(ref)["run_id"] if ref.exists() else None))
    return out


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def _eps(e: float) -> str:
    return f"{e * 255:.3g}/255"


def build_report(results: list[ModelResult], params: Params) -> tuple[str, dict, list[dict]]:
    """Markdown text, a summary for ``dvc metrics``, and the PGD-against-eps rows for ``dvc plots``."""
    cfg = params.evaluate
    steps = cfg.pgd.steps
    lines = [
        "# Robustness report",
        "",
        f"Dataset `{params.data.dataset}`, architecture `{params.model.arch}`, "
        f"L-inf threat eps {_eps(cfg.threat_eps)} ({cfg.threat_eps:.4f}). Accuracies in %.",
        f"PGD-{steps}: step {cfg.pgd.rel_step_size:g}·eps, {cfg.pgd.restarts} restart(s), "
        f"{'random' if cfg.pgd.random_start else 'zero'} start, cross-entropy loss. "
        f"AutoAttack: `{cfg.autoattack.version}` (official code) on the first test samples.",
        "",
        "## At the threat eps",
        "",
        f"| model | method | clean | FGSM | PGD-{steps} | AutoAttack | PGD-{steps} on AA samples | AA samples | MLflow run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    summary = {}
    for r in results:
        m = r.metrics
        lines.append(
            f"| {r.name} | {r.training.get('method', params.pretrain[r.name].method)} | {_pct(m['clean'])} | "
            f"{_pct(m.get('fgsm'))} | {_pct(m.get('pgd'))} | {_pct(m.get('autoattack'))} | "
            f"{_pct(m.get('pgd_on_autoattack_samples'))} | {m.get('autoattack_n_samples', '—')} | "
            f"`{r.run_id or '—'}` |"
        )
        summary[r.name] = {k: v for k, v in m.items() if k in ("clean", "fgsm", "pgd", "autoattack")}

    eps_grid = sorted({row["eps"] for r in results for row in r.curve})
    lines += ["", f"## PGD-{steps} accuracy over eps", "",
              "| model | " + " | ".join(_eps(e) for e in eps_grid) + " |",
              "|---|" + "---|" * len(eps_grid)]
    curve_rows = [{"eps": e} for e in eps_grid]
    for r in results:
        by_eps = {row["eps"]: row.get("pgd") for row in r.curve}
        lines.append(f"| {r.name} | " + " | ".join(_pct(by_eps.get(e)) for e in eps_grid) + " |")
        for row in curve_rows:
            row[r.name] = by_eps.get(row["eps"])
    lines += ["", "![PGD accuracy against eps](pgd_accuracy.png)", ""]
    return "\n".join(lines), summary, curve_rows
