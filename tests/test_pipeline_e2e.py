"""The whole pipeline on real DVC and MLflow, on a cut-down copy of the default params."""

import json
import os
import re

import pytest
import yaml

from pipeline.config import parse_params
from tests.conftest import tiny_raw
from tests.e2e import ROOT, MlflowServer, copy_project, sh

pytestmark = pytest.mark.slow

RAW = yaml.safe_load((ROOT / "params.yaml").read_text())
TINY = tiny_raw(RAW)  # what the project below runs: every stage kind, fewer study rows and grid points
PARAMS = parse_params(TINY)


def _stages_and_items():
    from stages import ablation, analyze, evaluate, finetune, pretrain

    kinds = {"pretrain": (pretrain, PARAMS.pretrain), "finetune": (finetune, PARAMS.finetune),
             "evaluate": (evaluate, PARAMS.evaluations), "analyze": (analyze, PARAMS.analyses),
             "ablation": (ablation, PARAMS.ablations)}
    stages, items = {"fetch", "report"}, set()
    for kind, (module, groups) in kinds.items():
        for group in groups:
            stages.add(f"{kind}@{group}")
            items |= {it.label for it in module.items(PARAMS, group)}
    return stages, items


STAGES, ITEMS = _stages_and_items()  # DVC stages, and the items they run: each its own MLflow run
EVALUATIONS = {f"evaluate@{g}" for g in PARAMS.evaluations}


@pytest.fixture(scope="module")
def project(tmp_path_factory, request):
    proj = copy_project(tmp_path_factory.mktemp("project"), TINY)
    sh(["dvc", "repro"], proj)
    return proj


def _stale(proj) -> set[str]:
    out = json.loads(sh(["dvc", "status", "--json"], proj).stdout or "{}")
    return set(out)


def test_repro_builds_every_out(project):
    for name in ("standard", "adversarial"):
        assert (project / "models" / "base" / name / "model.pt").exists()
        metrics = json.loads((project / "results" / "base" / name / "metrics.json").read_text())
        assert {"clean", "fgsm", "pgd", "autoattack", "worst_case", "suspect"} <= set(metrics)
        assert metrics["worst_case"] <= min(metrics["pgd"], metrics["autoattack"])
    report = (project / "reports" / "report.md").read_text()
    assert "| standard |" in report and "| adversarial |" in report
    assert (project / "reports" / "figures" / "pgd_accuracy.png").stat().st_size > 1000


def test_a_group_runs_its_items_side_by_side_and_times_each(project):
    timing = json.loads((project / "models" / "base" / "timing.json").read_text())
    n_items = len(TINY["pretrain"]["base"]["models"])
    assert timing["workers"] == min(int(os.environ.get("BNAT_WORKERS") or os.cpu_count()), n_items)
    assert timing["threads"] == 1
    assert set(timing["items"]) == {f"pretrain@base/{n}" for n in TINY["pretrain"]["base"]["models"]}
    item = json.loads((project / "models" / "base" / "standard" / "timing.json").read_text())
    assert item["launched"] == "group" and item["dvc_stage"] == "pretrain@base"
    assert 0 < item["work_s"] <= item["process_s"] <= timing["items"]["pretrain@base/standard"]


def test_second_repro_reruns_nothing(project):
    lock = (project / "dvc.lock").read_text()
    out = sh(["dvc", "repro"], project).stdout
    assert "Running stage" not in out, out
    assert (project / "dvc.lock").read_text() == lock
    assert _stale(project) == set()


def _refs(project) -> list[dict]:
    outs = [project / d for d in ("data", "models", "results", "reports")]
    return [json.loads(f.read_text()) for d in outs for f in d.rglob("mlflow_run.json")]


def test_each_stage_and_item_records_its_mlflow_run(project):
    # (a grid point names its run twice: beside its model and beside its screen results)
    assert {ref["stage"] for ref in _refs(project)} == STAGES | ITEMS


def test_mlflow_server_serves_one_current_run_per_stage_and_item_with_params_and_metrics(project):
    from mlflow.tracking import MlflowClient

    from pipeline.tracking import CURRENT_RUNS

    with MlflowServer(project / "mlflow.db", project) as server:
        client = MlflowClient(tracking_uri=server.url)
        exp = client.get_experiment_by_name("bn-adversarial")
        runs = client.search_runs([exp.experiment_id], CURRENT_RUNS, max_results=1000)
        by_stage = {}
        for run in runs:
            by_stage.setdefault(run.data.tags["stage"], []).append(run)
        assert set(by_stage) == STAGES | ITEMS
        assert all(len(v) == 1 for v in by_stage.values())
        for stage, (run,) in by_stage.items():
            assert run.info.status == "FINISHED"
            assert run.data.params, stage
            assert run.data.metrics, stage
        for item in ITEMS:  # each item's run is a child of its stage's
            (run,) = by_stage[item]
            parent = by_stage[run.data.tags["dvc_stage"]][0]
            assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id, item
        assert {"clean/standard", "autoattack/standard", "worst_case/standard"} <= set(by_stage["report"][0].data.metrics)
        adv = by_stage["pretrain@base/adversarial"][0]
        version = client.get_model_version("bn-adversarial.adversarial", "1")
        assert version.run_id == adv.info.run_id
        assert adv.data.params["train.method"] == "pgd_at"
        history = client.get_metric_history(adv.info.run_id, "test_acc")
        assert [m.step for m in history] == [1]
        ref = json.loads((project / "models/base/adversarial/mlflow_run.json").read_text())
        assert ref["run_id"] == adv.info.run_id
        assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on runs and models
        assert client.get_logged_model(ref["model_id"]).name == "adversarial"
        scored = client.get_run(by_stage["evaluate@base/adversarial"][0].info.run_id)  # links the model it scored
        assert [m.model_id for m in scored.inputs.model_inputs] == [ref["model_id"]]
        assert scored.data.tags["scored_model_uri"] == ref["model_uri"] == "models:/bn-adversarial.adversarial/1"
        assert scored.data.params["evaluate.attacks.pgd.steps"] == "3" and scored.data.params["evaluate.cascade"] == "true"
        assert not any(v.startswith(("[", "{")) for v in scored.data.params.values())


def _edit_params(project, edit) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    edit(params)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def reruns(project):
    """Two params changes, each followed by `dvc repro`, whichever test asks first: a wider eps
    grid, then a fine-tuning's lr doubled. Per change: what `dvc status` listed before the repro,
    the repro's output, and the models' mtimes before and after."""
    def models():
        return {n: (project / "models" / "base" / n / "model.pt").stat().st_mtime_ns for n in ("standard", "adversarial")}

    done = {}
    for name, edit in (("eps", lambda p: p["evaluate"].__setitem__("eps", p["evaluate"]["eps"] + [0.25])),
                       ("finetune", lambda p: p["finetune"]["bn_only"]["models"]["bn_params"].__setitem__(
                           "lr", p["finetune"]["bn_only"]["models"]["bn_params"]["lr"] * 2))):
        sh(["dvc", "repro"], project)  # up to date first, whatever ran before
        _edit_params(project, edit)
        before, stale = models(), _stale(project)
        out = sh(["dvc", "repro"], project).stdout
        done[name] = {"stale": stale, "out": out, "models": (before, models())}
    return done


def test_changing_the_eps_grid_reruns_only_evaluation_and_report(project, reruns):
    eps = reruns["eps"]
    assert eps["stale"] == EVALUATIONS | {"report"}
    for kind in ("fetch", "pretrain", "finetune", "analyze", "ablation"):
        assert f"Running stage '{kind}" not in eps["out"]
    assert eps["models"][0] == eps["models"][1]
    assert "0.25" in (project / "results/base/standard/accuracy.csv").read_text()


def test_changing_a_finetuning_reruns_its_group_and_what_follows_never_pretraining(project, reruns):
    ft = reruns["finetune"]
    assert ft["stale"] == {"finetune@bn_only", "report"}  # report prints the fine-tuning params
    ran = set(re.findall(r"Running stage '([^']+)'", ft["out"]))
    # the analyses read any model (they depend on models/ as a whole)
    assert ran == {"finetune@bn_only", "evaluate@bn_only", "report"} | {f"analyze@{a}" for a in PARAMS.analyses}, ran


def test_a_view_is_a_row_of_its_own_with_its_route(project):
    aux = json.loads((project / "results" / "mixture_bn" / "advprop_aux" / "metrics.json").read_text())
    main = json.loads((project / "results" / "mixture_bn" / "advprop" / "metrics.json").read_text())
    assert aux["model"] == main["model"] == "advprop"
    report = (project / "reports" / "report.md").read_text()
    assert "| advprop_aux | view of advprop: branch 1 |" in report


def test_report_has_the_papers_tables(project):
    report = (project / "reports" / "report.md").read_text()
    for heading in ("(the poster, poster table)", "(Adversarial Masking, Table 1)", "Table 2", "Table 9",
                    "Gradient-masking checks", "(Adversarial Masking, Table 5)", "(Adversarial Masking, Table 6)",
                    "along its dial", "(AFA, Table 1)", "PGD+Ada", "(AFA, Table 4)", "Fig. 3 and Fig. 6",
                    "The trade-off frontier", "(norm shaping, Table I)", "(norm shaping, Table III)",
                    "(norm shaping, Table IV)", "(norm shaping, Sec. IV)", "(thesis, Table 6.1)"):
        assert heading in report, heading
    claims = (project / "reports" / "claims.md").read_text()
    assert "## Trends" in claims and "| masking | Table 1 |" in claims


def test_after_the_reruns_each_stage_and_item_has_one_current_run_named_by_its_outs(project, reruns):
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    from pipeline.tracking import CURRENT_RUNS

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    exp = client.get_experiment_by_name("bn-adversarial")
    current = client.search_runs([exp.experiment_id], CURRENT_RUNS, max_results=1000)
    stages = [run.data.tags["stage"] for run in current]
    assert sorted(stages) == sorted(STAGES | ITEMS)  # the reruns reran evaluations and a fine-tuning
    superseded = client.search_runs([exp.experiment_id], "tags.superseded_by IS NOT NULL", max_results=1000)
    assert {run.data.tags["stage"] for run in superseded} >= EVALUATIONS | {"finetune@bn_only", "report",
                                                                          "finetune@bn_only/bn_params"}
    assert not client.search_runs([exp.experiment_id], run_view_type=ViewType.DELETED_ONLY)  # kept, not deleted
    ids = {run.info.run_id for run in current}
    stage_of = {run.info.run_id: run.data.tags["stage"] for run in [*current, *superseded]}
    assert all(stage_of[run.data.tags["superseded_by"]] == run.data.tags["stage"] for run in superseded)
    assert {ref["run_id"] for ref in _refs(project)} == ids


def test_dvc_metrics_show_reads_at_a_glance(project):
    """One narrow headline file per model, target and grid point; the details stay in metrics.json."""
    table = sh(["dvc", "metrics", "show"], project).stdout
    width = max(len(line) for line in table.splitlines())
    assert width <= 120, f"{width} columns:\n{table}"
    assert "metrics/results/base/standard.json" in table and "worst_case" in table
    head = json.loads((project / "metrics" / "results" / "base" / "standard.json").read_text())
    full = json.loads((project / "results" / "base" / "standard" / "metrics.json").read_text())
    assert head == {k: round(full[k], 4) for k in ("clean", "pgd", "autoattack", "worst_case")}


def test_dvc_metrics_diff_shows_what_a_params_change_moved(project):
    sh(["dvc", "repro"], project)  # whatever earlier tests changed, then commit it as the baseline
    sh(["git", "add", "-A"], project)
    sh(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qm", "baseline"], project)
    params = yaml.safe_load((project / "params.yaml").read_text())
    headline = project / "metrics" / "results" / "base" / "standard.json"
    before = headline.read_text()
    params["evaluate"]["n_samples"] = params["evaluate"]["n_samples"] // 2
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(["dvc", "repro", "evaluate@base"], project)
    after = headline.read_text()
    diff = sh(["dvc", "metrics", "diff"], project).stdout
    moved = [line for line in diff.splitlines() if line.startswith("metrics/results/base/standard.json")]
    sh(["git", "checkout", "--", "params.yaml"], project)  # the project as it was, for the tests after this one
    sh(["dvc", "repro"], project)
    assert after != before, "halving the samples moved no headline figure of standard"
    assert moved and all(len(line.split()) >= 4 for line in moved), diff  # path, metric, old, new (and change)


def test_bnat_plots_writes_a_page_that_draws_offline(project):
    from pipeline.plots_page import remote_scripts

    sh(["bnat", "plots"], project)
    page = (project / "dvc_plots" / "index.html").read_text()
    assert remote_scripts(page) == []
    assert "vegaEmbed(" in page and "window.vegaEmbed" in page  # the CSV plots' calls, and the inline library
    # each CSV plot is a div DVC names after its file, drawn by vegaEmbed
    for plot in ("reports_figures_training_csv", "reports_figures_pgd_accuracy_csv"):
        assert f'<div id = "{plot}">' in page and f"vegaEmbed('#{plot}'" in page, plot
    assert page.index("reports_figures_pgd_accuracy_csv") < page.index("reports_figures_training_csv")  # summaries first


def test_bnat_exp_show_fits_160_columns_with_the_headline_figures(project):
    out = sh(["bnat", "exp-show"], project).stdout
    assert max(len(line) for line in out.splitlines()) <= 160, out
    rows = [line.split() for line in out.splitlines()[2:]]
    standard = next(r for r in rows if r[0] == "workspace" and r[2] == "standard")
    head = json.loads((project / "metrics" / "results" / "base" / "standard.json").read_text())
    assert standard[3] == f"{100 * head['clean']:.1f}" and standard[-1] == f"{100 * head['worst_case']:.1f}"
