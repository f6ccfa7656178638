"""What every stage does around its own work: validate params, pick the device, seed, turn
known failures into one line on stderr with a non-zero exit, and time itself (timing.json)."""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch

from pipeline import forkserver
from pipeline.config import ConfigError, Params, load_params, require_device
from pipeline.data import DataError
from pipeline.io import CheckpointError, WriteError, write_json
from pipeline.spec import load_model
from pipeline.train import NonFiniteLossError

PARAMS_FILE = os.environ.get("PIPELINE_PARAMS", "params.yaml")
EXPECTED = (ConfigError, DataError, CheckpointError, NonFiniteLossError, WriteError)


def load() -> Params:
    return load_params(PARAMS_FILE)


def device_of(params: Params) -> torch.device:
    require_device(params.device, PARAMS_FILE)
    if params.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(params.device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():  # CPU kernels are deterministic already; this import costs ~2 s
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


_work_started = time.time()  # reset by run(): the stage's own work starts once its imports are done


def run(main: Callable[[list[str]], None]) -> None:
    """Call ``main(argv)``; expected failures print one line and exit 2."""
    global _work_started
    _work_started = time.time()
    try:
        main(sys.argv[1:])
    except EXPECTED as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def one_item(argv: list[str], choices, what: str) -> str:
    if len(argv) != 1 or argv[0] not in choices:
        raise ConfigError(f"expected one {what} argument out of {sorted(choices)}, got {argv}")
    return argv[0]


def start(argv: list[str], items: Callable[[Params], Mapping | None], what: str) -> tuple[Params, str, torch.device]:
    """The opening of a per-item stage (``python -m stages.X NAME``): validated params, NAME checked
    against ``items(params)``, the device, and every RNG seeded."""
    params = load()
    name = one_item(argv, items(params) or {}, what)
    device = device_of(params)
    seed_everything(params.seed)
    return params, name, device


def trained_model(name: str, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """models/NAME/model.pt (written by the pretrain or finetune stage), in eval mode, and its spec."""
    return load_model(Path("models") / name / "model.pt", map_location=device)


def write_timing(folder: Path, stage: str, **extra) -> None:
    """``folder/timing.json``, written last into a stage's last output folder: ``work_s``, its own
    work (from the start of ``main``, after the imports, until now), and ``process_s``, the whole
    process until now (interpreter start and imports, or the fork server's handoff, included),
    so that ``process_s - work_s`` is what the stage cost besides its work; ``dvc_stage`` names
    the DVC stage that ran it (``DVC_STAGE``). Not deterministic by design, like mlflow_run.json;
    metrics.json and the models hold no times."""
    now = time.time()
    started, launched = forkserver.launched()
    write_json(Path(folder) / "timing.json", {"stage": stage, "dvc_stage": os.environ.get("DVC_STAGE"),
                                               "work_s": round(now - _work_started, 3),
                                               "process_s": round(now - started, 3), "launched": launched, **extra})
