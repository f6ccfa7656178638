"""Prefect flows: when and where the pipeline runs. They are thin: DVC decides what is stale and
caches what is built, MLflow records it, Prefect schedules it.

- ``reproduce``: every stage of the checkout, one task per stage (``dvc repro --single-item``) in
  DAG order; each stage's outs and run cache are pushed to the DVC remote when one is configured.
  With ``workers``, independent stages run side by side in worker checkouts sharing the DVC cache
  (``pipeline.workers``), and the project restores their results from the run cache.
- ``experiment``: one (evaluation stage, seed, overrides) point of a sweep, run in the worker's own
  checkout as ``dvc exp run --pull -S ...`` of the stage that evaluates the methods (methods of
  one group share it), so anything another worker already built comes from the DVC remote's run
  cache instead of being trained again.
- ``sweep``: the methods' evaluation stages times the seeds as ``experiment`` runs, through the
  ``experiment`` deployment (any worker of the ``gpu`` pool picks each up) or in this process;
  then mean and standard deviation over seeds per method, written as a table and logged. On
  workers, the stages that several points need (the data, a shared starting model) are built
  first, once per seed: two workers building the same stage at once would train it twice.

MLflow: every flow run opens a parent run; stage runs are its children through
``PIPELINE_PARENT_RUN_ID`` (a sweep's experiments are its children and the stages theirs). A
checkout never runs two DVC commands at once: flows in one checkout take a file lock first.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import os
import queue
import re
import statistics
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from prefect import flow, get_run_logger, task
from prefect.runtime import flow_run
from prefect.tasks import exponential_backoff

from pipeline.attacks import ATTACKS
from pipeline.tracking import RUN_REF

DEFAULT_EXPERIMENT = "bn-adversarial"
EXPERIMENT_DEPLOYMENT = "experiment/gpu"
# evaluate@METHOD metrics summarized over seeds (accuracies at the threat eps): clean, each
# attack of the registry under its own name, the worst case
SUMMARY_METRICS = ("clean", *ATTACKS, "worst_case")


# ---------------------------------------------------------------- DVC in a checkout

def ordered_stages(project_dir: str | Path = ".") -> list[str]:
    """Every stage of dvc.yaml (foreach items expanded), dependencies first."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(project_dir)) as repo:
        graph = repo.index.graph  # an edge u -> v means u depends on v
        order = list(reversed(list(nx.topological_sort(graph))))
        return [stage.name for stage in order if stage.cmd]


def upstream_stages(project_dir: str | Path, targets: list[str]) -> dict[str, set[str]]:
    """target -> every stage it needs, itself included."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(project_dir)) as repo:
        graph = repo.index.graph
        by_name = {stage.name: stage for stage in graph}
        missing = [t for t in targets if t not in by_name]
        if missing:
            raise KeyError(f"no stages {missing} in dvc.yaml")
        return {t: {s.name for s in nx.descendants(graph, by_name[t]) if s.cmd} | {t} for t in targets}


def project_params(project_dir: str | Path):
    from pipeline.config import load_params

    return load_params(Path(project_dir) / "params.yaml")


def evaluation_stage(project_dir: str | Path, name: str) -> str:
    """The DVC stage that evaluates ``name`` (a model or a view of evaluations.GROUP):
    ``evaluate@GROUP``, which writes results/GROUP/NAME/."""
    return f"evaluate@{project_params(project_dir).targets[name].group}"


def sweep_points(project_dir: str | Path, methods: list[str]) -> dict[str, list[str]]:
    """The evaluation stage of each method -> the methods it evaluates, in the order given."""
    points: dict[str, list[str]] = {}
    for method in methods:
        points.setdefault(evaluation_stage(project_dir, method), []).append(method)
    return points


def shared_stages(project_dir: str | Path, methods: list[str]) -> list[str]:
    """Stages that the evaluations of two or more of the methods' stages need, dependencies first."""
    needs = upstream_stages(project_dir, list(sweep_points(project_dir, methods)))
    counts: dict[str, int] = {}
    for stages in needs.values():
        for stage in stages:
            counts[stage] = counts.get(stage, 0) + 1
    return [s for s in ordered_stages(project_dir) if counts.get(s, 0) > 1]


def _env(parent_run_id: str | None) -> dict[str, str]:
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)  # the interpreter that has the project installed
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    if parent_run_id:
        env["PIPELINE_PARENT_RUN_ID"] = parent_run_id
    if flow_run.get_id():
        env["PIPELINE_FLOW_RUN_ID"] = str(flow_run.get_id())
    return env


def direct_upstream(project_dir: str | Path) -> dict[str, set[str]]:
    """stage -> the stages whose outs it reads directly."""
    from dvc.repo import Repo

    with Repo(str(project_dir)) as repo:
        graph = repo.index.graph
        return {s.name: {u.name for u in graph.successors(s) if u.cmd} for s in graph if s.cmd}


class DvcFailed(RuntimeError):
    """A DVC command failed. ``said_why``: a stage stopped on an error it named (bad params, data
    or checkpoint, a diverged training: exit 2), which running it again cannot change."""

    def __init__(self, message: str, said_why: bool):
        super().__init__(message)
        self.said_why = said_why


def dvc(args: list[str], project_dir: str | Path, parent_run_id: str | None = None,
        env: dict[str, str] | None = None) -> str:
    """Run a DVC command in the checkout; its output, or :class:`DvcFailed` with the last lines."""
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project_dir,
                          env={**_env(parent_run_id), **(env or {})}, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = "\n".join(out.strip().splitlines()[-15:])
        raise DvcFailed(f"dvc {' '.join(args)} failed ({proc.returncode}):\n{tail}",
                        said_why="exited with 2" in out)
    return out


def worth_retrying(task, task_run, state) -> bool:
    """Prefect's retry condition: only a DVC run that may go otherwise next time (a stage killed,
    out of memory, the network); not a stage that named its error, nor an error of the flow's own."""
    err = state.result(raise_on_failure=False)
    return isinstance(err, DvcFailed) and not err.said_why


def stages_run(dvc_output: str) -> list[str]:
    """The stages DVC actually executed (not skipped, not restored from the run cache)."""
    return re.findall(r"Running stage '([^']+)'", dvc_output)


def has_remote(project_dir: str | Path) -> bool:
    from dvc.repo import Repo

    with Repo(str(project_dir)) as repo:
        return bool(repo.config["core"].get("remote"))


@contextmanager
def checkout_lock(project_dir: str | Path) -> Iterator[None]:
    """Wait for any other flow in this checkout: never two DVC runs in one workspace."""
    path = Path(project_dir) / ".dvc" / "tmp" / "flow.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ---------------------------------------------------------------- MLflow links

def lock_hash(entry: dict[str, Any]) -> str:
    """A short hash of a stage's entry in dvc.lock: what it was built from and what it made."""
    return hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest()[:16]


def stage_run_refs(project_dir: str | Path, lock: dict[str, dict] | None = None) -> dict[str, dict]:
    """Every MLflow run that the outs of dvc.yaml's stages name in the workspace (their
    mlflow_run.json files), by the name it was logged under: a stage's own run by the DVC stage
    (``evaluate@base``), each of its items' by the item (``evaluate@base/standard``). The lock's
    entries of stages no longer in dvc.yaml, and outs not in the workspace, are passed over.
    ``lock``: the lock's current entries where the caller has read them."""
    from pipeline.lockfile import current_entries

    refs = {}
    for stage, entry in (current_entries(project_dir) if lock is None else lock).items():
        for out in entry.get("outs", []):
            path = Path(project_dir) / out["path"]
            if path.name == RUN_REF:
                found = [path] if path.is_file() else []
            else:
                found = sorted(path.rglob(RUN_REF)) if path.is_dir() else []
            for file in found:
                try:
                    ref = json.loads(file.read_text())
                except (OSError, ValueError) as err:
                    raise ValueError(f"{file}: not a run reference ({err})") from None
                refs[ref.get("stage") or stage] = ref
    return refs


def tag_lock_hashes(project_dir: str | Path, stages: list[str]) -> None:
    """Tag the runs of stages that just ran with their dvc.lock hash (DVC writes it after the run);
    the lock is read once."""
    from mlflow.tracking import MlflowClient

    from pipeline.lockfile import current_entries

    if not stages:
        return
    lock = current_entries(project_dir)
    refs = stage_run_refs(project_dir, lock)
    for stage in stages:
        ref, entry = refs.get(stage), lock.get(stage)
        if not ref or not ref.get("run_id") or entry is None:
            continue
        try:
            MlflowClient(tracking_uri=ref["tracking_uri"]).set_tag(ref["run_id"], "dvc_lock_hash", lock_hash(entry))
        except Exception as err:  # noqa: BLE001 - tracking never fails a flow
            get_run_logger().warning("could not tag %s's MLflow run: %s", stage, err)


def open_run(project_dir: str | Path, experiment: str, name: str, tags: dict[str, str],
             parent_run_id: str | None = None, params: dict[str, Any] | None = None,
             finished: bool = True) -> str | None:
    """Create an MLflow run that later stage runs attach to as children, FINISHED at once or, with
    ``finished=False``, left RUNNING for :func:`flow_record` to end. Through the client API, so no
    active run of this process (MLflow's fluent state) is touched."""
    from pipeline.tracking import environment_tags

    client = _client(project_dir)
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        experiment_id = exp.experiment_id
    else:  # as StageRun does: a local store keeps its files beside it
        local = client.tracking_uri.startswith("sqlite")
        location = (Path(project_dir) / "mlartifacts").resolve().as_uri() if local else None
        experiment_id = client.create_experiment(experiment, artifact_location=location)
    all_tags = {**environment_tags(), "prefect_flow_run_id": str(flow_run.get_id() or ""), **tags}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(experiment_id, run_name=name, tags=all_tags)
    for key, value in (params or {}).items():
        client.log_param(run.info.run_id, key, value if isinstance(value, str) else json.dumps(value))
    if finished:
        client.set_terminated(run.info.run_id)
    return run.info.run_id


@contextmanager
def flow_record(project_dir: str | Path, experiment: str, name: str, tags: dict[str, str],
                parent_run_id: str | None = None, params: dict[str, Any] | None = None) -> Iterator[str]:
    """The MLflow run of a flow (or of a sweep's point): RUNNING while the flow runs, then FINISHED,
    FAILED when it raised, KILLED on Ctrl-C, as the flow ended."""
    run_id = open_run(project_dir, experiment, name, tags, parent_run_id, params, finished=False)
    try:
        yield run_id
    except BaseException as err:
        status = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
        _client(project_dir).set_tag(run_id, "error", f"{type(err).__name__}: {str(err)[:4000]}")
        _client(project_dir).set_terminated(run_id, status)
        raise
    _client(project_dir).set_terminated(run_id, "FINISHED")


def _client(project_dir: str | Path):
    from mlflow.tracking import MlflowClient

    from pipeline.tracking import tracking_uri

    cwd = os.getcwd()
    os.chdir(project_dir)
    try:
        return MlflowClient(tracking_uri=tracking_uri())
    finally:
        os.chdir(cwd)


# ---------------------------------------------------------------- reproduce

@task(retries=2, retry_delay_seconds=[10, 60], retry_condition_fn=worth_retrying, tags=["gpu"],
      task_run_name="{stage}")
def run_stage(stage: str, project_dir: str, parent_run_id: str | None = None, push: bool = False) -> str:
    """Run one DVC stage (DVC skips it when nothing it depends on changed), then share it."""
    out = dvc(["repro", "--single-item", stage], project_dir, parent_run_id)
    tag_lock_hashes(project_dir, stages_run(out))
    if push:
        dvc(["push", "--run-cache", stage], project_dir)
    get_run_logger().info("%s\n%s", stage, "\n".join(out.strip().splitlines()[-15:]))
    return stage


# Fetching data is the step that meets the network: retry it longer, with growing pauses.
fetch_stage = run_stage.with_options(name="fetch", retries=4, retry_delay_seconds=exponential_backoff(10),
                                     retry_jitter_factor=0.5)


#: per project, the worker checkouts no stage is running in now (``reproduce`` with ``workers``)
_free_checkouts: dict[str, queue.Queue] = {}


@task(retries=2, retry_delay_seconds=[10, 60], retry_condition_fn=worth_retrying, tags=["gpu"],
      task_run_name="{stage}")
def run_stage_in_worker(stage: str, project_dir: str, env: dict[str, str], parent_run_id: str | None = None,
                        push: bool = False) -> str:
    """Run one stage in a free worker checkout of the project (``pipeline.workers``), waiting for
    one while all are busy. The stages it reads were built before, in some checkout: ``dvc repro``
    restores them from the shared run cache."""
    free = _free_checkouts[project_dir]
    worker = free.get()
    try:
        out = dvc(["repro", stage], worker, parent_run_id, env)
        if push:
            dvc(["push", "--run-cache", stage], worker, env=env)
    finally:
        free.put(worker)
    get_run_logger().info("%s\n%s", stage, "\n".join(out.strip().splitlines()[-15:]))
    return stage


def _side_by_side(project_dir: str, parent: str | None, push: bool, workers: int, items_at_once: int) -> list[str]:
    """Every stage in one of ``workers`` worker checkouts, once the stages it reads are built
    (Prefect's ``wait_for``; a stage whose upstream failed does not run); then one ``dvc repro`` in
    the project restores them all from the run cache and writes dvc.lock. Each stage's task waits
    in a thread of its own, so a stage never waits for a thread behind one waiting for its inputs."""
    from prefect.task_runners import ThreadPoolTaskRunner

    from pipeline import workers as checkouts

    order = ordered_stages(project_dir)
    upstream = direct_upstream(project_dir)
    free = _free_checkouts[project_dir] = queue.Queue()
    for worker in checkouts.prepare(project_dir, workers):
        free.put(str(worker))
    env = checkouts.worker_env(project_dir, items_at_once)
    futures = {}
    try:
        with ThreadPoolTaskRunner(max_workers=len(order)) as runner:
            for stage in order:
                task_ = run_stage_in_worker.with_options(name=stage, retries=4 if stage == "fetch" else 2)
                futures[stage] = runner.submit(
                    task_, {"stage": stage, "project_dir": project_dir, "env": env, "parent_run_id": parent, "push": push},
                    wait_for=[futures[s] for s in sorted(upstream.get(stage, set()))])
            done = [future.result() for future in futures.values()]  # a failed stage fails the flow (after its retries)
    finally:
        _free_checkouts.pop(project_dir, None)
    restored = dvc(["repro"], project_dir, parent)
    tag_lock_hashes(project_dir, done)
    if stages_run(restored):
        raise RuntimeError(f"stages ran again in the project after the workers built them: {stages_run(restored)}")
    return done


@flow(name="reproduce", log_prints=True)
def reproduce(project_dir: str = ".", experiment: str = DEFAULT_EXPERIMENT, push: bool | None = None,
              workers: int = 1, items_at_once: int | None = None) -> list[str]:
    """Bring every stage of the checkout up to date, one task per stage, in DAG order.
    ``push`` (default: whether a DVC remote is configured) shares each stage's outs and run cache.
    ``workers`` > 1 runs independent stages side by side, each in a worker checkout of its own
    (``pipeline.workers``), each stage running ``items_at_once`` of its items at once (default: the
    cores shared among the checkouts; results do not depend on it),
    and restores their results into the project through the DVC cache."""
    project_dir = str(Path(project_dir).resolve())
    push = has_remote(project_dir) if push is None else push
    from pipeline.lockfile import prune

    with checkout_lock(project_dir), flow_record(project_dir, experiment, f"flow:{flow_run.get_name() or 'reproduce'}",
                                                 {"stage": "flow"}) as parent:
        if workers > 1:
            done = _side_by_side(project_dir, parent, push, workers,
                                 items_at_once or max(1, (os.cpu_count() or 1) // workers))
        else:
            done = [(fetch_stage if stage == "fetch" else run_stage)(stage, project_dir, parent, push)
                    for stage in ordered_stages(project_dir)]
        dropped = prune(project_dir)
        if dropped:
            print(f"dvc.lock: dropped the entries of {len(dropped)} stages no longer in dvc.yaml")
        sync_runs(project_dir)  # stages DVC restored from its cache name older runs: make them current
    return done


def sync_runs(project_dir: str | Path) -> dict[str, list]:
    """``bnat mlflow-sync``: the runs that the workspace's outs name become their stages' current runs."""
    from pipeline.tracking import sync_workspace

    cwd = os.getcwd()
    os.chdir(project_dir)  # the project's own store, as its stages found it
    try:
        return sync_workspace(stage_run_refs("."))
    finally:
        os.chdir(cwd)


# ---------------------------------------------------------------- sweeps

def set_params(seed: int, overrides: dict[str, Any] | None) -> list[str]:
    """``dvc exp run -S`` arguments: the seed and every override (dotted key -> value)."""
    args = ["-S", f"seed={seed}"]
    for key, value in (overrides or {}).items():
        args += ["-S", f"{key}={json.dumps(value)}"]
    return args


def committed_params_text(project_dir: str | Path) -> tuple[str, str]:
    """params.yaml as committed (what a sweep's experiments run from) and where it was read; the
    workspace's file when the project is not a git checkout or has not committed one."""
    proc = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=project_dir, capture_output=True, text=True)
    if proc.returncode == 0:
        return proc.stdout, "params.yaml as committed (HEAD)"
    path = Path(project_dir) / "params.yaml"
    return path.read_text(), str(path)


def check_sweep(project_dir: str | Path, methods: list[str], seeds: list[int],
                overrides: dict[str, Any] | None) -> None:
    """Fail before anything runs: every method must be evaluated, every seed and override valid
    against the committed params.yaml, which the experiments run from."""
    import copy

    from pipeline.config import ConfigError, parse_params, read_yaml

    if not methods or not seeds:
        raise ConfigError("sweep: methods and seeds must both be non-empty")
    if len(set(seeds)) != len(seeds) or len(set(methods)) != len(methods):
        raise ConfigError("sweep: methods and seeds must not repeat")
    text, where = committed_params_text(project_dir)
    raw = copy.deepcopy(read_yaml(text, where))
    for key, value in (overrides or {}).items():
        node = raw
        *path, last = key.split(".")
        for part in path:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"sweep: override {key}: no section {part!r} in params.yaml")
            node = node[part]
        node[last] = value
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 32:
            raise ConfigError(f"sweep: seed {seed!r}: a seed is an integer from 0 to {2 ** 32 - 1}")
    params = parse_params({**raw, "seed": seeds[0]}, f"{where} with the sweep overrides")
    unknown = [m for m in methods if m not in params.targets]
    if unknown:
        raise ConfigError(f"sweep: methods {unknown} are not evaluated by any plan of evaluations "
                          f"{list(params.targets)}")


def check_deployment(name: str) -> None:
    """Fail before anything runs when the Prefect server has no deployment ``name``
    (``FLOW/DEPLOYMENT``, e.g. ``experiment/gpu``) or cannot be reached."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from pipeline.config import ConfigError

    if "/" not in name:
        raise ConfigError(f"sweep: deployment {name!r}: expected FLOW/DEPLOYMENT, e.g. {EXPERIMENT_DEPLOYMENT}")
    try:
        with get_client(sync_client=True) as client:
            client.read_deployment_by_name(name)
    except ObjectNotFound:
        raise ConfigError(f"sweep: the Prefect server has no deployment {name!r} (`prefect deploy --all` "
                          f"creates the project's; or run here with --local)") from None
    except Exception as err:  # noqa: BLE001 - no server, refused, timed out: one line either way
        raise ConfigError(f"sweep: could not ask the Prefect server for deployment {name!r} "
                          f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
                          f"is PREFECT_API_URL set? or run here with --local") from None


@task(tags=["gpu"], task_run_name="dvc exp run {targets} seed={seed}")
def run_experiment(targets: list[str], seed: int, overrides: dict[str, Any] | None, project_dir: str,
                   parent_run_id: str | None) -> tuple[str, list[str]]:
    """``dvc exp run`` of the targets at one seed from the committed params, in the project's
    experiment checkout (never its workspace); pushes what it built. The checkout and the stages
    DVC ran."""
    from pipeline import workers

    where = str(workers.experiment_checkout(project_dir))
    env = workers.worker_env(project_dir, None)  # the project's MLflow store
    remote = has_remote(where)
    out = dvc(["exp", "run", *(["--pull"] if remote else []), *set_params(seed, overrides), *targets],
              where, parent_run_id, env)
    ran = stages_run(out)
    tag_lock_hashes(where, ran)
    if remote:
        dvc(["push", "--run-cache", "--with-deps", *targets], where, env=env)
    return where, ran


@flow(name="experiment", log_prints=True)
def experiment(methods: list[str] | None, seed: int, overrides: dict[str, Any] | None = None,
               parent_run_id: str | None = None, project_dir: str = ".",
               mlflow_experiment: str = DEFAULT_EXPERIMENT, stages: list[str] | None = None) -> list[dict[str, Any]]:
    """One sweep point of this project, run in its experiment checkout (the committed params and
    code; the workspace is never touched): the evaluation stage of ``methods`` (one stage: they
    share a group) at ``seed``, under a point run; each method's metrics go to a run of its own
    under the sweep's run. With ``stages`` instead of methods, it builds those stages (a sweep's
    shared upstream) and logs no metrics."""
    import platform

    if (methods is None) == (stages is None):
        raise ValueError("experiment: give either methods or the stages to build")
    project_dir = str(Path(project_dir).resolve())
    if methods:
        points = sweep_points(project_dir, methods)
        if len(points) != 1:
            raise ValueError(f"experiment: methods {methods} are evaluated by several stages {list(points)}")
        targets = list(points)
    else:
        targets = stages
    name = f"{targets[0] if methods else 'upstream'}/seed={seed}"
    with checkout_lock(project_dir), flow_record(
            project_dir, mlflow_experiment, name,
            {"kind": "point" if methods else "upstream", "seed": str(seed), "checkout": project_dir,
             "worker_host": platform.node()},
            parent_run_id=parent_run_id,
            params={"stages": targets, **({"methods": methods} if methods else {}), "seed": seed,
                    **(overrides or {})}) as point:
        where, ran = run_experiment(targets, seed, overrides, project_dir, point)
        refs = stage_run_refs(where)
        links = {f"run.{stage.replace('@', ':')}": ref["run_id"] for stage, ref in refs.items()
                 if ref.get("run_id") and (stage in targets or stage == "fetch")}
        from pipeline.layout import result_dir

        params = project_params(where) if methods else None  # the committed params with the point's overrides
        found = {m: json.loads((result_dir(params, m, Path(where)) / "metrics.json").read_text())
                 for m in methods or []}
        client = _client(project_dir)
        client.set_tag(point, "stages_ran", ",".join(ran) or "none")
        out = []
        for method, metrics in found.items():
            numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            model = params.targets[method].model
            trained = f"{'finetune' if params.is_finetune(model) else 'pretrain'}@{params.model_path(model)}"
            own = {"run.train": (refs.get(trained) or {}).get("run_id"),  # the runs that made this method's figures
                   "run.evaluate": (refs.get(f"evaluate@{params.target_path(method)}") or {}).get("run_id")}
            run_id = open_run(project_dir, mlflow_experiment, f"{method}/seed={seed}",
                              {"kind": "experiment", "method": method, "seed": str(seed), "point_run": point,
                               "stages_ran": ",".join(ran) or "none", **links, **{k: v for k, v in own.items() if v}},
                              parent_run_id=parent_run_id, params={"method": method, "seed": seed, **(overrides or {})})
            for key, value in numeric.items():
                client.log_metric(run_id, key, value)
            summary = ", ".join(f"{k} {numeric[k]:.3f}" for k in SUMMARY_METRICS if k in numeric)
            print(f"{method}/seed={seed}: {summary}")
            out.append({"method": method, "seed": seed, "run_id": run_id, "ran": ran, "metrics": numeric})
    print(f"{name}: stages run: {', '.join(ran) or 'none (all from the run cache)'}")
    return out


@task
def launch(deployment: str, parameters: dict[str, Any]) -> str:
    """Hand one experiment to whichever worker of the deployment's pool is free; wait for it."""
    from prefect.deployments import run_deployment

    run = run_deployment(name=deployment, parameters=parameters, timeout=None)
    if not run.state or not run.state.is_completed():
        what = parameters.get("methods") or f"stages {parameters.get('stages')}"
        raise RuntimeError(f"experiment {what} seed {parameters['seed']} ended "
                           f"{run.state.name if run.state else 'without a state'} (flow run {run.id})")
    return str(run.id)


def summarize(rows: list[dict[str, Any]], metrics: tuple[str, ...] = SUMMARY_METRICS) -> list[dict[str, Any]]:
    """Per method: mean and sample standard deviation over seeds of each metric (in %)."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        row: dict[str, Any] = {"method": method, "seeds": len(mine)}
        for m in metrics:
            values = [100 * r["metrics"][m] for r in mine if m in r["metrics"]]
            if values:
                row[f"{m}_mean"] = statistics.fmean(values)
                row[f"{m}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        out.append(row)
    return out


def summary_markdown(summary: list[dict[str, Any]]) -> str:
    metrics = [m for m in SUMMARY_METRICS if any(f"{m}_mean" in r for r in summary)]
    lines = ["| method | seeds | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for r in summary:
        cells = [f"{r[f'{m}_mean']:.2f} ± {r[f'{m}_std']:.2f}" if f"{m}_mean" in r else "—" for m in metrics]
        lines.append(f"| {r['method']} | {r['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def experiment_rows(project_dir: str | Path, parent_run_id: str) -> list[dict[str, Any]]:
    """The sweep's experiments as MLflow holds them (whichever machine ran them)."""
    client = _client(project_dir)
    parent = client.get_run(parent_run_id)
    runs = client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.kind = 'experiment'",
                              max_results=10000)
    return sorted(({"method": r.data.tags["method"], "seed": int(r.data.tags["seed"]), "run_id": r.info.run_id,
                    "metrics": r.data.metrics} for r in runs), key=lambda r: (r["method"], r["seed"]))


@flow(name="sweep", log_prints=True)
def sweep(methods: list[str], seeds: list[int], overrides: dict[str, Any] | None = None,
          deployment: str | None = EXPERIMENT_DEPLOYMENT, project_dir: str = ".", out_dir: str = "sweeps",
          mlflow_experiment: str = DEFAULT_EXPERIMENT) -> list[dict[str, Any]]:
    """Every (method, seed) as an experiment — on the deployment's workers, or here when
    ``deployment`` is None — then the mean ± std table over seeds, written and logged."""
    project_dir = str(Path(project_dir).resolve())
    check_sweep(project_dir, methods, seeds, overrides)
    name = flow_run.get_name() or "sweep"
    with flow_record(project_dir, mlflow_experiment, f"sweep:{name}", {"kind": "sweep", "stage": "flow"},
                     params={"methods": methods, "seeds": seeds, "overrides": overrides or {}}) as parent:
        return _sweep(methods, seeds, overrides, deployment, project_dir, out_dir, mlflow_experiment, name, parent)


def _sweep(methods, seeds, overrides, deployment, project_dir, out_dir, mlflow_experiment, name, parent):
    points = list(itertools.product(sweep_points(project_dir, methods).values(), seeds))
    if deployment:
        common = {"overrides": overrides, "parent_run_id": parent, "mlflow_experiment": mlflow_experiment}
        shared = shared_stages(project_dir, methods)
        if shared:  # once per seed before the fan-out, so that no two workers build them at once
            print(f"building the stages several points share first: {', '.join(shared)}")
            for f in [launch.submit(deployment, {"methods": None, "seed": s, "stages": shared, **common})
                      for s in seeds]:
                f.result()
        for f in [launch.submit(deployment, {"methods": m, "seed": s, **common}) for m, s in points]:
            f.result()
    else:
        for m, s in points:
            experiment(m, s, overrides, parent, project_dir, mlflow_experiment)

    rows = experiment_rows(project_dir, parent)
    summary = summarize(rows)
    table = summary_markdown(summary)
    from pipeline.io import atomic_dir, write_csv, write_text

    target = Path(project_dir) / out_dir / name
    with atomic_dir(target) as tmp:
        write_csv(tmp / "per_seed.csv", [{"method": r["method"], "seed": r["seed"], "run_id": r["run_id"],
                                          **r["metrics"]} for r in rows])
        write_csv(tmp / "summary.csv", summary)
        write_text(tmp / "summary.md", f"# Sweep {name}\n\nAccuracy in %, mean ± sample std over seeds "
                                       f"{seeds}; overrides {json.dumps(overrides or {})}.\n\n{table}")
    client = _client(project_dir)
    for r in summary:
        for key, value in r.items():
            if key.endswith(("_mean", "_std")):
                client.log_metric(parent, f"{r['method']}.{key}", value)
    for f in sorted(target.iterdir()):
        client.log_artifact(parent, str(f))
    print(table)
    return summary


if __name__ == "__main__":
    reproduce(sys.argv[1] if len(sys.argv) > 1 else ".")
