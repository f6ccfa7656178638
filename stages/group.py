"""A DVC stage's group of items, side by side: ``python -m stages KIND GROUP``.

A group (the models of ``pretrain.GROUP``, the targets of ``evaluations.GROUP``, the points of a
grid, ...) is what DVC caches and reruns as one. Its items are independent, so the stage runs
them in ``workers`` processes at once (``auto``: one a CPU core), each with ``threads`` torch
threads, the longest first. On two cores two one-thread processes do about 1.5 times the work of
one two-thread process on this project's small networks (BENCHMARKS.md), and a group's items
fill both cores where a stage per item would leave one idle.

The worker processes are forked from this one before it opens the MLflow store or runs any torch
operation (no thread pool, no database connection, no CUDA context to inherit), and each runs
one item at a time, calling its stage module's ``main`` as ``python -m stages STAGE GROUP/NAME``
would: its own
MLflow run (a child of the group's run), its own outputs, written atomically, and its own
timing.json. On CUDA the items run one after another in this process.

The group's run and its ``timing.json`` (its work, and each item's) go into the group's folder.
A failing item stops the group: no further item starts, the running ones are stopped, and the
stage exits with an error naming the item (a diverged training is not a failure: its item writes
``diverged.json`` and ends well, see pipeline.divergence). A training item keeps its last
checkpoint until the whole group has succeeded, so that a killed group's rerun resumes every
model where it stopped, finished ones included.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

from pipeline import layout
from pipeline.config import Params
from pipeline.tracking import StageRun, children_of
from stages import common
from stages.common import Item, ItemFailed, Items

#: the folder each kind of stage writes per group, and the headline tree its items write into
OUTS = {"pretrain": (layout.MODELS, layout.MODELS), "finetune": (layout.MODELS, layout.MODELS),
        "evaluate": (layout.RESULTS, layout.RESULTS), "analyze": (layout.ANALYSES, None),
        "ablation": (layout.ABLATIONS, "ablations")}
CHECKPOINTS = Path("checkpoints")
BAR_SLOT = "BNAT_BAR_SLOT"  # the worker's number: its progress bars take that line of a terminal
WORKERS_ENV = "BNAT_WORKERS"  # overrides params' workers on this machine


def _section(params: Params, kind: str, group: str) -> dict:
    """The params of the group, as its MLflow run logs them."""
    source = {"pretrain": params.pretrain, "finetune": params.finetune, "evaluate": params.evaluations,
              "analyze": params.analyses, "ablation": params.ablations}.get(kind, {})
    entry = source[group].model_dump() if group in source else group
    return {"group": entry, "seed": params.seed, "threads": params.threads}


def worker_count(params: Params, device_type: str, n_items: int) -> int:
    """``BNAT_WORKERS`` when set (a machine's share, e.g. a flow's checkout's), else ``workers``
    as asked, ``auto`` being one process per ``threads`` CPU cores; one on CUDA. How many items
    run at once never changes a result: each runs with ``threads`` threads whatever the count."""
    if device_type == "cuda":
        return 1
    wanted = os.environ.get(WORKERS_ENV) or params.workers
    if wanted == "auto":
        wanted = max(1, (os.cpu_count() or 1) // params.threads)
    return max(1, min(int(wanted), n_items))


def run_item(item: Item, parent_run: str | None) -> int:
    """Run ``item`` in this process, its stage module's ``main`` called on GROUP/NAME as
    ``python -m stages STAGE GROUP/NAME`` would, its MLflow run a child of ``parent_run``; its
    exit code (a bug prints its traceback and is 1)."""
    common._item_started = time.time()
    try:
        stage = importlib.import_module(f"stages.{item.stage}")
        with children_of(parent_run):
            return common.call(stage.main, [item.arg])
    except SystemExit as exit_:  # an item that exits, as its own process would
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: BLE001 - reported as the item's failure, as its own process would
        traceback.print_exc()
        return 1
    finally:
        common._item_started = None


def _die_with_parent() -> None:
    """Have the kernel send this process SIGTERM when its parent dies (Linux), so that no worker
    outlives its group however the group ends (the fork server's watchdog covers DVC's kills)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker(slot: int, conn) -> None:
    """A worker process: items from ``conn`` one at a time until None; (code, seconds) back."""
    _die_with_parent()
    os.environ[BAR_SLOT] = str(slot)
    while True:
        task = conn.recv()
        if task is None:
            return
        item, parent = task
        t0 = time.perf_counter()
        code = run_item(item, parent)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        conn.send((code, time.perf_counter() - t0))


class Workers:
    """``n`` forked worker processes; :meth:`run` hands them items, longest first, and collects
    each one's exit code and seconds; the first failure stops it."""

    def __init__(self, n: int):
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        self.procs, self.conns = [], []
        for slot in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(slot, child), name=f"worker-{slot}")
            proc.start()
            child.close()
            self.procs.append(proc)
            self.conns.append(parent)

    def run(self, items: list[Item], parent_run: str | None) -> dict[Item, tuple[int, float]]:
        from multiprocessing.connection import wait

        queue, done, busy = list(items), {}, {}

        def hand(slot: int) -> None:
            if queue:
                busy[slot] = queue.pop(0)
                self.conns[slot].send((busy[slot], parent_run))

        for slot in range(len(self.procs)):
            hand(slot)
        while busy:
            ready = wait([self.conns[s] for s in busy] + [self.procs[s].sentinel for s in busy])
            for slot in list(busy):
                if self.conns[slot] in ready:
                    try:
                        done[busy.pop(slot)] = self.conns[slot].recv()
                    except EOFError:  # the worker died while it sent
                        done[busy.pop(slot)] = (self._death(slot), float("nan"))
                elif self.procs[slot].sentinel in ready:  # killed (out of memory, a signal) without a word
                    done[busy.pop(slot)] = (self._death(slot), float("nan"))
                else:
                    continue
                if any(code != 0 for code, _ in done.values()):
                    return done  # the items still running are stopped by close()
                hand(slot)
        return done

    def _death(self, slot: int) -> int:
        """The exit status of a worker that died on its item: minus the signal that killed it,
        as multiprocessing gives it, or its exit code (1 if it exited as if all were well)."""
        self.procs[slot].join()
        return self.procs[slot].exitcode or 1

    def close(self) -> None:
        """Stop every worker: None to the idle ones (they exit), SIGTERM to those still running an
        item (it ends KILLED, its outputs unwritten)."""
        for conn, proc in zip(self.conns, self.procs):
            if proc.is_alive():
                try:
                    conn.send(None)
                except OSError:
                    pass
        deadline = time.time() + 1
        for proc in self.procs:
            proc.join(timeout=max(0.0, deadline - time.time()))
            if proc.is_alive():
                proc.terminate()
        for proc in self.procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join()


def failure_line(item: Item, code: int) -> str:
    """Why the group stopped: an item that exited with an error printed why; one killed by a
    signal (``code`` < 0) had no chance to, so the line says what such a kill usually is."""
    if code >= 0:
        return f"{item.label} failed (exit {code}); its output above says why"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    cause = "out of memory, or killed from outside" if -code == signal.SIGKILL else "killed from outside"
    return f"{item.label} was killed by {name} and could not say why ({cause}); rerun the stage to retry"


def run_group(kind: str, group: str, items: Items) -> None:
    """The DVC stage ``KIND@GROUP``: every item of the group, then the group's run reference and
    timing.json in its folder."""
    started = common._work_started  # the group's own work; each item it runs in this process resets it
    params = common.load()
    todo = common.group_items(params, items, group, kind)
    root, headlines = OUTS.get(kind, (f"{layout.RESULTS}/{kind}", None))  # another kind: its own folder of results/
    out = Path(root) / group
    device = common.device_of(params)
    n = worker_count(params, device.type, len(todo))
    order = sorted(todo, key=lambda it: -it.cost)  # stable: params' order among equals
    common.keep_checkpoints = True  # the items' checkpoints go when the whole group has succeeded
    workers = Workers(n) if n > 1 else None  # forked now: no torch work and no MLflow store in this process yet
    stage = f"{kind}@{group}"
    t0 = time.perf_counter()
    try:
        with StageRun(stage, params.tracking.experiment, _section(params, kind, group),
                      tags={"items": str(len(todo)), "workers": str(n), "threads": str(params.threads)}) as tracker:
            print(f"{stage}: {len(todo)} items on {n} worker{'s' * (n > 1)} of {params.threads} "
                  f"thread{'s' * (params.threads > 1)}", flush=True)
            if workers is not None:
                done = workers.run(order, tracker.run_id)
            else:
                done = {}
                for item in order:
                    t = time.perf_counter()
                    done[item] = (run_item(item, tracker.run_id), time.perf_counter() - t)
                    if done[item][0] != 0:
                        break
            failed = [it for it in order if done.get(it, (0,))[0] != 0]
            if failed:
                raise ItemFailed(failure_line(failed[0], done[failed[0]][0]))
            out.mkdir(parents=True, exist_ok=True)
            if headlines:
                (Path(layout.METRICS) / headlines / group).mkdir(parents=True, exist_ok=True)
            tracker.write_ref(out)
            seconds = {it.label: round(s, 3) for it, (_, s) in done.items()}
            tracker.log_metrics({"items": len(done), "item_seconds": sum(seconds.values()),
                                 "wall_seconds": time.perf_counter() - t0})
            common._work_started = started
            common.write_timing(out, stage, workers=n, threads=params.threads, items=seconds)
    finally:
        if workers is not None:
            workers.close()
    shutil.rmtree(CHECKPOINTS / stage, ignore_errors=True)
