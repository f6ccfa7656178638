"""MLflow run lifecycle: one run per stage execution, and one per item the stage runs.

MLflow is where runs are browsed and compared, never where a stage reads its inputs. The tracking
URI is ``MLFLOW_TRACKING_URI`` when set, else a SQLite file ``mlflow.db`` in the project (MLflow 3
deprecates the plain file store). A run is a child of ``PIPELINE_PARENT_RUN_ID`` when that is set
(a flow's parent run for a stage, the stage's run for its items; an item run in its stage's own
process is a nested run of it). Each stage and item writes ``mlflow_run.json`` into its own
output folder, so a result restored from the DVC cache still names the run that made it.

Every run is tagged with what is needed to trace it back: git commit and dirty flag (files the
pipeline itself writes, ``dvc.lock`` and the params file, do not count), host, pid and device,
package versions, the DVC experiment (``dvc_exp_name``) and the Prefect flow run
(``PIPELINE_FLOW_RUN_ID``) when one started it, the DVC stage that ran it (``dvc_stage``), and
the md5 of every out it wrote (``md5/PATH``, as ``dvc.lock`` has it); flows add the stage's ``dvc.lock`` hash once DVC has written it
(pipeline.flows). System metrics (CPU, memory, GPU when pynvml is present) are sampled while the
run is open.

Lifecycle: a run ends FINISHED, FAILED on an exception, KILLED on Ctrl-C, SIGTERM or SIGHUP. A
stage given a ``resume`` file (training: beside its checkpoint) continues the run named there, so
a resumed training is one run. When a run finishes, the earlier runs of the same stage (same
experiment, same DVC experiment or both none) are superseded: tagged ``superseded_by`` (the run
that replaced them) and kept, so every run stays comparable; the view that holds one run per
stage is the filter :data:`CURRENT_RUNS`, which :func:`experiment_page` puts in the UI's link.
``bnat mlflow-sync`` makes the runs that the workspace's outs name current again after DVC
restored older results.

The experiment is tagged as one that trains models (``mlflow.experimentKind``), so MLflow's UI
opens it on its runs and models. Trained models are logged as MLflow models named after the
model (:meth:`StageRun.log_model`) and registered as ``EXPERIMENT.NAME``;
``mlflow.pyfunc.load_model("models:/EXPERIMENT.NAME/VERSION")`` loads one through
:func:`pipeline.spec.load_model` (this module is its loader module), and
``mlflow.pytorch.load_model`` gives the network as it deploys. An evaluation's run links the
logged model it scored (:meth:`StageRun.link_model`). Params are logged one setting a key
(:func:`flatten`).

MLflow keeps a local store's artifact locations as absolute paths and has no call that changes
them, so a project folder moved with its ``mlflow.db`` still reads and writes run files in the
folder the store was made in: :func:`warn_if_moved` says so in one line, and what to do.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
import threading
import urllib.request
import warnings
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from pipeline.io import read_json, write_json

RUN_REF = "mlflow_run.json"
#: the run this process's stage runs are children of, where a group runs its items in-process
#: (:func:`children_of`); else ``PIPELINE_PARENT_RUN_ID`` from the environment (a flow's stages)
_parent_run: str | None = None
VERSIONED = ("torch", "torchvision", "numpy", "dvc", "mlflow", "prefect", "pyautoattack", "bn-adversarial")
SYSTEM_METRICS_INTERVAL_S = 5.0
ARTIFACTS = "mlartifacts"  # beside mlflow.db: the local store's files
MODEL_REQUIREMENTS = ("torch", "numpy", "bn-adversarial")  # what loading a logged model imports
CHECKPOINT_FILE = "model.pt"  # a logged model's checkpoint, in its data/ folder
TERMINATING = ("SIGTERM", "SIGHUP")  # end the run KILLED; SIGINT does so as KeyboardInterrupt
# MLflow 3's UI opens an experiment on its GenAI pages (traces, agent versions) unless this tag
# says the experiment trains models: then it opens on the runs and the logged models.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
DEFAULT_EXPERIMENT = "bn-adversarial"  # tracking.experiment unless params.yaml names another
log = logging.getLogger(__name__)


def local_uri() -> str:
    return f"sqlite:///{(Path.cwd() / 'mlflow.db').resolve()}"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or local_uri()


def reachable(uri: str, timeout: float = 5.0) -> bool:
    """Whether an HTTP tracking server answers its health check (local stores always count)."""
    if not uri.startswith(("http://", "https://")):
        return True
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


@contextmanager
def children_of(run_id: str | None) -> Iterator[None]:
    """Within it, every ``StageRun`` opened in this process is a child of ``run_id`` (a group's
    run: its items' runs nest under it)."""
    global _parent_run
    saved, _parent_run = _parent_run, run_id
    try:
        yield
    finally:
        _parent_run = saved


def read_ref(folder: str | Path) -> dict[str, Any]:
    """The ``mlflow_run.json`` of an output folder: the run that made it (and for a model its
    registered version); empty when the folder has none or it cannot be read."""
    try:
        return dict(read_json(Path(folder) / RUN_REF))
    except (OSError, ValueError, TypeError):
        return {}


def project_experiment(params_file: str | Path | None = None) -> str:
    """The MLflow experiment the project's params name (``tracking.experiment``), read without
    validating the whole file; the default when the file does not say."""
    import yaml

    path = Path(params_file or os.environ.get("PIPELINE_PARAMS", "params.yaml"))
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        return str(raw.get("tracking", {}).get("experiment") or DEFAULT_EXPERIMENT)
    except (OSError, yaml.YAMLError, AttributeError):
        return DEFAULT_EXPERIMENT


#: the runs view of one run per stage (a superseded run is tagged with the run that replaced it)
CURRENT_RUNS = "tags.superseded_by IS NULL"


def experiment_page(base_url: str, experiment: str, uri: str | None = None) -> str:
    """The UI page that opens ``experiment`` on its current runs (:data:`CURRENT_RUNS`; clearing
    the search box shows every run) and its models. MLflow 3.17's UI picks an experiment's pages
    by its "GenAI | Model training" switch (remembered by the browser, GenAI at first), not by
    the experiment's kind tag, unless the link names the workflow. The experiment's id is read
    from the project's own store; elsewhere the link is the list."""
    from urllib.parse import quote

    uri = uri or tracking_uri()
    page, query = "#/experiments", "workflowType=machine_learning"
    if uri == local_uri() and (Path.cwd() / "mlflow.db").is_file():
        from mlflow.tracking import MlflowClient

        _quiet_mlflow()
        try:
            found = MlflowClient(tracking_uri=uri).get_experiment_by_name(experiment)
        except Exception:  # noqa: BLE001 - a store MLflow cannot read: the list page, where the UI says why
            found = None
        if found is not None:  # the runs page itself: the experiment's page redirects there, dropping the search
            page, query = f"#/experiments/{found.experiment_id}/runs", f"searchFilter={quote(CURRENT_RUNS)}&{query}"
    return f"{base_url.rstrip('/')}/{page}?{query}"


def _never_fatal(method: Callable) -> Callable:
    """Tracking must never cost a result: a failing MLflow call warns once and is skipped."""
    @wraps(method)
    def wrapper(self, *args, **kwargs):
        if self.broken:
            return None
        try:
            return method(self, *args, **kwargs)
        except Exception as err:  # noqa: BLE001 - any tracking failure, whatever MLflow raises
            self.broken = True
            print(f"warning: MLflow logging stopped for this stage ({type(err).__name__}: "
                  f"{str(err).splitlines()[0] if str(err) else ''}); the stage's outs are unaffected",
                  file=sys.stderr)
            return None
    return wrapper


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``d`` as MLflow params, one readable key a setting: nested mappings and lists of mappings
    (an attack list) become dotted keys, a list item keyed by its ``label`` or ``name``
    (``evaluate.attacks.pgd.steps``); unset settings (None) are left out."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{key}."))
        elif _is_list_of_mappings(v):
            for label, item in _labelled(v):
                out.update(flatten(item, f"{key}.{label}."))
        elif v is not None:
            out[key] = v
    return out


def _is_list_of_mappings(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _labelled(items: list[Mapping]) -> list[tuple[str, Mapping]]:
    """Each item with a key for it: its label, else its name, else its index; a key that two
    items share gets the item's index appended (``pgd``, ``pgd_2``)."""
    keys = [str(item.get("label") or item.get("name") or i) for i, item in enumerate(items)]
    return [(key if keys.count(key) == 1 else f"{key}_{i}", item) for i, (key, item) in enumerate(zip(keys, items))]


def param_value(value: Any) -> str:
    """A param as people write it: ``true``, ``0.1``, ``0, 0.05, 0.1`` (a list), never a repr."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ", ".join(param_value(v) for v in value) or "none"
    if isinstance(value, Mapping):  # an empty mapping: nothing was flattened out of it
        return ", ".join(f"{k}={param_value(v)}" for k, v in value.items()) or "none"
    if value is None:
        return "none"
    return str(value)


def metric_value(value: float) -> float:
    """``value`` as it should read in MLflow. A float that is exactly a float32 (an accuracy that
    torch averaged in float32, 0.9449999928474426) becomes the shortest decimal that rounds to
    the same float32 (0.945); any other float is kept as it is."""
    import numpy as np

    value = float(value)
    single = np.float32(value)
    return float(str(single)) if float(single) == value else value


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def pipeline_written() -> tuple[str, ...]:
    """Tracked files the pipeline rewrites while it runs: DVC's lock file (``dvc repro`` updates
    it after every stage) and the params file (``dvc exp run -S`` edits it; each run logs the
    params it reads). They do not make a run's code dirty."""
    return ("dvc.lock", os.environ.get("PIPELINE_PARAMS", "params.yaml"))


def dirty_files() -> list[str]:
    """Tracked files changed since the commit, except those the pipeline writes itself."""
    excluded = [f":(exclude){path}" for path in pipeline_written()]
    return _git("diff", "--name-only", "HEAD", "--", ".", *excluded).splitlines()


def md5_file(path: Path) -> str:
    """The md5 DVC records for a file out."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def environment_tags() -> dict[str, str]:
    """Host, device, Prefect flow run and package versions of this process."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    tags = {"host": platform.node(), "python": platform.python_version()}
    torch = sys.modules.get("torch")  # stages have imported it; never import it just for a tag
    if torch is not None:
        tags["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    for package in VERSIONED:
        try:
            tags[f"version.{package}"] = version(package)
        except PackageNotFoundError:
            pass
    if os.environ.get("PIPELINE_FLOW_RUN_ID"):
        tags["prefect_flow_run_id"] = os.environ["PIPELINE_FLOW_RUN_ID"]
    return tags


def _quiet_mlflow() -> None:
    # Alembic logs every migration of a new SQLite store at INFO, the registry every new version;
    # keep stage output readable.
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking.fluent", "mlflow.system_metrics",
                 "mlflow.tracking._model_registry.fluent", "mlflow.models.model", "mlflow.pyfunc"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="mlflow")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


# --------------------------------------------------------------------------------------------
# trained models in MLflow


def registered_name(experiment: str, name: str) -> str:
    """The registry name of the model ``models/GROUP/NAME/``: prefixed by the MLflow experiment, so
    projects sharing a server do not share a name; a path's slashes become dots (registry names
    cannot hold a slash): ``bn-adversarial.ablation.clean_ratio.0.5``."""
    return f"{experiment}.{name}".replace("/", ".")


def logged_model_name(name: str) -> str:
    """The logged model's name in the experiment: the model's own (``standard``); a grid point's
    path with dashes, as logged model names hold no slash or dot (``ablation-clean_ratio-0_5``)."""
    name = name.replace("/", "-")
    for bad in (":", ".", "%", '"', "'"):
        name = name.replace(bad, "_")
    return name


class CheckpointFlavor:
    """How :meth:`StageRun.log_model` saves a model (the ``flavor`` of ``mlflow.models.Model.log``):
    MLflow's pytorch flavor holding the network as it deploys (:class:`pipeline.deploy.DeployedNetwork`,
    for ``mlflow.pytorch.load_model``), beside the checkpoint in ``data/model.pt`` that the pyfunc
    flavor rebuilds the network from (:func:`_load_pyfunc`, plain data, no pickled code)."""

    def save_model(self, path: str, mlflow_model, checkpoint: Path, signature, pip_requirements: list[str],
                   **_) -> None:
        """Called by ``Model.log`` (which has put the metadata on ``mlflow_model``)."""
        import shutil

        import mlflow.pytorch
        from mlflow import pyfunc

        from pipeline.deploy import DeployedNetwork
        from pipeline.spec import default_deployment, load_model

        network, spec = load_model(checkpoint)
        deployment = default_deployment(spec)
        deployed = DeployedNetwork(network, deployment.get("mode", "eval"), deployment.get("route"))
        pytorch_log = logging.getLogger("mlflow.pytorch")
        level = pytorch_log.level
        pytorch_log.setLevel(logging.ERROR)  # its warning about pickled models: the pyfunc flavor loads none
        try:
            mlflow.pytorch.save_model(deployed, path, mlflow_model=mlflow_model, signature=signature,
                                      pip_requirements=pip_requirements, serialization_format="pickle")
        finally:
            pytorch_log.setLevel(level)
        shutil.copyfile(checkpoint, Path(path) / "data" / CHECKPOINT_FILE)
        pyfunc.add_to_model(mlflow_model, loader_module=__name__, data=f"data/{CHECKPOINT_FILE}",
                            conda_env="conda.yaml", python_env="python_env.yaml")
        mlflow_model.save(str(Path(path) / "MLmodel"))


def model_requirements() -> list[str]:
    """Pinned to this environment's versions (no inference: it imports the model and scans every
    installed package)."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in MODEL_REQUIREMENTS:
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            pass
    return pins


class CheckpointModel:
    """What ``mlflow.pyfunc.load_model`` returns for a model logged by :meth:`StageRun.log_model`:
    the network rebuilt by :func:`pipeline.spec.load_model`, run as its spec deploys it by
    default (``eval`` mode, or ``batch``, with its norm route)."""

    def __init__(self, path: str | Path):
        from pipeline.spec import default_deployment, load_model

        self.model, self.spec = load_model(path)
        self.deployment = default_deployment(self.spec)

    def get_raw_model(self):
        """The torch module (in eval mode)."""
        return self.model

    def predict(self, model_input, params: dict | None = None):
        """Logits (N x classes, float32) for float32 images N x C x H x W in [0, 1]."""
        import numpy as np
        import torch

        from pipeline.deploy import Deployed

        deployed = Deployed(self.model, self.deployment.get("mode", "eval"), route=self.deployment.get("route"))
        x = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
        with torch.no_grad():
            return deployed(x).numpy()


def _load_pyfunc(path: str, model_config: dict | None = None) -> CheckpointModel:
    """MLflow's pyfunc entry point (``loader_module``): ``path`` is the logged model.pt."""
    return CheckpointModel(path)


# --------------------------------------------------------------------------------------------
# the project's SQLite store, moved with its project

_warned_moved: set[Path] = set()


def artifact_root(location: str | None) -> Path | None:
    """The project folder an experiment's artifact location lies in (the parent of its
    ``mlartifacts`` folder); None for a location elsewhere (a server's, an object store's)."""
    from urllib.parse import unquote, urlparse

    if not location:
        return None
    path = Path(unquote(urlparse(location).path)) if location.startswith("file://") else Path(location)
    return path.parent if path.is_absolute() and path.name == ARTIFACTS else None


def warn_if_moved(experiment, uri: str | None = None) -> Path | None:
    """The folder the project's own store (``mlflow.db`` in the working directory) was made in,
    when that is not here, said once a process in one line; None when it is here, or for any
    other store. ``experiment``: the project's MLflow experiment (None: not made yet)."""
    if experiment is None or (uri or tracking_uri()) != local_uri():
        return None
    made_in = artifact_root(experiment.artifact_location)
    here = Path.cwd().resolve()
    if made_in is None or made_in == here:
        return None
    if made_in not in _warned_moved:
        _warned_moved.add(made_in)
        print(f"note: mlflow.db was made in {made_in}; MLflow keeps absolute artifact paths, so its runs' "
              f"files are read from and written to {made_in / ARTIFACTS}. To track here instead, move "
              f"mlflow.db and {ARTIFACTS} aside (the next stage starts a new store); DVC's outs are "
              "not affected", file=sys.stderr)
    return made_in


# --------------------------------------------------------------------------------------------
# superseded runs


def _pid_gone(run) -> bool:
    """Whether a RUNNING run was left by a process of this host that no longer exists."""
    import platform

    tags = run.data.tags
    if tags.get("host") != platform.node() or not tags.get("pid", "").isdigit():
        return False
    try:
        os.kill(int(tags["pid"]), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def supersede(client, experiment_id: str, stage: str, current: str, dvc_exp: str = "") -> list[str]:
    """Tag every other current run of ``stage`` in the experiment and the same DVC experiment
    (``dvc_exp``, "" for none) ``superseded_by=current``: the runs stay, out of the
    :data:`CURRENT_RUNS` view. A RUNNING run is left alone unless its process is gone (then it
    is KILLED). Returns the superseded run ids."""
    quoted = stage.replace("'", "\\'")
    runs = client.search_runs([experiment_id], filter_string=f"tags.stage = '{quoted}' and {CURRENT_RUNS}",
                              max_results=1000)
    done = []
    for run in runs:
        if run.info.run_id == current or run.data.tags.get("dvc_exp_name", "") != dvc_exp:
            continue
        if run.info.status == "RUNNING":
            if not _pid_gone(run):
                continue
            client.set_terminated(run.info.run_id, "KILLED")
        client.set_tag(run.info.run_id, "superseded_by", current)
        done.append(run.info.run_id)
    return done


def make_current(client, run_id: str) -> list[str]:
    """Make ``run_id`` its stage's current run again (drop its ``superseded_by`` tag) and supersede
    the other runs of its stage. A run the workspace's outs name that is still RUNNING with its
    process gone (killed once its outs were written, then restored from DVC's cache) made those
    outs: it ends FINISHED, tagged so. A run deleted by hand in the UI is restored."""
    run = client.get_run(run_id)
    if run.info.lifecycle_stage == "deleted":
        client.restore_run(run_id)
    if run.info.status == "RUNNING" and _pid_gone(run):
        client.set_tag(run_id, "ended_by", "mlflow-sync: its process was gone and its outs are in the workspace")
        client.set_terminated(run_id, "FINISHED")
    if "superseded_by" in run.data.tags:
        client.delete_tag(run_id, "superseded_by")
    stage = run.data.tags.get("stage")
    if not stage:
        return []
    return supersede(client, run.info.experiment_id, stage, run_id, run.data.tags.get("dvc_exp_name", ""))


def sync_workspace(refs: Mapping[str, Mapping]) -> dict[str, list]:
    """Make the runs named by ``refs`` (stage -> its outs' mlflow_run.json) the current runs of
    their stages in the project's store (after relocating a moved store)."""
    from mlflow.tracking import MlflowClient

    _quiet_mlflow()
    client = MlflowClient(tracking_uri=tracking_uri())
    warn_if_moved(client.get_experiment_by_name(project_experiment()))
    report: dict[str, list] = {"current": [], "superseded": [], "missing": []}
    for stage, ref in sorted(refs.items()):
        run_id = ref.get("run_id")
        if not run_id:
            continue
        try:
            report["superseded"] += make_current(client, run_id)
            report["current"].append(stage)
        except Exception:  # noqa: BLE001 - a run of another store, or purged
            report["missing"].append(stage)
    return report


# --------------------------------------------------------------------------------------------
# one stage's run


class Terminated(SystemExit):
    """SIGTERM or SIGHUP arrived while a stage's run was open: unwinds the stage (its temporary
    outs are removed) and exits with 128 + the signal number."""


class StageRun:
    """Context manager around one MLflow run for a stage.

    >>> with StageRun("pretrain@base/standard", "bn-adversarial", params) as run:
    ...     run.log_metrics({"test_acc": 0.9}, step=1)
    ...     run.write_ref(out_dir)

    ``resume``: a small JSON file naming the run to continue (written when the run starts, read
    by the next attempt), used when it holds the same ``resume_key`` and tracking URI.
    """

    def __init__(self, stage: str, experiment: str, params: Mapping[str, Any], tags: Mapping[str, str] | None = None,
                 *, resume: Path | None = None, resume_key: str = ""):
        self.stage, self.experiment, self.params = stage, experiment, params
        self.tags = dict(tags or {})
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.broken = False
        self.resumed = False
        self.resume, self.resume_key = (Path(resume) if resume else None), resume_key
        self.model: dict[str, Any] = {}  # the registered model, once log_model has run
        self.scored_model_id: str | None = None  # the logged model an evaluation scored, once linked
        self.uri = tracking_uri()
        self.parent = _parent_run or os.environ.get("PIPELINE_PARENT_RUN_ID") or None
        self.dvc_exp = os.environ.get("DVC_EXP_NAME", "")
        self._handlers: dict[int, Any] = {}
        if not reachable(self.uri):
            # Keep params and metrics in the project's own store rather than lose them.
            print(f"warning: MLflow server {self.uri} is not reachable; logging {stage} to the local store "
                  f"{local_uri()} instead (tag intended_tracking_uri)", file=sys.stderr)
            self.tags["intended_tracking_uri"] = self.uri
            if self.parent:
                self.tags["intended_parent_run_id"] = self.parent
            self.uri, self.parent = local_uri(), None

    def __enter__(self) -> StageRun:
        self._trap_signals()
        self._start()
        return self

    def _trap_signals(self) -> None:
        """End the run KILLED when the stage is terminated: SIGTERM and SIGHUP raise
        :class:`Terminated` in the main thread (after any handler that was there ran)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for name in TERMINATING:
            signum = getattr(signal, name, None)
            if signum is None:
                continue
            previous = signal.getsignal(signum)
            if previous in (signal.SIG_IGN, None):
                continue

            def terminate(sig, frame, previous=previous):
                if callable(previous):
                    previous(sig, frame)
                raise Terminated(128 + sig)

            self._handlers[signum] = previous
            signal.signal(signum, terminate)

    def _restore_signals(self) -> None:
        for signum, previous in self._handlers.items():
            signal.signal(signum, previous)
        self._handlers.clear()

    def _resumable(self) -> str | None:
        if self.resume is None or not self.resume.is_file():
            return None
        try:
            ref = read_json(self.resume)
        except (OSError, ValueError):
            return None
        if (ref.get("key"), ref.get("tracking_uri"), ref.get("experiment")) != (self.resume_key, self.uri, self.experiment):
            return None
        return ref.get("run_id")

    @_never_fatal
    def _start(self) -> None:
        import mlflow
        from mlflow.exceptions import MlflowException

        _quiet_mlflow()
        mlflow.set_tracking_uri(self.uri)
        exp = mlflow.get_experiment_by_name(self.experiment)
        warn_if_moved(exp, self.uri)
        if exp is None:
            location = (Path.cwd() / ARTIFACTS).resolve().as_uri() if self.uri.startswith("sqlite") else None
            self.experiment_id = mlflow.create_experiment(self.experiment, artifact_location=location,
                                                          tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        else:
            self.experiment_id = exp.experiment_id
            if EXPERIMENT_KIND_TAG not in exp.tags:  # made before the kind was set; a kind set by hand stays
                mlflow.MlflowClient(self.uri).set_experiment_tag(self.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        dirty = dirty_files()
        tags = {"stage": self.stage, "git_commit": _git("rev-parse", "HEAD"), "git_dirty": str(bool(dirty)).lower(),
                "pid": str(os.getpid()), **environment_tags(), **self.tags}
        if dirty:
            tags["git_dirty_files"] = " ".join(dirty)[:5000]
        if self.dvc_exp:
            tags["dvc_exp_name"] = self.dvc_exp
        if os.environ.get("DVC_STAGE"):
            tags["dvc_stage"] = os.environ["DVC_STAGE"]
        nested = mlflow.active_run() is not None  # an item its group runs in this process: a child of the group's run
        mlflow.set_system_metrics_sampling_interval(SYSTEM_METRICS_INTERVAL_S)
        run = None
        previous = self._resumable()
        if previous:
            try:  # the earlier attempt's run: RUNNING again, its metrics kept
                resumed_tags = {**tags, "resumed": "true"}
                if self.parent:
                    resumed_tags["mlflow.parentRunId"] = self.parent
                run = mlflow.start_run(run_id=previous, tags=resumed_tags, log_system_metrics=True, nested=nested)
                self.resumed = True
            except MlflowException:  # deleted, or not in this store: a new run
                run = None
        if run is None:
            run = mlflow.start_run(experiment_id=self.experiment_id, run_name=self.stage, tags=tags,
                                   parent_run_id=self.parent, log_system_metrics=True, nested=nested)
        self.run_id = run.info.run_id
        params = flatten(self.params)
        if params:
            mlflow.log_params({k: param_value(v)[:6000] for k, v in params.items()})
        if self.resume is not None:
            write_json(self.resume, {"run_id": self.run_id, "tracking_uri": self.uri, "experiment": self.experiment,
                                     "key": self.resume_key})

    def __exit__(self, exc_type, exc, tb) -> None:
        self._restore_signals()
        if exc_type is None:
            status = "FINISHED"
        elif issubclass(exc_type, (KeyboardInterrupt, Terminated)):
            status = "KILLED"
        else:
            status = "FAILED"
        self._end(status)

    @_never_fatal
    def _end(self, status: str) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        if self.run_id is None:
            return
        client = MlflowClient(tracking_uri=self.uri)
        try:
            mlflow.end_run(status=status)
        finally:  # a signal that landed inside MLflow's own calls can leave its fluent state half-done
            if client.get_run(self.run_id).info.status == "RUNNING":
                client.set_terminated(self.run_id, status)
        if status == "FINISHED":
            supersede(client, self.experiment_id, self.stage, self.run_id, self.dvc_exp)

    def logged_steps(self, key: str) -> set[int]:
        """Steps at which this run already holds metric ``key`` (an earlier attempt's epochs)."""
        if self.run_id is None or self.broken:
            return set()
        from mlflow.tracking import MlflowClient

        try:
            return {m.step for m in MlflowClient(tracking_uri=self.uri).get_metric_history(self.run_id, key)}
        except Exception:  # noqa: BLE001 - then every epoch is logged again, at the same steps
            return set()

    @_never_fatal
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        import mlflow

        numeric = {k: metric_value(v) for k, v in metrics.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if numeric:  # an evaluation's metrics also show on the page of the model it scored
            mlflow.log_metrics(numeric, step=step, model_id=self.scored_model_id)

    @_never_fatal
    def record_outs(self, *paths: Path) -> None:
        """Tag the run with the md5 of every file under ``paths`` (``md5/PATH``, PATH relative to
        the project), the hashes DVC records for them: which outs this run wrote."""
        import mlflow

        tags = {}
        for path in map(Path, paths):
            files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path] if path.is_file() else []
            for f in files:
                if not f.name.startswith("."):
                    tags[f"md5/{os.path.relpath(f)}"] = md5_file(f)
        if tags:
            mlflow.set_tags(tags)

    @_never_fatal
    def log_artifacts(self, path: Path, skip: tuple[str, ...] = ()) -> None:
        """Log a file or a folder's files (but those named in ``skip``) and record their hashes."""
        import mlflow

        path = Path(path)
        self.record_outs(path)
        if path.is_dir():
            if not skip:
                mlflow.log_artifacts(str(path))
                return
            for f in sorted(path.rglob("*")):
                if f.is_file() and f.name not in skip:
                    parent = f.parent.relative_to(path).as_posix()
                    mlflow.log_artifact(str(f), artifact_path=None if parent == "." else parent)
        elif path.exists():
            mlflow.log_artifact(str(path))

    @_never_fatal
    def log_model(self, checkpoint: Path, name: str, spec: Mapping[str, Any], image_shape: tuple[int, ...]) -> None:
        """Log the checkpoint ``models/GROUP/NAME/model.pt`` as this run's MLflow model, named after
        the model (:func:`logged_model_name`), with its signature (float32 images ``image_shape``
        C x H x W in [0, 1] -> logits) and its spec, and register it as :func:`registered_name`.
        Two flavors (:class:`CheckpointFlavor`): ``mlflow.pyfunc.load_model`` rebuilds the network
        from the checkpoint, ``mlflow.pytorch.load_model`` gives the network as it deploys."""
        import mlflow
        import numpy as np
        from mlflow.models import Model, ModelSignature
        from mlflow.types import Schema, TensorSpec

        signature = ModelSignature(
            inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *image_shape))]),
            outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, int(spec["num_classes"])))]))
        registry_name = registered_name(self.experiment, name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            info = Model.log(
                artifact_path=None, name=logged_model_name(name), flavor=CheckpointFlavor(), flavor_name="pytorch",
                checkpoint=Path(checkpoint), signature=signature, pip_requirements=model_requirements(),
                metadata={"spec": dict(spec)}, registered_model_name=registry_name,
                tags={"stage": self.stage, "md5": md5_file(Path(checkpoint))})
        version = info.registered_model_version
        self.model = {"registered_model": registry_name, "version": version, "model_id": info.model_id,
                      "model_uri": f"models:/{registry_name}/{version}" if version else info.model_uri}
        mlflow.set_tags({"model_uri": self.model["model_uri"], "model_id": info.model_id})

    @_never_fatal
    def link_model(self, ref: Mapping[str, Any] | None) -> None:
        """Link this run to the logged model it scored (``ref``: the model folder's
        ``mlflow_run.json``): the model is an input of the run (MLflow 3's model link, shown on
        the run's page and the model's), and tags name its ``models:/`` URI and training run.
        The tags are set even when the model lives in another store; the link only in this one."""
        import mlflow

        ref = ref or {}
        if not ref.get("run_id"):
            return
        tags = {"scored_model_uri": ref.get("model_uri", ""), "scored_model_run_id": ref["run_id"],
                "scored_model_id": ref.get("model_id", "")}
        mlflow.set_tags({k: v for k, v in tags.items() if v})
        if ref.get("model_id") and ref.get("tracking_uri") == self.uri:
            self._link_logged_model(ref["model_id"])

    def _link_logged_model(self, model_id: str) -> None:
        from mlflow.entities import LoggedModelInput
        from mlflow.tracking import MlflowClient

        try:
            MlflowClient(tracking_uri=self.uri).log_inputs(self.run_id, models=[LoggedModelInput(model_id)])
            self.scored_model_id = model_id
        except Exception as err:  # noqa: BLE001 - a model deleted from the store: the tags still name it
            print(f"warning: {self.stage}: could not link the logged model {model_id} ({type(err).__name__}); "
                  "its URI is in the run's tags", file=sys.stderr)

    @property
    def ref(self) -> dict[str, Any]:
        """Which run this is (and the model it registered): what ``write_ref`` records."""
        return {"run_id": self.run_id, "experiment_id": self.experiment_id, "experiment": self.experiment,
                "tracking_uri": self.uri, "stage": self.stage, **self.model}

    def write_ref(self, out_dir: Path) -> None:
        """Record which run produced ``out_dir``; part of the stage's outs, so cached with them."""
        write_json(Path(out_dir) / RUN_REF, self.ref)
