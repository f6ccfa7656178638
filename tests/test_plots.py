"""The report's plots as `dvc plots show` draws them from dvc.yaml's definitions (real DVC, a
small project holding the CSVs the report writes), and `bnat plots` where there is nothing to draw."""

import json
import shutil

import pytest
import yaml

from pipeline.analysis.plots import long_rows
from pipeline.io import write_csv
from tests.e2e import ROOT, sh

MODELS = [f"model{i}" for i in range(35)]  # as many columns as the default's PGD table
FIGURES = "reports/figures"


def _figures(folder):
    wide = [{"eps": eps, **{m: round(0.9 - eps - i / 100, 4) for i, m in enumerate(MODELS)}} for eps in (0.0, 0.05, 0.1)]
    wide[1]["model3"] = None  # a model of the screen tier has no figure at some eps
    write_csv(folder / "pgd_accuracy.csv", long_rows(wide, "eps", "accuracy"))
    write_csv(folder / "training.csv", long_rows([{"epoch": e, "standard": 0.5 + e / 10, "adversarial": 0.4 + e / 10}
                                                  for e in (1, 2, 3)], "epoch", "test_acc"))
    write_csv(folder / "activations.csv", [{"activation": a, "clean": 0.9, "pgd": 0.3 + k / 10, "worst_case": 0.2}
                                           for k, a in enumerate(("relu", "softplus", "gelu"))])
    write_csv(folder / "frontier.csv", [{"series": s, "setting": t, "clean": 0.9 - k / 10, "robust": 0.3 + k / 20}
                                        for k, (s, t) in enumerate((("TRADES over beta", "beta=1"), ("TRADES over beta", "beta=6"),
                                                                    ("standard", ""), ("adversarial", "")))])
    write_csv(folder / "clean_ratio.csv", [{"clean_fraction": f, "clean": 0.9, "pgd": 0.4, "worst_case": 0.3}
                                           for f in (0.0, 0.5, 1.0)])


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """`dvc plots show --json` of dvc.yaml's plots over the report's CSVs: plot id -> its vega spec."""
    proj = tmp_path_factory.mktemp("plots")
    plots = {"plots": yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]}
    (proj / "dvc.yaml").write_text(yaml.safe_dump(plots, sort_keys=False))
    sh(["git", "init", "-q"], proj)
    sh(["dvc", "init", "-q"], proj)
    shutil.copytree(ROOT / ".dvc" / "plots", proj / ".dvc" / "plots")
    (proj / FIGURES).mkdir(parents=True)
    _figures(proj / FIGURES)
    out = json.loads(sh(["dvc", "plots", "show", "--json"], proj).stdout)
    failed = [e for e in out.get("errors", []) if e["name"].endswith(".csv")]  # no PNG is drawn here
    assert not failed, failed
    return {plot_id: entries[0]["content"] for plot_id, entries in out["data"].items()
            if entries and entries[0]["type"] == "vega"}


def test_the_pgd_plot_draws_every_models_curve(drawn):
    spec = drawn[f"{FIGURES}/pgd_accuracy.csv"]
    assert spec["encoding"]["color"]["field"] == "model" and spec["mark"]["type"] == "line"
    values = spec["data"]["values"]
    assert {v["model"] for v in values} == set(MODELS)
    assert len(values) == 3 * len(MODELS) - 1 and all(v["accuracy"] != "" for v in values)


def test_the_training_curves_draw_in_one_plot_after_the_summaries(drawn):
    spec = drawn[f"{FIGURES}/training.csv"]
    assert {v["model"] for v in spec["data"]["values"]} == {"standard", "adversarial"}
    csv_plots = [p for p in drawn if p.endswith(".csv")]
    assert csv_plots[-1] == f"{FIGURES}/training.csv" and csv_plots[0] == f"{FIGURES}/pgd_accuracy.csv"


def test_the_activations_plot_has_a_bar_per_activation(drawn):
    spec = drawn[f"{FIGURES}/activations.csv"]
    assert spec["mark"]["type"] == "bar"
    x, y = spec["encoding"]["x"], spec["encoding"]["y"]
    assert (x["field"], x["type"], y["field"], y["type"]) == ("pgd", "quantitative", "activation", "nominal")
    assert [v["activation"] for v in spec["data"]["values"]] == ["relu", "softplus", "gelu"]


def test_the_frontier_is_a_scatter_coloured_by_method(drawn):
    spec = drawn[f"{FIGURES}/frontier.csv"]
    assert spec["mark"]["type"] == "point" and spec["encoding"]["color"]["field"] == "series"
    assert len(spec["data"]["values"]) == 4


def test_the_clean_ratio_plot_draws_each_of_its_columns(drawn):
    values = drawn[f"{FIGURES}/clean_ratio.csv"]["data"]["values"]
    assert {v.get("field") for v in values} == {"clean", "pgd", "worst_case"}


def test_every_declared_column_is_in_the_data_it_draws(drawn):
    definitions = [d for d in yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"] if isinstance(d, dict)]
    for definition in definitions:
        ((path, props),) = definition.items()
        values = drawn[path]["data"]["values"]
        ys = props["y"] if isinstance(props["y"], list) else [props["y"]]
        for column in [props["x"], *ys]:
            assert all(column in v for v in values), (path, column)


def test_bnat_plots_says_one_line_when_dvc_loads_no_plot(tmp_path):
    sh(["git", "init", "-q"], tmp_path)
    sh(["dvc", "init", "-q"], tmp_path)
    (tmp_path / "dvc.yaml").write_text("stages:\n  noop:\n    cmd: 'true'\n")
    proc = sh(["bnat", "plots"], tmp_path, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: no plot to draw"), proc.stderr
    assert not (tmp_path / "dvc_plots" / "index.html").exists()
