"""report: the markdown report, and its plots and their CSVs in ``reports/figures/``, over every evaluated model. Its
MLflow run holds the headline table as metrics (``clean/NAME``, ``autoattack/NAME``,
``worst_case/NAME``: MLflow's charts group them by measure), one metric per claim of the ledger
and measure (``claim/ID/diff``, ``.../verdict``; reports/claims.md), and the report folder as artifacts."""

from pathlib import Path

from pipeline.analysis.analyses_report import analyses_sections
from pipeline.analysis.plots import accuracy_vs_eps, long_rows
from pipeline.analysis.report import build_report, load_results
from pipeline.io import write_csv, write_json, write_text
from pipeline.layout import model_dir
from pipeline.papers import verdicts
from pipeline.papers.sections import paper_sections
from stages.common import item_run, load, run

HEADLINE = ("clean", "autoattack", "worst_case")


def headline(summary: dict[str, dict]) -> dict[str, float]:
    """The headline table of ``summary`` (row -> its numeric metrics) as MLflow metrics; a row
    without AutoAttack (the screen tier) has no ``autoattack/`` metric."""
    return {f"{measure}/{row}": metrics[measure] for row, metrics in summary.items() for measure in HEADLINE
            if isinstance(metrics.get(measure), (int, float))}


def training_curves(params, path: Path) -> None:
    """figures/training.csv: each trained model's test accuracy per epoch, one row per model and
    epoch (``dvc plots show`` draws a line per model)."""
    import csv

    rows = []
    for name in params.trained:
        history = model_dir(params, name) / "history.csv"
        if history.exists():
            with open(history, newline="") as f:
                rows += [{"epoch": r["epoch"], "model": name, "test_acc": r["test_acc"]} for r in csv.DictReader(f)]
    if rows:
        write_csv(path, rows)


def main(argv: list[str]) -> None:
    params = load()
    targets = list(params.targets)
    results = load_results(params, targets)
    out = Path("reports")
    with item_run("report", params, {"targets": targets}, out) as it:
        markdown, summary, curve_rows = build_report(results, params)
        claims, trends = verdicts.judge(params), verdicts.judge_trends(params)
        markdown = markdown.replace("\n", f"\n\n{verdicts.summary_line(claims, trends)} ([claims.md](claims.md))\n", 1)
        markdown += "\n".join(paper_sections(params, claims, trends)) + "\n"
        figures = it.tmp / "figures"  # one folder, whichever sections the params produce
        figures.mkdir()
        markdown += "\n".join(analyses_sections(params, figures)) + "\n"
        write_text(it.tmp / "report.md", markdown)
        write_text(it.tmp / "claims.md", verdicts.markdown(claims, trends=trends))
        write_json(it.tmp / "summary.json", summary)
        write_csv(figures / "pgd_accuracy.csv", long_rows(curve_rows, "eps", "accuracy"))
        training_curves(params, figures / "training.csv")
        curves = {name: [(row["eps"], row[name]) for row in curve_rows if row.get(name) is not None]
                  for name, t in params.targets.items() if t.tier == "full"}
        accuracy_vs_eps(curves, figures / "pgd_accuracy.png", "PGD accuracy against eps")
        it.tracker.log_metrics(headline(summary))
        it.tracker.log_metrics(verdicts.metrics(claims, trends))
    print(markdown)


if __name__ == "__main__":
    run(main)
