"""What every stage does around its own work: validate params, pick the device, seed, and turn
known failures into one line on stderr with a non-zero exit."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch

from pipeline.config import ConfigError, Params, load_params, require_device
from pipeline.data import DataError
from pipeline.io import CheckpointError, WriteError
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


def run(main: Callable[[list[str]], None]) -> None:
    """Call ``main(argv)``; expected failures print one line and exit 2."""
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
