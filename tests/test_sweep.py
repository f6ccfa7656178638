"""The sweep flow: its mean/std table, its checks of bad input, and a real run on a tiny config."""

import csv
import json
import statistics

import pytest
import yaml

from pipeline.config import ConfigError
from pipeline.flows import check_sweep, lock_hash, set_params, summarize, summary_markdown
from pipeline.lockfile import entries
from tests.conftest import tiny_raw
from tests.e2e import ROOT, copy_project, sh, sweep_params


def test_summary_is_mean_and_sample_std_over_seeds_in_percent():
    rows = [{"method": "a", "seed": s, "metrics": {"clean": c, "pgd": p}}
            for s, c, p in [(0, 0.90, 0.40), (1, 0.92, 0.45), (2, 0.88, 0.41)]]
    rows.append({"method": "b", "seed": 0, "metrics": {"clean": 0.5}})
    (a, b) = summarize(rows)
    assert a["seeds"] == 3 and a["clean_mean"] == pytest.approx(90.0)
    assert a["clean_std"] == pytest.approx(statistics.stdev([90.0, 92.0, 88.0]))
    assert a["pgd_std"] == pytest.approx(2.6457513, rel=1e-6)
    assert b["seeds"] == 1 and b["clean_std"] == 0.0 and "pgd_mean" not in b
    table = summary_markdown([a, b])
    assert "| a | 3 | 90.00 ± 2.00 | 42.00 ± 2.65 |" in table and "| b | 1 | 50.00 ± 0.00 | — |" in table


def test_sweep_points_become_dvc_set_param_arguments():
    assert set_params(3, {"pretrain.base.models.standard.epochs": 2, "evaluate.eps": [0.0, 0.1], "model.arch": "resnet20"}) == [
        "-S", "seed=3", "-S", "pretrain.base.models.standard.epochs=2", "-S", "evaluate.eps=[0.0, 0.1]",
        "-S", 'model.arch="resnet20"']


@pytest.mark.parametrize("methods, seeds, overrides, message", [
    (["standard", "nope"], [0], None, "methods ['nope'] are not evaluated by any plan"),
    (["standard"], [], None, "must both be non-empty"),
    (["standard"], [0, 0], None, "must not repeat"),
    (["standard"], [0], {"pretrain.base.models.standard.epochs": -1}, "pretrain.base.models.standard.epochs"),
    (["standard"], [0], {"nosection.x": 1}, "no section 'nosection'"),
    (["standard"], [0], {"evaluate.typo": 1}, "evaluate.typo: unknown key"),
    (["standard"], [-1], None, "seed -1: a seed is an integer from 0 to 4294967295"),
    (["standard"], [2 ** 32], None, "seed 4294967296"),
])
def test_bad_sweeps_fail_before_anything_runs_with_one_line(methods, seeds, overrides, message):
    with pytest.raises(ConfigError) as err:
        check_sweep(ROOT, methods, seeds, overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_shared_stages_are_what_two_or_more_evaluations_need_dependencies_first():
    from pipeline.flows import shared_stages, sweep_points, upstream_stages

    needs = upstream_stages(ROOT, ["evaluate@base", "evaluate@mixture_bn"])
    assert needs["evaluate@base"] == {"fetch", "pretrain@base", "evaluate@base"}
    # mixture_bn's transfer attacks start from base's standard model
    assert "pretrain@base" in needs["evaluate@mixture_bn"]
    assert sweep_points(ROOT, ["standard", "advprop", "adversarial"]) == {
        "evaluate@base": ["standard", "adversarial"], "evaluate@mixture_bn": ["advprop"]}
    assert shared_stages(ROOT, ["standard", "advprop"]) == ["fetch", "pretrain@base"]
    assert shared_stages(ROOT, ["standard", "adversarial"]) == []  # one stage evaluates both
    with pytest.raises(KeyError, match="evaluate@nope"):
        upstream_stages(ROOT, ["evaluate@nope"])


def test_lock_hash_follows_the_stage_entry_of_dvc_lock(tmp_path):
    lock = {"schema": "2.0", "stages": {"fetch": {"cmd": "x", "outs": [{"path": "a", "md5": "1"}]}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    first = lock_hash(entries(tmp_path)["fetch"])
    lock["stages"]["fetch"]["outs"][0]["md5"] = "2"
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    assert len(first) == 16 and lock_hash(entries(tmp_path)["fetch"]) != first
    assert lock_hash(dict(reversed(lock["stages"]["fetch"].items()))) == lock_hash(lock["stages"]["fetch"])  # key order


def _exp_show_metrics(proj) -> dict[tuple[str, int], dict]:
    """(method, seed) -> the headline metrics/results/GROUP/METHOD.json of every DVC experiment:
    a second source."""
    found = {}
    for baseline in json.loads(sh(["dvc", "exp", "show", "--json"], proj).stdout):
        for exp in baseline.get("experiments") or []:
            for rev in exp["revs"]:
                data = rev.get("data") or {}
                seed = data["params"]["params.yaml"]["data"]["seed"]
                for path, metrics in (data.get("metrics") or {}).items():
                    if path.startswith("metrics/results/") and "data" in metrics:
                        found.setdefault((path.rsplit("/", 1)[1].removesuffix(".json"), seed), metrics["data"])
    return found


@pytest.mark.slow
def test_sweep_flow_table_matches_per_seed_metrics_and_cache_restores_keep_run_links(tmp_path, monkeypatch):
    # the project's own SQLite store, whatever tracking URI an earlier test left in this process
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PIPELINE_PARENT_RUN_ID", raising=False)
    from mlflow.tracking import MlflowClient
    from prefect.testing.utilities import prefect_test_harness

    from pipeline.flows import sweep

    proj = copy_project(tmp_path / "proj", sweep_params(tiny_raw(yaml.safe_load((ROOT / "params.yaml").read_text()))))
    # the user's workspace: uncommitted edits to params.yaml (a seed no point uses), and a stage
    # built from them with its lock
    edited = (proj / "params.yaml").read_text().replace("seed: 0", "seed: 7") + "# my uncommitted note\n"
    (proj / "params.yaml").write_text(edited)
    sh(["dvc", "repro", "fetch"], proj)
    workspace = {f: (proj / f).read_bytes() for f in ("dvc.lock", "data/prepared/data.npz")}
    with prefect_test_harness(server_startup_timeout=240):
        summary = sweep(["standard", "adversarial"], [0, 1], deployment=None, project_dir=str(proj))
        from pipeline.flows import check_deployment

        with pytest.raises(ConfigError, match="the Prefect server has no deployment 'nosuch/dep'"):
            check_deployment("nosuch/dep")
    assert (proj / "params.yaml").read_text() == edited  # the experiments ran from the committed params
    assert {f: (proj / f).read_bytes() for f in workspace} == workspace
    assert not (proj / "models").exists()

    per_seed = _exp_show_metrics(proj)
    assert {k for k in per_seed} >= {(m, s) for m in ("standard", "adversarial") for s in (0, 1)}
    for row in summary:
        for metric in ("clean", "pgd", "worst_case"):
            values = [100 * per_seed[(row["method"], s)][metric] for s in (0, 1)]
            assert row[f"{metric}_mean"] == pytest.approx(statistics.fmean(values), abs=1e-2)  # headlines: 4 places
            assert row[f"{metric}_std"] == pytest.approx(statistics.stdev(values), abs=1e-2)
    (written,) = (proj / "sweeps").iterdir()
    with open(written / "summary.csv") as f:
        assert [r["method"] for r in csv.DictReader(f)] == [r["method"] for r in summary]
    assert "± " in (written / "summary.md").read_text()

    client = MlflowClient(tracking_uri=f"sqlite:///{proj / 'mlflow.db'}")
    exp = client.get_experiment_by_name("bn-adversarial")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    (parent,) = [r for r in runs if r.data.tags.get("kind") == "sweep"]
    points = {(r.data.tags["method"], int(r.data.tags["seed"])): r for r in runs
              if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id and r.data.tags.get("kind") == "experiment"}
    assert set(points) == {(m, s) for m in ("standard", "adversarial") for s in (0, 1)}
    assert all("clean" in r.data.metrics for r in points.values())
    assert parent.data.metrics.keys() >= {"standard.clean_mean", "adversarial.pgd_std"}

    # (adversarial, 0) came after seed 1: its fetch stage was restored from DVC's run cache, and
    # the restored mlflow_run.json still names the run of (standard, 0) that built it.
    first, restored = points[("standard", 0)], points[("adversarial", 0)]
    assert "fetch" in first.data.tags["stages_ran"] and "fetch" not in restored.data.tags["stages_ran"]
    fetch_run = first.data.tags["run.fetch"]
    assert restored.data.tags["run.fetch"] == fetch_run
    made_it = client.get_run(fetch_run)
    assert made_it.data.tags["stage"] == "fetch" and made_it.data.params["seed"] == "0"
    assert made_it.data.tags["mlflow.parentRunId"] == first.data.tags["point_run"]
    assert len(made_it.data.tags["dvc_lock_hash"]) == 16


def test_sweep_command_rejects_an_unknown_method_with_one_line(tmp_path):
    proc = sh(["bnat", "sweep", "-m", "nope", "-s", "0", "--local"], ROOT, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: sweep: methods ['nope']")


def test_a_flow_run_that_raises_ends_failed_with_its_error_and_one_that_returns_finished(tmp_path):
    from mlflow.tracking import MlflowClient

    from pipeline.flows import flow_record

    with flow_record(tmp_path, "e", "ok", {"kind": "sweep"}) as ok:
        assert MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(ok).info.status == "RUNNING"
    with pytest.raises(RuntimeError):
        with flow_record(tmp_path, "e", "broken", {"kind": "sweep"}) as broken:
            raise RuntimeError("experiment standard seed 3 ended FAILED")
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert client.get_run(ok).info.status == "FINISHED"
    failed = client.get_run(broken)
    assert failed.info.status == "FAILED" and "seed 3 ended FAILED" in failed.data.tags["error"]


def test_sweep_to_a_deployment_the_server_lacks_is_one_line():
    proc = sh(["bnat", "sweep", "-m", "standard", "-s", "0", "--deployment", "nosuch/dep"], ROOT, check=False,
              PREFECT_API_URL="http://127.0.0.1:9/api")  # nothing listens on port 9: no server either
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: sweep: could not ask the Prefect server for deployment 'nosuch/dep'")
