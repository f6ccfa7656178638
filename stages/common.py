"""What every stage does around its own work: validate params, pick the device, seed, turn
known failures into one line on stderr with a non-zero exit, and time itself (timing.json).

A stage module runs one item or a whole group. ``python -m stages pretrain base/standard`` runs
the item ``standard`` of group ``base`` in this process; ``python -m stages pretrain base`` (the
command of the DVC stage ``pretrain@base``) runs every item of the group side by side
(:mod:`stages.group`)."""

from __future__ import annotations

import os
import random
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping

import numpy as np
import torch

from pipeline import divergence, forkserver
from pipeline.config import ConfigError, Params, load_params, require_device
from pipeline.data import DataError
from pipeline.divergence import ModelDiverged
from pipeline.io import CheckpointError, WriteError, atomic_dir, write_csv, write_json
from pipeline.spec import load_model
from pipeline.train import NonFiniteLossError

if TYPE_CHECKING:
    from pipeline.tracking import StageRun

PARAMS_FILE = os.environ.get("PIPELINE_PARAMS", "params.yaml")


class ItemFailed(RuntimeError):
    """An item of a group failed; it printed why, and the group stopped."""


EXPECTED = (ConfigError, DataError, CheckpointError, NonFiniteLossError, WriteError, ItemFailed)


@dataclass(frozen=True)
class Item:
    """One unit of a stage's work: a model to train, a target to attack, an analysis, a grid point.

    ``stage`` is the module under stages/ that runs it, ``group`` the group (or analysis plan, or
    grid) its DVC stage is named after, ``cost`` a rough guess of its relative work, by which a
    group starts its longest items first."""

    stage: str
    group: str
    name: str
    cost: float = 1.0

    @property
    def arg(self) -> str:
        """Its command-line argument: ``python -m stages STAGE GROUP/NAME``."""
        return f"{self.group}/{self.name}"

    @property
    def label(self) -> str:
        """``STAGE@GROUP/NAME``: its MLflow run's name and stage tag, its progress bar's label."""
        return f"{self.stage}@{self.group}/{self.name}"


Items = Callable[[Params, str], "list[Item]"]  # the items of one group, in params' order


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
_item_started: float | None = None  # set by stages.group for an item it runs in one of its processes
_current: tuple[Params, "Item"] | None = None  # the item this process runs, once start() has read it
#: set in a group's processes: a training item keeps its last checkpoint until the whole group
#: has succeeded (stages.group removes them then), so a killed group's rerun resumes every model
keep_checkpoints = False


def run(main: Callable[[list[str]], None], items: Items | None = None, kind: str | None = None) -> None:
    """A stage module's ``__main__``: ``main(argv)`` for one GROUP/NAME item; with ``items``, a
    lone GROUP argument runs the whole group (stage ``KIND@GROUP``) instead. Exits with
    :func:`call`'s code."""
    argv = sys.argv[1:]
    if items is not None and len(argv) == 1 and "/" not in argv[0]:
        from stages.group import run_group

        code = call(lambda args: run_group(kind, args[0], items), argv)
    else:
        code = call(main, argv)
    if code:
        sys.exit(code)


def call(main: Callable[[list[str]], None], argv: list[str]) -> int:
    """``main(argv)`` (a stage module's, for one item or a group) and its exit code: 0; 2 after one
    line on stderr for an expected failure; 130 for Ctrl-C. A training whose loss diverged, and an
    item that reads a model that did, write the item's folder as diverged and end well
    (pipeline.divergence), unless ``on_divergence: fail`` makes the former an error. Anything else
    propagates: a bug keeps its traceback."""
    global _work_started, _current
    _work_started = time.time()
    _current = None  # a group's worker runs items one after another
    try:
        main(argv)
    except (NonFiniteLossError, ModelDiverged) as err:
        if not _report_divergence(err):
            print(f"error: {_current[1].label + ' diverged: ' if _current else ''}{err}", file=sys.stderr)
            return 2
    except EXPECTED as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def group_items(params: Params, items: Items, group: str, where: str) -> list[Item]:
    """``items(params, group)``, or one line saying there is no such group."""
    try:
        return items(params, group)
    except KeyError:
        raise ConfigError(f"{where}: no group {group!r} in {PARAMS_FILE}") from None


def item_of(argv: list[str], params: Params, items: Items, what: str) -> Item:
    """The item ``argv`` names (one GROUP/NAME argument), checked against ``items(params, GROUP)``."""
    if len(argv) != 1 or "/" not in argv[0]:
        raise ConfigError(f"expected one GROUP/NAME argument (a {what}), got {argv}")
    group, _, name = argv[0].partition("/")
    known = group_items(params, items, group, what)
    found = next((it for it in known if it.name == name), None)
    if found is None:
        raise ConfigError(f"{group!r} has no {what} {name!r}; it has {[it.name for it in known]}")
    return found


def start(argv: list[str], items: Items, what: str) -> tuple[Params, Item, torch.device]:
    """The opening of an item (``python -m stages X GROUP/NAME``): validated params, the item,
    the device, torch's thread count (``threads``) and every RNG seeded."""
    global _current
    params = load()
    item = item_of(argv, params, items, what)
    _current = (params, item)
    device = device_of(params)
    torch.set_num_threads(params.threads)
    seed_everything(params.seed)
    return params, item, device


def trained_model(params: Params, name: str, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """The trained model ``name`` (models/GROUP/NAME/model.pt), in eval mode, and its spec."""
    from pipeline.layout import model_dir

    if name not in params.trained:
        raise ConfigError(f"no model named {name!r} in pretrain or finetune")
    marker = divergence.read(model_dir(params, name))
    if marker is not None:
        raise ModelDiverged(name, marker)
    path = model_dir(params, name) / "model.pt"
    model, spec = load_model(path, map_location=device)
    _check_trained_as(path, spec, params.model_path(name))
    return model, spec


def _check_trained_as(path: Path, spec: dict, model_path: str) -> None:
    """The checkpoint at models/GROUP/NAME/model.pt is the one that item trained: its spec's last
    step names the item that made it (``KIND@GROUP/NAME``), so a model.pt copied over another's
    is refused rather than evaluated under the wrong name. Older specs without steps pass."""
    steps = spec.get("steps") or []
    made_by = str(steps[-1].get("stage", "")) if steps else ""
    if "@" in made_by and made_by.partition("@")[2] != model_path:
        raise CheckpointError(f"{path}: holds the model that {made_by} trained, not {model_path}; restore it with "
                              f"dvc checkout {path.parent.parent}")


@dataclass
class ItemRun:
    """An item's open MLflow run (``tracker``) and the temporary folder its outputs go into
    (``tmp``); ``timing`` adds keys to its timing.json."""

    tracker: "StageRun"
    tmp: Path
    timing: dict = field(default_factory=dict)


@contextmanager
def item_run(label: str, params: Params, section: Mapping, out: Path, *, tags: Mapping[str, str] | None = None,
             log_outputs: bool = True) -> Iterator[ItemRun]:
    """An item's MLflow run and its output folder, opened and closed as one: the item computes and
    writes into ``.tmp`` inside the block; on success its run reference and timing.json go in
    last, the folder replaces ``out`` whole and is logged to the run (``log_outputs``). On failure
    nothing is written and the run ends FAILED (KILLED on a signal)."""
    from pipeline.tracking import StageRun

    with StageRun(label, params.tracking.experiment, section, tags=tags) as tracker:
        with atomic_dir(out) as tmp:
            handle = ItemRun(tracker, tmp)
            yield handle
            tracker.write_ref(tmp)
            write_timing(tmp, label, **handle.timing)
        if log_outputs:
            tracker.log_artifacts(out)


def write_timing(folder: Path, stage: str, **extra) -> None:
    """``folder/timing.json``, written last into an item's (or a group's) folder: ``work_s``, its
    own work (from the start of ``main``, after the imports, until now), and ``process_s``, the
    whole process until now (interpreter start and imports, or the fork server's handoff,
    included; for an item a group runs in one of its processes, from the moment it got the item),
    so that ``process_s - work_s`` is what it cost besides its work; ``dvc_stage`` names the DVC
    stage that ran it (``DVC_STAGE``). Not deterministic by design, like mlflow_run.json;
    metrics.json and the models hold no times."""
    now = time.time()
    if _item_started is not None:
        started, launched = _item_started, "group"
    else:
        started, launched = forkserver.launched()
    write_json(Path(folder) / "timing.json", {"stage": stage, "dvc_stage": os.environ.get("DVC_STAGE"),
                                               "work_s": round(now - _work_started, 3),
                                               "process_s": round(now - started, 3), "launched": launched, **extra})


# --------------------------------------------------------------------------------------------
# a diverged model: its item, and every item that would read it, write a marker instead


def item_dir(params: Params, item: Item) -> Path:
    """The folder ``item`` writes (a model's, a result's, an analysis', a grid point's)."""
    from pipeline.layout import ablation_dir, analysis_dir, model_dir, result_dir

    if item.stage in ("pretrain", "finetune"):
        return model_dir(params, item.name)
    if item.stage == "evaluate":
        return result_dir(params, item.name)
    if item.stage == "ablation":
        return ablation_dir(item.group, params.ablations[item.group].value_of(item.name))
    return analysis_dir(params, item.stage, item.name)


def _report_divergence(err: NonFiniteLossError | ModelDiverged) -> bool:
    """Write the running item's folder as diverged (pipeline.divergence) so that it ends well and
    its group goes on: its own training diverged (``err`` a NonFiniteLossError; the finished
    epochs' history.csv kept), or a model it reads did. False where the error is to stop the
    item instead: ``on_divergence: fail`` for its own training, or no item (a whole group)."""
    if _current is None:
        return False
    params, item = _current
    if isinstance(err, NonFiniteLossError):
        if params.on_divergence == "fail":
            return False
        info = divergence.of_training(item.label, item.name if item.stage != "ablation" else item.arg, err)
        history = err.history
    else:
        role = "start model" if item.stage == "finetune" else "model"
        info, history = divergence.downstream(item.label, err.name, err.info, role), []
    out = item_dir(params, item)
    with atomic_dir(out) as tmp:
        divergence.write(tmp, info)
        if history:
            write_csv(tmp / "history.csv", history)
        write_timing(tmp, item.label)
    print(f"{item.label}: {info['reason']}; {out / divergence.MARKER} stands in for its results", file=sys.stderr)
    return True
