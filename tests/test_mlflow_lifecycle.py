"""What a stage's MLflow run records: exact metric values."""

from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from pipeline.tracking import StageRun, metric_value


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty folder as the working directory, logging to its own SQLite store."""
    monkeypatch.chdir(tmp_path)
    for var in ("MLFLOW_TRACKING_URI", "PIPELINE_PARENT_RUN_ID", "DVC_EXP_NAME", "PIPELINE_PARAMS"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def _client(folder: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")


# ---------------------------------------------------------------------------------------------
# values and tags


def test_float32_noise_is_logged_as_the_decimal_it_stands_for(project):
    noisy = torch.tensor([True] * 189 + [False] * 11).float().mean().item()
    assert noisy == 0.9449999928474426 and metric_value(noisy) == 0.945
    assert metric_value(1 / 3) == 1 / 3 and metric_value(0.945) == 0.945  # a float64 value is kept
    assert metric_value(360) == 360.0 and metric_value(0.5) == 0.5
    with StageRun("evaluate@a", "exp", {}) as run:
        run.log_metrics({"clean": noisy, "loss": 0.123456789012})
    assert _client(project).get_run(run.run_id).data.metrics == {"clean": 0.945, "loss": 0.123456789012}
