import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import yaml

from tests.e2e import drop_model, tiny_raw, training_entries  # noqa: F401 - the tests import them from here

ROOT = Path(__file__).resolve().parents[1]
CIFAR_MINI = ROOT.parent / "shared" / "data" / "cifar10-mini.npz"

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
# Under pytest-xdist (`make test`) the cores are shared out among the workers, and the stage
# processes the end-to-end tests start inherit their worker's share: two workers on two cores
# run one thread each instead of four threads fighting over two cores.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_THREADS = max(1, min(2, (os.cpu_count() or 1) // _WORKERS))
if _WORKERS > 1:
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, str(_THREADS))
    # a stage's items side by side: the cores this test worker has (tests that need two set it)
    os.environ.setdefault("BNAT_WORKERS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))
torch.set_num_threads(_THREADS)

# Stages that tests run start fork servers (pipeline/forkserver.py) in a folder of this test
# process's own, never in the user's (where a server left by `make repro` may be waiting).
FORKSERVER_DIR = tempfile.mkdtemp(prefix="bnat-fs-")  # short: it holds a socket's path
os.environ["BNAT_FORKSERVER_DIR"] = FORKSERVER_DIR


def pytest_sessionfinish(session, exitstatus):
    from pipeline import forkserver

    forkserver.stop(FORKSERVER_DIR)
    shutil.rmtree(FORKSERVER_DIR, ignore_errors=True)

# The files whose tests take longest, slowest first (measured on 2 cores): xdist hands out whole
# files in collection order, so these start at once and the short files fill in around them.
SLOWEST_FILES = ("test_pipeline_e2e.py", "test_paper_configs.py", "test_scaleout.py", "test_reliability.py",
                 "test_evaluate.py", "test_forkserver.py", "test_flows.py", "test_perf.py", "test_sweep.py",
                 "test_mlflow_lifecycle.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order otherwise


@pytest.fixture(autouse=True)
def _session_environment():
    """Each test ends with the environment it started with: ``mlflow.set_tracking_uri`` exports
    MLFLOW_TRACKING_URI, which would send a later test's stage processes to another store."""
    saved = dict(os.environ)
    yield
    tracking = sys.modules.get("mlflow.tracking._tracking_service.utils")
    if tracking is not None and tracking._tracking_uri is not None:
        tracking.set_tracking_uri(None)
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def default_raw() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.fixture(scope="session")
def cifar_mini() -> Path:
    if not CIFAR_MINI.exists():
        pytest.skip(f"{CIFAR_MINI} not present")
    return CIFAR_MINI


@pytest.fixture(scope="session")
def digits():
    """The default dataset, prepared in memory (no fetch stage needed)."""
    from pipeline.config import DataConfig
    from pipeline.data import Splits, channel_stats, prepare

    arrays = prepare(DataConfig(image_size=16), seed=0)
    mean, std = channel_stats(arrays["x_train"])
    t = {k: torch.from_numpy(v) for k, v in arrays.items()}
    return Splits(t["x_train"], t["y_train"].long(), t["x_test"], t["y_test"].long(),
                  tuple(map(float, mean)), tuple(map(float, std)))


def train_digits_model(digits, *, seed: int, epochs: int):
    """A resnet_small trained normally on digits (a few seconds on 2 cores)."""
    from pipeline.config import TrainConfig
    from pipeline.models import build_model
    from pipeline.train import train

    torch.manual_seed(seed)
    model = build_model("resnet_small", num_classes=10, in_channels=1, mean=digits.mean, std=digits.std)
    train(model, digits, TrainConfig(method="standard", epochs=epochs, lr=0.05), seed=seed, progress=False)
    return model.eval()


@pytest.fixture(scope="session")
def digits_model(digits):
    return train_digits_model(digits, seed=0, epochs=4)
