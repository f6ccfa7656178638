"""The Prefect reproduce flow on a real (temporary) Prefect server, DVC and MLflow."""


import pytest
import yaml

from tests.conftest import tiny_raw
from tests.e2e import ROOT, copy_project, sh, sweep_params

pytestmark = pytest.mark.slow


def test_prefect_yaml_declares_a_scheduled_deployment_on_the_gpu_pool():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    (dep,) = [d for d in spec["deployments"] if d["entrypoint"] == "pipeline/flows.py:reproduce"]
    assert dep["work_pool"]["name"] == "gpu"
    assert dep["schedules"][0]["cron"]
    from pipeline.flows import reproduce
    assert reproduce.name == "reproduce"


def test_reproduce_flow_runs_every_stage_in_order_under_one_parent_run(tmp_path):
    from mlflow.tracking import MlflowClient
    from prefect.testing.utilities import prefect_test_harness

    from pipeline.flows import ordered_stages, reproduce

    raw = sweep_params(tiny_raw(yaml.safe_load((ROOT / "params.yaml").read_text())))  # the flow's machinery, few stages
    proj = copy_project(tmp_path, raw)
    order = ordered_stages(proj)
    assert order.index("fetch") < order.index("pretrain@base") < order.index("evaluate@adv") < order.index("report")
    with prefect_test_harness(server_startup_timeout=240):
        done = reproduce(str(proj))
        names = _task_run_names()
        # a built project whose lock still has the entry of a stage dvc.yaml no longer has (DVC keeps
        # them): the flow and `bnat mlflow-sync` pass over it, and the flow drops it from the lock
        lock = yaml.safe_load((proj / "dvc.lock").read_text())
        lock["stages"]["pretrain@removed"] = {"cmd": "python -m stages pretrain removed",
                                              "outs": [{"path": "models/removed", "md5": "0" * 32 + ".dir"}]}
        (proj / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
        sync = sh(["bnat", "mlflow-sync"], proj, check=False)
        assert sync.returncode == 0, sync.stderr[-2000:]
        again = reproduce(str(proj))
    assert done == order == again
    assert set(names) == set(order)  # Prefect's task runs are named after the stages
    assert "pretrain@removed" not in yaml.safe_load((proj / "dvc.lock").read_text())["stages"]
    assert sh(["dvc", "status", "--json"], proj).stdout.strip() in ("{}", "")

    client = MlflowClient(tracking_uri=f"sqlite:///{proj / 'mlflow.db'}")
    exp = client.get_experiment_by_name("bn-adversarial")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parent, _ = sorted((r for r in runs if r.data.tags.get("stage") == "flow"), key=lambda r: r.info.start_time)
    assert parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert {r.data.tags["stage"] for r in children} == set(order)  # each stage's items are its run's children


def _task_run_names() -> list[str]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return [run.name for run in client.read_task_runs()]


def _outs(project):
    """md5 of every model, metrics file, curve and headline the project built (not the run
    references and timings, which differ on every run by design)."""
    from pipeline.tracking import md5_file

    files = [f for d in ("models", "results") for f in (project / d).rglob("*")
             if f.name in ("model.pt", "metrics.json", "accuracy.csv")]
    files += [f for f in (project / "metrics").rglob("*.json")]
    return {f.relative_to(project).as_posix(): md5_file(f) for f in files}


def test_stages_side_by_side_in_worker_checkouts_give_the_figures_of_one_after_another(tmp_path):
    """Two worker checkouts, each running one item at a time, build what one checkout builds
    running two at once: the same models and metrics, byte for byte, restored into the project
    from the run cache. (Every item runs with params' `threads` whatever runs beside it.)"""
    from prefect.testing.utilities import prefect_test_harness

    from pipeline.flows import ordered_stages, reproduce

    raw = sweep_params(tiny_raw(yaml.safe_load((ROOT / "params.yaml").read_text())))
    plain = copy_project(tmp_path / "plain", raw)
    sh(["dvc", "repro"], plain)
    side = copy_project(tmp_path / "side", raw)
    with prefect_test_harness(server_startup_timeout=240):
        done = reproduce(str(side), workers=2, items_at_once=1)
    assert sorted(done) == sorted(ordered_stages(side))
    assert sh(["dvc", "status", "--json"], side).stdout.strip() in ("{}", "")
    plain_outs = _outs(plain)
    assert len(plain_outs) >= 6 and _outs(side) == plain_outs
