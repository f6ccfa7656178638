"""The Prefect reproduce flow on a real (temporary) Prefect server, DVC and MLflow."""


import pytest
import yaml

from tests.conftest import tiny_raw
from tests.e2e import ROOT, copy_project, sh

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

    raw = tiny_raw(yaml.safe_load((ROOT / "params.yaml").read_text()))
    proj = copy_project(tmp_path, raw)
    order = ordered_stages(proj)
    assert order.index("fetch") < order.index("pretrain@standard") < order.index("evaluate@standard") < order.index("report")
    with prefect_test_harness(server_startup_timeout=240):
        done = reproduce(str(proj))
    assert done == order
    assert sh(["dvc", "status", "--json"], proj).stdout.strip() in ("{}", "")

    client = MlflowClient(tracking_uri=f"sqlite:///{proj / 'mlflow.db'}")
    exp = client.get_experiment_by_name("bn-adversarial")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    (parent,) = [r for r in runs if r.data.tags.get("stage") == "flow"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert {r.data.tags["stage"] for r in children} == set(order)
