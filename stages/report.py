"""report: the markdown report, the robust-accuracy plot and CSVs over every evaluated model."""

from pathlib import Path

from pipeline.analysis.plots import accuracy_vs_eps
from pipeline.analysis.report import bn_sections, build_report, load_results
from pipeline.analysis.thesis_report import thesis_sections
from pipeline.io import atomic_dir, write_csv, write_json, write_text
from pipeline.tracking import StageRun
from stages.common import load, run, write_timing


def main(argv: list[str]) -> None:
    params = load()
    results = load_results(params.evaluate.targets,
                           model_of={v: view.model for v, view in params.evaluate.views.items()})
    out = Path("reports")
    with StageRun("report", params.tracking.experiment, {"models": params.evaluate.targets}) as tracker:
        markdown, summary, curve_rows = build_report(results, params)
        markdown += "\n".join(bn_sections(params)) + "\n"
        with atomic_dir(out) as tmp:
            markdown += "\n".join(thesis_sections(params, tmp)) + "\n"
            write_text(tmp / "report.md", markdown)
            write_json(tmp / "summary.json", summary)
            write_csv(tmp / "pgd_accuracy.csv", curve_rows)
            curves = {name: [(row["eps"], row[name]) for row in curve_rows if row.get(name) is not None]
                      for name in params.evaluate.targets if params.evaluate.tier_of(name) == "full"}
            accuracy_vs_eps(curves, tmp / "pgd_accuracy.png", "PGD accuracy against eps")
            tracker.write_ref(tmp)
            write_timing(tmp, "report")
        tracker.log_artifacts(out)
    print(markdown)


if __name__ == "__main__":
    run(main)
