import copy
import os
import sys
from pathlib import Path

import pytest
import torch
import yaml

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
torch.set_num_threads(_THREADS)

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


def tiny_raw(raw: dict) -> dict:
    """The default params cut down to seconds of work: for end-to-end tests of the machinery."""
    raw = copy.deepcopy(raw)
    for spec in [*raw["pretrain"].values(), *raw.get("finetune", {}).values()]:
        spec["epochs"] = min(spec["epochs"], 1)
        if spec.get("attack"):
            spec["attack"]["steps"] = 2
    ev = raw["evaluate"]
    ev["n_samples"] = 40
    for attack in ev["attacks"]:
        if "steps" in attack:
            attack["steps"] = 3
    ev["checks"].update(n_samples=16, square_queries=20)
    if raw.get("interpolate"):
        raw["interpolate"].update(n_samples=40, p=[1.0, 0.5, 0.0])
    if raw.get("analyze_bn"):
        raw["analyze_bn"]["n_samples"] = 40
    for spec in raw["pretrain"].values():
        spec["running_stats_epochs"] = min(spec.get("running_stats_epochs", 0), spec["epochs"])
    # AFA: one base (PGD-AT) of the four, three branches; its views with short attacks
    for base in ("trades", "mart", "iat"):
        raw["pretrain"].pop(f"afa1_{base}", None)
        raw.get("finetune", {}).pop(f"afa_{base}", None)
        ev.get("views", {}).pop(f"afa_{base}_adaptive", None)
        ev.get("views", {}).pop(f"{base}_afa_grid", None)
    # The screen tier: the screened models something else reads (a view, a fine-tune, an analysis)
    # and the first fine-tune, so every stage kind runs once, not every study row.
    screen = ev.get("screen")
    if screen:
        finetune = raw.get("finetune", {})
        keep = {v["model"] for v in ev.get("views", {}).values()} | {f["start"] for f in finetune.values()}
        for section in ("interpolate", "analyze_bn"):
            keep |= {m for pair in (raw.get(section) or {}).get("pairs", {}).values() for m in pair.values()}
        keep.add(next((n for n in screen["models"] if n in finetune), None))
        for name in [n for n in screen["models"] if n not in keep]:
            (raw["pretrain"] if name in raw["pretrain"] else finetune).pop(name)
        screen["models"] = [n for n in screen["models"] if n in keep]
        screen["n_samples"] = 40
        for attack in screen["attacks"]:
            if "steps" in attack:
                attack["steps"] = 3
    for grid in raw.get("ablations", {}).values():  # one point per grid
        grid["values"] = grid["values"][:1]
        for entry in [grid["train"], grid.get("then") or {}]:
            if entry:
                entry["epochs"] = 1
            if entry.get("attack"):
                entry["attack"]["steps"] = min(entry["attack"]["steps"], 2)
    for spec in raw["pretrain"].values():
        if spec.get("method") == "afa":
            spec["options"]["k"] = 3
    for view in ev.get("views", {}).values():
        for attack in view.get("extra_attacks", []):
            attack["steps"] = min(attack.get("steps", 3), 3)
            if attack["name"] == "afa_adaptive":
                attack["weightings"] = [[1, 1], [1, 10]]
    for dial in raw.get("dials", {}).values():  # the two ends of each dial
        dial["values"] = [dial["values"][0], dial["values"][-1]]
    se = raw.get("shaping_eval")
    if se:  # norm shaping: the paper's method and the PGD-AT row; short attacks on few images
        for name in [m for m in se["models"] if m not in ("adversarial", "ns_pgd_shaping")]:
            raw["pretrain"].pop(name, None)
        se["models"] = [m for m in se["models"] if m in ("adversarial", "ns_pgd_shaping")]
        se.update(n_samples=20, eot=2, confounding_samples=32)
        for attack in se["attacks"]:
            if "steps" in attack:
                attack["steps"] = min(attack["steps"], 2)
    if raw.get("strength_analysis"):
        sa = raw["strength_analysis"]
        sa.update(n_samples=40, steps=2, eps=[sa["eps"][0], sa["eps"][-1]])
    return raw


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
