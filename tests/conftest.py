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
    # a stage's items side by side: the cores this test worker has (tests that need two set it)
    os.environ.setdefault("BNAT_WORKERS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))
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


def training_entries(raw: dict):
    """Every training entry of a raw params dict: (section, group, name, entry)."""
    for section in ("pretrain", "finetune"):
        for group, g in (raw.get(section) or {}).items():
            for name, entry in g["models"].items():
                yield section, group, name, entry


def drop_model(raw: dict, name: str) -> None:
    """Remove a model from its training group (and the group, once empty)."""
    for section, group, n, _ in list(training_entries(raw)):
        if n == name:
            del raw[section][group]["models"][name]
            if not raw[section][group]["models"]:
                del raw[section][group]


def tiny_raw(raw: dict) -> dict:
    """The default params cut down to seconds of work: for end-to-end tests of the machinery.
    Every kind of stage and item runs once, not every study row."""
    raw = copy.deepcopy(raw)
    for *_, spec in training_entries(raw):
        spec["epochs"] = min(spec["epochs"], 1)
        spec["running_stats_epochs"] = min(spec.get("running_stats_epochs", 0), spec["epochs"])
        if spec.get("attack"):
            spec["attack"]["steps"] = 2
        if spec.get("method") == "afa":
            spec["options"]["k"] = 3
    ev = raw["evaluate"]
    ev["n_samples"] = 40
    for attack in ev["attacks"]:
        if "steps" in attack:
            attack["steps"] = 3
    ev["checks"].update(n_samples=16, square_queries=20)
    screen = ev.get("screen")
    if screen:
        screen["n_samples"] = 40
        for attack in screen["attacks"]:
            if "steps" in attack:
                attack["steps"] = 3
    if raw.get("interpolate"):
        raw["interpolate"].update(n_samples=40, p=[1.0, 0.5, 0.0])
    if raw.get("analyze_bn"):
        raw["analyze_bn"]["n_samples"] = 40
    plans, analyses = raw.get("evaluations", {}), raw.get("analyses", {})
    # AFA: one base (PGD-AT) of the four; its views with short attacks
    for base in ("trades", "mart", "iat"):
        drop_model(raw, f"afa1_{base}")
        drop_model(raw, f"afa_{base}")
        for plan in plans.values():
            plan.get("views", {}).pop(f"afa_{base}_adaptive", None)
            plan.get("views", {}).pop(f"{base}_afa_grid", None)
    for plan in plans.values():
        for view in plan.get("views", {}).values():
            for attack in view.get("extra_attacks", []):
                attack["steps"] = min(attack.get("steps", 3), 3)
                if attack["name"] == "afa_adaptive":
                    attack["weightings"] = [[1, 1], [1, 10]]
    # norm shaping: the paper's method and the PGD-AT row; short attacks on few images
    for plan in analyses.values():
        if plan.get("shaping"):
            plan["shaping"] = [m for m in plan["shaping"] if m in ("adversarial", "ns_pgd_shaping")]
        for dial in plan.get("dials", {}).values():  # the two ends of each dial
            dial["values"] = [dial["values"][0], dial["values"][-1]]
    for *_, name, spec in list(training_entries(raw)):
        if spec.get("method") == "norm_shaping" and name != "ns_pgd_shaping":
            drop_model(raw, name)
    se = raw.get("shaping_eval")
    if se:
        se.update(n_samples=20, eot=2, confounding_samples=32)
        for attack in se["attacks"]:
            if "steps" in attack:
                attack["steps"] = min(attack["steps"], 2)
    if raw.get("strength_analysis"):
        sa = raw["strength_analysis"]
        sa.update(n_samples=40, steps=2, eps=[sa["eps"][0], sa["eps"][-1]])
    # The screen tier: per plan the first screened model and those something else reads (a view, a
    # fine-tune, an analysis); the other study rows are not trained
    needed = {f["start"] for *_, f in training_entries(raw) if "start" in f}
    needed |= {v["model"] for plan in plans.values() for v in plan.get("views", {}).values()}
    for plan in analyses.values():
        for kind in ("interpolate", "analyze_bn", "dials"):
            needed |= {m for entry in plan.get(kind, {}).values() for k, m in entry.items() if k in ("a", "b", "logits_of", "model")}
        for kind in ("strength", "shaping", "confoundings"):
            needed |= set(plan.get(kind, []))
    for plan in plans.values():
        screened = plan.get("screen", [])
        keep = [m for i, m in enumerate(screened) if i == 0 or m in needed]
        for name in screened:
            if name not in keep:
                drop_model(raw, name)
        plan["screen"] = keep
    for grid in raw.get("ablations", {}).values():  # one point per grid
        grid["values"] = grid["values"][:1]
        for entry in [grid["train"], grid.get("then") or {}]:
            if entry:
                entry["epochs"] = 1
            if entry.get("attack"):
                entry["attack"]["steps"] = min(entry["attack"]["steps"], 2)
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
