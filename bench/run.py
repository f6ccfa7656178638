"""The benchmarks: the pipeline against the physical limit and against peers. Writes BENCHMARKS.md.

    python bench/run.py [--quick] [--only SECTION ...] [--from-empty] [--params FILE] [--built DIR] [--out FILE]

Sections: train (step throughput against (k+1) forward+backward), flops (achieved GFLOP/s
against this machine's SGEMM), pgd (the pipeline's PGD against torchattacks.PGD), cascade (the
evaluation suite with and without early exit and cascade), options (channels_last, compile,
amp, data on the device), dvc (DVC's own cost per stage against the number of stages, on
trivial stages), dag (a `dvc repro` from empty of --params in a fresh copy: its wall time against
the stages' own work, where the rest goes, how busy the cores were, the most expensive stages, a
no-op repro, and a stage that does no work; runs with `--from-empty` or `--only dag`, about 15
minutes for the default params on 2 cores), pipeline (dvc repro and Prefect overhead on a built copy: the
dag section's with `--from-empty`). Every figure is the median of several runs, and every
comparison is a ratio of figures measured in the same run, interleaved. `--quick` runs tiny sizes
once or twice (for tests).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]  # this checkout's pipeline and tests helpers; cascade.py

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from pipeline import evaluate as ev  # noqa: E402
from pipeline.attacks.pgd import pgd  # noqa: E402
from pipeline.config import load_params  # noqa: E402
from pipeline.data import Splits, channel_stats, dataset_file, load_splits, prepare  # noqa: E402
from pipeline.deploy import Deployed  # noqa: E402
from pipeline.layout import model_dir  # noqa: E402
from pipeline.methods import METHODS  # noqa: E402
from pipeline.models import build_model  # noqa: E402
from pipeline.spec import load_model  # noqa: E402
from pipeline.norms import training_mode  # noqa: E402
from pipeline.train import (accelerated, as_input, augment, autocast_for, optimizer_for, to_float,  # noqa: E402
                            train, train_step)

SECTIONS = ("dag", "dvc", "train", "cores", "flops", "pgd", "cascade", "options", "pipeline")  # dag first: the others use its models


@dataclass(frozen=True)
class Sizes:
    repeats: int  # cheap figures (one training step, one SGEMM)
    slow_repeats: int  # whole attacks, dvc and Prefect runs
    pgd_n: int | None  # None: evaluate.n_samples
    cascade_n: int
    sgemm: int
    noop_repeats: int  # no-op dvc repro
    max_steps: int | None  # when the bench trains its own models
    compile: bool
    # FULL reads the checkout's data/prepared and models/ when built; QUICK (the tests) always
    # prepares and trains its own and builds a tiny project for the pipeline section, so that it
    # takes the same path on a fresh clone as on a built one
    use_checkout: bool


FULL = Sizes(repeats=7, slow_repeats=3, pgd_n=None, cascade_n=40, sgemm=2048, noop_repeats=5, max_steps=None, compile=True,
             use_checkout=True)
QUICK = Sizes(repeats=2, slow_repeats=1, pgd_n=32, cascade_n=12, sgemm=256, noop_repeats=2, max_steps=3, compile=False,
              use_checkout=False)


# --------------------------------------------------------------------------------------------
# timing and the report


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each callable, run interleaved so that load on the machine hits all alike."""
    for f in fns.values():
        for _ in range(warmup):
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            sync()
            t0 = time.perf_counter()
            f()
            sync()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


@dataclass
class Section:
    title: str
    text: str = ""
    headers: list[str] = field(default_factory=list)
    rows: list[list] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        out = [f"## {self.title}", ""]
        if self.text:
            out += [self.text, ""]
        if self.rows:
            out.append("| " + " | ".join(self.headers) + " |")
            out.append("|" + "---|" * len(self.headers))
            out += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in self.rows]
            out.append("")
        out += [f"- {n}" for n in self.notes]
        return "\n".join(out).rstrip() + "\n"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return str(v)


def machine() -> list[str]:
    cpu = platform.processor() or "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    return [f"- machine: {cpu}, {os.cpu_count()} cores ({torch.get_num_threads()} torch threads), GPU: {gpu}",
            f"- versions: python {platform.python_version()}, torch {torch.__version__}, "
            f"torchattacks {version('torchattacks')}, pyautoattack {version('pyautoattack')}",
            f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}, commit {commit.strip() or '?'}",
            "- load average (1, 5, 15 min) as this file was written: "
            + ", ".join(f"{v:.1f}" for v in os.getloadavg()) + " (other work on the machine slows every figure)"]


def write_report(path: Path, sections: list[Section], sizes: Sizes, argv: list[str]) -> None:
    how = ("Produced by `python bench/run.py` (`make bench` adds `--from-empty`); rerun it to refresh this "
           "file. `--only SECTION` runs one section, `--quick` tiny sizes. Each figure is the median of "
           f"{sizes.repeats} runs ({sizes.slow_repeats} for whole attacks and pipeline runs) unless a table "
           "says otherwise; ratios compare figures measured in the same run, interleaved.")
    head = ["# Benchmarks", "", how, "", *machine(), f"- command: `python bench/run.py {' '.join(argv)}`".rstrip(), ""]
    path.write_text("\n".join(head) + "\n" + "\n".join(s.markdown() for s in sections))


# --------------------------------------------------------------------------------------------
# what the sections share


class Bench:
    def __init__(self, sizes: Sizes, params_file: Path):
        self.sizes = sizes
        self.params = load_params(params_file)
        self.device = torch.device("cuda" if torch.cuda.is_available() and self.params.device != "cpu" else "cpu")
        self.splits = self._splits().to(self.device)
        self._models: dict[str, tuple[torch.nn.Module, str]] = {}
        self.from_empty: tuple[Path, float, list[tuple[float, str]]] | None = None  # see build_from_empty
        self.forkserver_dir: str | None = None  # the build's fork-server folder, removed at the end

    def _splits(self) -> Splits:
        if self.sizes.use_checkout and dataset_file(self.params.data).exists():
            return load_splits(self.params.data)
        arrays = prepare(self.params.data, seed=self.params.seed)  # the fetch stage's work, in memory
        mean, std = channel_stats(arrays["x_train"])
        t = {k: torch.from_numpy(v) for k, v in arrays.items()}
        return Splits(t["x_train"], t["y_train"].long(), t["x_test"], t["y_test"].long(),
                      tuple(map(float, mean)), tuple(map(float, std)))

    def config(self, method: str):
        """The first training entry of params.yaml that trains with ``method``."""
        return next(c for _, c in self.params.trained.values() if c.method == method and c.epochs > 0)

    def fresh_model(self) -> torch.nn.Module:
        torch.manual_seed(0)
        s = self.splits
        return build_model(self.params.model.arch, num_classes=s.num_classes, in_channels=s.channels,
                           mean=s.mean, std=s.std).to(self.device)

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return to_float(self.splits.x_train[:n]), self.splits.y_train[:n]

    def model(self, name: str) -> tuple[torch.nn.Module, str]:
        """models/GROUP/NAME/model.pt of this checkout or of the dag section's build, or one trained
        here with params.yaml's entry."""
        if name not in self._models:
            rel = model_dir(self.params, name)
            path, built = ROOT / rel / "model.pt", self.from_empty and self.from_empty[0] / rel / "model.pt"
            if self.sizes.use_checkout and path.exists():
                self._models[name] = (load_model(path, map_location=self.device)[0], f"{rel}/model.pt")
            elif self.sizes.use_checkout and built and built.exists():
                self._models[name] = (load_model(built, map_location=self.device)[0],
                                      f"{rel}/model.pt of the dag section's build")
            else:
                cfg, steps = self.params.training(name), self.sizes.max_steps
                model = self.fresh_model()
                train(model, self.splits, cfg, seed=self.params.seed, progress=False, max_steps=steps)
                done = f"{steps} steps" if steps else f"{cfg.epochs} epochs"
                self._models[name] = (model.eval(), f"trained here ({done} of {name}'s entry)")
        return self._models[name]

    def reference_models(self):
        """(name, model, where it came from) of the standard and PGD-AT models params.yaml trains."""
        for name in ("standard", "adversarial"):
            if name in self.params.trained:
                yield (name, *self.model(name))

    def eval_data(self, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        n = min(n or self.params.evaluate.n_samples or len(self.splits.x_test), len(self.splits.x_test))
        return to_float(self.splits.x_test[:n]), self.splits.y_test[:n]


def _step_fns(b: Bench, cfg, model, x, y):
    """(one forward+backward, one training step of cfg's method) on the same model and batch."""
    opt = optimizer_for(list(model.parameters()), cfg)
    method, autocast = METHODS[cfg.method], autocast_for(cfg, b.device)
    forward = accelerated(model, cfg)
    x = as_input(x, cfg)

    def fwd_bwd():
        with training_mode(model, True), autocast:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(forward(x), y).backward()

    def step():
        with training_mode(model, True):
            train_step(forward, method, opt, x, y, cfg, autocast)

    return fwd_bwd, step


def _with_steps(cfg, k: int):
    return cfg.model_copy(update={"attack": cfg.attack.model_copy(update={"steps": k})})


def _variants(b: Bench):
    std, adv = b.config("standard"), b.config("pgd_at")
    out = [("standard", std, 0), (f"pgd_at, PGD-{adv.attack.steps} (params.yaml)", adv, adv.attack.steps)]
    if adv.attack.steps != 10:
        out.append(("pgd_at, PGD-10", _with_steps(adv, 10), 10))
    return out


# --------------------------------------------------------------------------------------------
# 1. train-step throughput against (k + 1) forward+backward


def section_train(b: Bench) -> Section:
    s = Section("Train-step throughput against its floor",
                f"One optimization step of the pipeline (`pipeline.train.train_step`, the step of the training "
                f"loop) on `{b.params.model.arch}`, batch {b.config('standard').batch_size}, against its floor: "
                "(k + 1) forward+backward passes of the same model and batch (k attack steps plus the update; "
                "1 for standard training). Overhead = step time / floor - 1; target for PGD-AT: <= 10%.",
                ["method", "passes", "forwards counted", "step images/s", "floor images/s", "one fwd+bwd ms", "overhead above floor"])
    for label, cfg, k in _variants(b):
        x, y = b.batch(cfg.batch_size)
        model = b.fresh_model()
        fwd_bwd, step = _step_fns(b, cfg, model, x, y)
        calls = []
        hook = model.register_forward_hook(lambda *_: calls.append(1))
        step()
        hook.remove()
        t = timed({"floor": fwd_bwd, "step": step}, b.sizes.repeats)
        floor = (k + 1) * t["floor"]
        s.rows.append([label, k + 1, len(calls), len(x) / t["step"], len(x) / floor, 1e3 * t["floor"],
                       f"{100 * (t['step'] / floor - 1):+.1f}%"])
    s.notes.append("Forwards counted: calls of the model during one step (a forward hook); no forward is computed "
                   "twice (tests/test_perf.py checks k + 1 for standard, PGD-AT and BN-only fine-tuning).")
    s.notes.append("An attack pass needs only the input gradient (`torch.autograd.grad` w.r.t. the input, no "
                   "parameter gradients), so it can cost less than the floor's forward+backward with parameter "
                   "gradients; a negative overhead means that.")
    return s


# --------------------------------------------------------------------------------------------
# 2. achieved FLOP/s against SGEMM


def count_flops(fn: Callable[[], object]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def section_flops(b: Bench) -> Section:
    n = b.sizes.sgemm
    a, c = torch.randn(n, n, device=b.device), torch.randn(n, n, device=b.device)
    sgemm = 2 * n ** 3 / timed({"mm": lambda: torch.mm(a, c)}, b.sizes.repeats)["mm"]
    s = Section("Achieved FLOP/s against SGEMM",
                f"FLOPs of one training step counted by `torch.utils.flop_counter.FlopCounterMode` on the real "
                f"step (convolutions and matrix products; batch norm and elementwise work are not counted), over "
                f"its median time, against this machine's SGEMM rate (`torch.mm` of two {n}x{n} float32 "
                f"matrices): {sgemm / 1e9:.1f} GFLOP/s.",
                ["step", "GFLOP per step", "ms per step", "GFLOP/s", "share of SGEMM"])
    cfg = b.config("standard")
    x, y = b.batch(cfg.batch_size)
    fwd_bwd, step = _step_fns(b, cfg, b.fresh_model(), x, y)
    flops = count_flops(step)
    t = timed({"step": step}, b.sizes.repeats)["step"]
    s.rows.append(["standard", flops / 1e9, 1e3 * t, flops / t / 1e9, f"{100 * flops / t / sgemm:.1f}%"])
    s.notes.append("Only the standard step is counted: the counter's module hooks do not support the "
                   "`torch.autograd.grad` calls of an attack; a PGD-k step does about k + 1 times this work.")
    return s


# --------------------------------------------------------------------------------------------
# 3. the pipeline's PGD against torchattacks.PGD


def section_pgd(b: Bench) -> Section:
    import torchattacks

    cfg = b.params.evaluate
    spec = next(a for a in cfg.attack_list if a.name == "pgd")
    eps = cfg.threat
    step = spec.rel_step_size * eps
    x, y = b.eval_data(b.sizes.pgd_n)
    s = Section("PGD evaluation against torchattacks",
                f"PGD-{spec.steps} at the threat eps {eps:g} (step {step:g}, random start) on the first {len(x)} "
                "test images, all in one batch: the pipeline's PGD as `pipeline/evaluate.py` runs it (per-sample "
                "early exit: a sample stops being attacked once it is misclassified), the same without early "
                "exit, and `torchattacks.PGD` with the same eps, step size and steps. Accuracy on the returned "
                "examples, predicted by the same deployed model. Target: the pipeline >= 2x torchattacks, "
                "accuracy within 1 point.",
                ["model", "attack", "images/s", "speed vs torchattacks", "robust accuracy %", "points vs torchattacks"])
    for name, model, origin in b.reference_models():
        deployed = Deployed(model)
        ours = ev.attack_fn(spec, deployed, cfg.deployment.eot)
        plain = lambda xs, ys, e: pgd(deployed, xs, ys, eps=e, step_size=step, steps=spec.steps,  # noqa: E731
                                         random_start=spec.random_start, loss=spec.loss)
        peer = torchattacks.PGD(model, eps=eps, alpha=step, steps=spec.steps, random_start=spec.random_start)
        runs = {"pipeline (early exit)": lambda: ours(x, y, eps), "pipeline (no early exit)": lambda: plain(x, y, eps),
                "torchattacks.PGD": lambda: peer(x, y)}
        t = timed(runs, b.sizes.slow_repeats)
        acc = {}
        for label, run in runs.items():
            torch.manual_seed(0)
            acc[label] = 100 * (deployed.predict(run()) == y).float().mean().item()
        for label in runs:
            s.rows.append([name, label, len(x) / t[label], f"{t['torchattacks.PGD'] / t[label]:.2f}x", acc[label],
                           f"{acc[label] - acc['torchattacks.PGD']:+.1f}"])
        s.notes.append(f"{name}: {origin}")
    return s


# --------------------------------------------------------------------------------------------
# 4. the evaluation suite with and without early exit and cascade


def section_cascade(b: Bench) -> Section:
    from cascade import compare  # bench/cascade.py

    cfg = b.params.evaluate
    x, y = b.eval_data(b.sizes.cascade_n)
    s = Section("Evaluation suite: early exit and cascade",
                f"The whole attack suite of params.yaml's evaluate section on the first {len(x)} test images "
                "(`bench/cascade.py`): exhaustive (every attack on every clean-correct sample, PGD without early "
                "exit) against the pipeline's way (early exit and cascade). One run each: whole suites are slow.",
                ["model", "exhaustive s", "cascade s", "speed-up", "worst case % (exh. / casc.)", "same per-sample outcome"])
    for name, model, origin in b.reference_models():
        times, worst = compare(model, x, y, cfg)
        s.rows.append([name, times[False], times[True], f"{times[False] / times[True]:.2f}x",
                       f"{100 * worst[False].float().mean():.1f} / {100 * worst[True].float().mean():.1f}",
                       f"{100 * (worst[False] == worst[True]).float().mean():.1f}%"])
        s.notes.append(f"{name}: {origin}")
    return s


# --------------------------------------------------------------------------------------------
# 5. the speed options


def _loader_step_times(b: Bench, cfg, steps: int) -> dict[str, float]:
    """Seconds per batch: the loop's batches taken on the device against a torch DataLoader."""
    from torch.utils.data import DataLoader, TensorDataset

    s, bs = b.splits, cfg.batch_size
    gen = torch.Generator().manual_seed(0)
    loader = DataLoader(TensorDataset(s.x_train.cpu(), s.y_train.cpu()), batch_size=bs, shuffle=True, generator=gen)

    def on_device():
        order = torch.randperm(len(s.x_train), generator=gen).to(b.device)
        for i in range(steps):
            idx = order[i * bs:(i + 1) * bs]
            to_float(augment(s.x_train[idx], cfg.augment, gen)), s.y_train[idx]

    def data_loader():
        for i, (xb, yb) in zip(range(steps), loader):
            to_float(augment(xb.to(b.device), cfg.augment, gen)), yb.to(b.device)

    t = timed({"device": on_device, "loader": data_loader}, b.sizes.repeats)
    return {k: v / steps for k, v in t.items()}


ITEM = """
import sys, time, torch
threads, what, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
torch.set_num_threads(threads)
sys.path.insert(0, sys.argv[4])
from pipeline.attacks.pgd import pgd
from pipeline.config import TrainConfig
from pipeline.deploy import Deployed
from pipeline.methods import METHODS
from pipeline.models import build_model
from pipeline.train import train_step
torch.manual_seed(0)
model = build_model("resnet_small", num_classes=10, in_channels=1, mean=[0.3], std=[0.3])
x, y = torch.rand(128, 1, 8, 8), torch.randint(0, 10, (128,))
print("ready", flush=True)
sys.stdin.readline()  # go
if what == "train":
    cfg = TrainConfig(method="pgd_at", epochs=1, attack={"eps": 0.1, "step_size": 0.04, "steps": 3})
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(size):
        train_step(model.train(), METHODS["pgd_at"], opt, x, y, cfg)
else:
    deployed = Deployed(model)
    for _ in range(size):
        pgd(deployed, x[:100], y[:100], eps=0.1, step_size=0.01, steps=50)
"""


def section_cores(b: Bench) -> Section:
    """Two items one after another with two threads each, against both at once with one thread
    each: how a group should use the cores (stages/group.py)."""
    s = Section("Using both cores: items side by side",
                "Two items of the default's kind, timed as a group runs them: one after another, each with "
                f"{os.cpu_count()} torch threads, against both at once in two processes of one thread each "
                "(`workers: auto`, `threads: 1`). An item is PGD-3 adversarial training of `resnet_small` at batch 128 "
                "(a default model's 60 steps), or PGD-50 on 100 digits ten times. Seconds from the items' start (each "
                "process has imported everything, as a group's forked workers have) to the last one's end, median of "
                f"{b.sizes.slow_repeats} runs, interleaved.",
                ["item", "one after another, 2 threads each s", "side by side, 1 thread each s", "speed-up"])
    sizes = {"train": 6 if b.sizes is QUICK else 60, "attack": 1 if b.sizes is QUICK else 10}
    labels = {"train": "PGD-3 training, 60 steps", "attack": "PGD-50 on 100 images, 10 times"}
    if b.sizes is QUICK:
        labels = {k: f"{v} (quick: {sizes[k]})" for k, v in labels.items()}

    def ready(threads: int, what: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", ITEM, str(threads), what, str(sizes[what]), str(ROOT)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        return proc

    def run(procs: list[subprocess.Popen], together: bool) -> float:
        seconds = 0.0
        batches = [procs] if together else [[p] for p in procs]
        for batch in batches:
            t0 = time.perf_counter()
            for proc in batch:
                proc.stdin.write("go\n")
                proc.stdin.flush()
            for proc in batch:
                proc.communicate()
            seconds += time.perf_counter() - t0
        return seconds

    for what in ("train", "attack"):
        got = {"after": [], "side": []}
        for _ in range(b.sizes.slow_repeats):
            got["after"].append(run([ready(os.cpu_count() or 1, what) for _ in range(2)], together=False))
            got["side"].append(run([ready(1, what) for _ in range(2)], together=True))
        after, side = statistics.median(got["after"]), statistics.median(got["side"])
        s.rows.append([labels[what], after, side, f"{after / side:.2f}x"])
    return s


def section_options(b: Bench) -> Section:
    s = Section("Speed options",
                "Each option of the training config against the plain step on the same model and batch "
                "(images/s of `train_step`, measured interleaved). All are off by default, so the "
                "default results are unchanged; tests/test_perf.py checks that each changes no result beyond "
                "float tolerance.",
                ["option", "method", "plain images/s", "with option images/s", "speed-up"])
    variants = _variants(b)[:2]
    options = [("channels_last", {"channels_last": True})]
    if b.sizes.compile:
        options.append(("compile", {"compile": True}))
    else:
        s.notes.append("compile: not run with --quick (compiling takes minutes on a CPU).")
    if b.device.type == "cuda":
        options.append(("amp (bf16 autocast)", {"amp": True}))
    else:
        s.notes.append("amp: bf16 autocast on CUDA only; the pipeline ignores it on the CPU, so there is nothing to "
                       "measure here (bench/gpu_epoch.py measures it on a GPU).")
    cache_dir, scratch = os.environ.get("TORCHINDUCTOR_CACHE_DIR"), []
    for option, update in options:
        for label, cfg, _ in variants:
            x, y = b.batch(cfg.batch_size)
            _, plain = _step_fns(b, cfg, b.fresh_model(), x, y)
            _, fast = _step_fns(b, cfg.model_copy(update=update), b.fresh_model(), x, y)
            first = 0.0
            if option == "compile":  # the first call compiles, from nothing; report it on its own
                torch._dynamo.reset()
                scratch.append(tempfile.mkdtemp(prefix="bench-inductor-"))
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = scratch[-1]
                t0 = time.perf_counter()
                fast()
                first = time.perf_counter() - t0
            t = timed({"plain": plain, "fast": fast}, b.sizes.repeats, warmup=2)
            s.rows.append([option, label, len(x) / t["plain"], len(x) / t["fast"], f"{t['plain'] / t['fast']:.2f}x"])
            if option == "compile":
                s.notes.append(f"compile, {label}: the first step took {first:.1f} s (compiling with empty caches), "
                               "excluded above.")
    if cache_dir is None:
        os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
    else:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache_dir
    for d in scratch:
        shutil.rmtree(d, ignore_errors=True)
    cfg = b.config("standard")
    steps = min(10, len(b.splits.x_train) // cfg.batch_size)
    t = _loader_step_times(b, cfg, steps)
    s.notes.append(f"Data on the device (pipeline/train.py keeps the dataset on the device as uint8 and takes each "
                   f"batch by index): {1e3 * t['device']:.2f} ms per batch (index, augment, to float) against "
                   f"{1e3 * t['loader']:.2f} ms with a torch DataLoader over the same tensors (shuffle, no workers): "
                   f"{t['loader'] / t['device']:.1f}x.")
    return s


# --------------------------------------------------------------------------------------------
# 6. pipeline overhead


IGNORED = (".venv", ".git", "mlruns", "mlartifacts", "mlflow.db", "checkpoints", ".prefect", "raw", "__pycache__",
           ".pytest_cache", "tmp", "BENCHMARKS.md")


def copy_built(src: Path, dest: Path) -> Path:
    """A built project (code, dvc.lock, outs and the DVC cache) in a fresh git repo."""
    from tests.e2e import sh

    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(*IGNORED), symlinks=True)
    sh(["git", "init", "-q"], dest)
    sh(["git", "add", "-A"], dest)
    sh(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-qm", "built"], dest)
    return dest


def _dvc_repro(project: Path) -> str:
    from tests.e2e import sh

    return sh(["dvc", "repro"], project, timeout=7200).stdout


def _time_flow(project: Path, repeats: int) -> float:
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.testing.utilities import prefect_test_harness

    from pipeline.flows import reproduce

    def runs():
        return timed({"flow": lambda: reproduce(str(project), push=False)}, repeats, warmup=0)["flow"]

    if os.environ.get("PREFECT_API_URL"):
        return runs()
    with prefect_test_harness(server_startup_timeout=180):
        return runs()


def build_from_empty(b: Bench, params_file: Path, workdir: Path) -> tuple[Path, float, list[tuple[float, str]]]:
    """A fresh copy of the project with ``params_file``, built by one timed `dvc repro` from empty
    (once per bench run: the dag and pipeline sections share it), with a fork-server folder of its
    own, so that the first stage finds no server: its folder, the repro's wall seconds and its
    output lines, each with the second it arrived."""
    if b.from_empty is None:
        import yaml

        from tests.e2e import copy_project, env

        project = workdir / "project"
        shutil.rmtree(project, ignore_errors=True)
        project.mkdir(parents=True)
        copy_project(project, yaml.safe_load(params_file.read_text()))
        b.forkserver_dir = tempfile.mkdtemp(prefix="bnat-fs-")  # short: it holds a socket's path
        os.environ["BNAT_FORKSERVER_DIR"] = b.forkserver_dir  # for every command the bench runs from here on
        lines, t0 = [], time.perf_counter()
        proc = subprocess.Popen(["dvc", "repro"], cwd=project, env=env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:  # universal newlines: a progress bar's \r updates are lines too
            lines.append((time.perf_counter() - t0, line.rstrip("\n")))
        if proc.wait() != 0:
            raise RuntimeError("dvc repro failed:\n" + "\n".join(line for _, line in lines[-40:]))
        b.from_empty = (project, time.perf_counter() - t0, lines)
    return b.from_empty


def stage_windows(lines: list[tuple[float, str]]) -> dict[str, tuple[float, float]]:
    """Per stage DVC ran: from its "Running stage" line to its next lock-file line (the stage's
    process, then DVC saving its outs)."""
    windows: dict[str, tuple[float, float]] = {}
    current = None
    for t, line in lines:
        if line.startswith("Running stage '"):
            current = line.split("'")[1]
            windows[current] = (t, t)
        elif current and line.startswith(("Generating lock file", "Updating lock file")):
            windows[current] = (windows[current][0], t)
            current = None
    return windows


def _stage_timings(project: Path) -> dict[str, dict]:
    """The timing.json every stage wrote into its group folder, by DVC stage (each lists its items'
    seconds; the items' own timing.json files are in their folders)."""
    out = {}
    for top in ("data", "models", "results", "reports"):
        for path in (project / top).rglob("timing.json"):
            t = json.loads(path.read_text())
            if t.get("dvc_stage") and t["stage"] == t["dvc_stage"]:
                out[t["dvc_stage"]] = t
    return out


def _item_timings(project: Path) -> list[dict]:
    """The timing.json of every item a group ran."""
    return [t for top in ("models", "results") for path in (project / top).rglob("timing.json")
            if (t := json.loads(path.read_text())).get("launched") == "group"]


IDLE = {"method": "standard", "epochs": 0}  # a group whose one model trains 0 epochs: a stage with no work


def _no_work_stage(b: Bench, project: Path) -> Section:
    """A stage whose one item trains 0 epochs, run every way, interleaved: its wall against its
    own work."""
    import yaml

    from tests.e2e import env

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["pretrain"]["idle"] = {"models": {"idle": IDLE}}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    s = Section("A stage that does no work",
                "`pretrain@idle`, a group of one model that trains 0 epochs (added to the built copy's params): its "
                f"wall time is almost all overhead. Median of {b.sizes.slow_repeats} interleaved runs; work is the "
                "stage's own `work_s` (its group's timing.json: from the start of its `main` to its last output, the "
                "item, its MLflow run and the group's own run included); under `dvc repro` the stage's window runs "
                "from DVC's \"Running stage\" to its lock-file line.",
                ["how", "wall s", "stage window s", "work s", "overhead s (wall - work)"])
    py, dvc = [sys.executable, "-m", "stages", "pretrain"], ["dvc", "repro", "-f", "-s", "pretrain@idle"]
    runs = {"`python -m stages pretrain idle`, `BNAT_FORKSERVER=0` (its own process)": (py + ["idle"], {"BNAT_FORKSERVER": "0"}),
            "`python -m stages pretrain idle` (fork server)": (py + ["idle"], {}),
            "`dvc repro -f -s pretrain@idle`, `BNAT_FORKSERVER=0`": (dvc, {"BNAT_FORKSERVER": "0"}),
            "`dvc repro -f -s pretrain@idle` (fork server)": (dvc, {})}
    subprocess.run(py + ["idle"], cwd=project, env=env(), capture_output=True, check=True)  # a new MLflow store, once
    got: dict[str, list[tuple[float, float | None, float]]] = {k: [] for k in runs}
    for _ in range(b.sizes.slow_repeats):
        for label, (cmd, extra) in runs.items():
            t0 = time.perf_counter()
            lines = []
            proc = subprocess.Popen(cmd, cwd=project, env=env(**extra), stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
            for line in proc.stdout:
                lines.append((time.perf_counter() - t0, line.rstrip("\n")))
            if proc.wait() != 0:
                raise RuntimeError(f"{cmd} failed:\n" + "\n".join(line for _, line in lines[-20:]))
            wall = time.perf_counter() - t0
            window = stage_windows(lines).get("pretrain@idle")
            timing = json.loads((project / "models" / "idle" / "timing.json").read_text())
            got[label].append((wall, window and window[1] - window[0], timing["work_s"]))
    for label, values in got.items():
        wall, work = statistics.median(v[0] for v in values), statistics.median(v[2] for v in values)
        window = statistics.median(v[1] for v in values) if values[0][1] is not None else ""
        s.rows.append([label, wall, window, work, wall - work])
    s.notes.append("Under `dvc repro` the wall time also holds DVC's own start-up, once per `dvc repro`.")
    return s


def _trivial_dag(dest: Path, n: int, code_deps: list[str]) -> Path:
    """A git+DVC project with this checkout's code and ``n`` chained stages that each write one
    small file (no Python): a stage's cost there is DVC's alone."""
    import yaml

    from tests.e2e import sh

    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for pkg in ("pipeline", "stages"):
        shutil.copytree(ROOT / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    stages = {f"s{i}": {"cmd": f"mkdir -p out/s{i} && echo {i} > out/s{i}/v.json",
                        "deps": code_deps + ([f"out/s{i - 1}"] if i else []), "params": ["seed"],
                        "outs": [f"out/s{i}"]} for i in range(n)}
    (dest / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    (dest / "params.yaml").write_text("seed: 0\n")
    sh(["git", "init", "-q"], dest)
    sh(["dvc", "init", "-q"], dest)
    sh(["git", "add", "-A"], dest)
    sh(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-qm", "init"], dest)
    return dest


def section_dvc(b: Bench, workdir: Path) -> Section:
    """DVC's own cost per stage against the number of stages: what a stage per model costs
    beside a stage per group, before any of them does work."""
    from tests.e2e import sh
    from tests.test_stage_deps import import_closure

    closure = sorted(p.as_posix() for p in import_closure("stages.pretrain") | import_closure("stages.__main__"))
    deps = ["pipeline", *(p for p in closure if p.startswith("stages/"))]
    counts = (4, 12) if b.sizes is QUICK else (22, 110)
    s = Section("DVC's cost per stage",
                "`dvc repro` of n chained stages that each write one small file with a shell command (no Python), "
                "in a fresh project holding this checkout's code and listing the code deps a pretrain stage lists: "
                f"all of the time is DVC's. {counts[0]} stages is the default DAG's count (a stage per group), "
                f"{counts[1]} what a stage per model, view, analysis and grid point made of it. DVC checks every dep "
                "before a stage and rewrites dvc.lock, which grows with the stages run, after each.",
                ["stages", "from empty s", "per stage s", "no-op s", "dvc.lock lines"])
    for n in counts:
        project = _trivial_dag(workdir / "dvc-cost", n, deps)
        t0 = time.perf_counter()
        sh(["dvc", "repro", "-q"], project, timeout=3600)
        wall = time.perf_counter() - t0
        noop = timed({"noop": lambda: sh(["dvc", "repro", "-q"], project)}, b.sizes.noop_repeats, warmup=0)["noop"]
        lines = len((project / "dvc.lock").read_text().splitlines())
        s.rows.append([n, wall, wall / n, noop, lines])
    shutil.rmtree(workdir / "dvc-cost", ignore_errors=True)
    s.notes.append("The default's lock entries also hold params and its outs' hashes: its per-stage figures are "
                   "higher than these (the dag section measures them).")
    return s


def section_dag(b: Bench, params_file: Path, workdir: Path) -> list[Section]:
    project, wall, lines = build_from_empty(b, params_file, workdir)
    windows, timings, items = stage_windows(lines), _stage_timings(project), _item_timings(project)
    missing = sorted(set(windows) - set(timings))
    ran = [timings[k] for k in windows if k in timings]
    work = sum(t["work_s"] for t in ran)
    before = sum(t["process_s"] - t["work_s"] for t in ran)
    inside = sum(end - start for start, end in windows.values())
    n = len(windows)
    s = Section("Full DAG: stage work against overhead",
                f"`dvc repro` from empty of `{params_file.name}` ({n} stages, {len(items)} items) in a fresh copy of the "
                "project, the fork server starting with the first stage. Work is the sum of the stages' own `work_s` "
                "(each stage's timing.json: from the start of its `main`, after its imports, to its last output; a "
                "stage runs its items side by side inside that time); overhead is the rest of the wall time. Target: "
                "overhead at most 10% of the whole.",
                ["what", "seconds", "share of the wall time", "per stage"])

    def row(what, seconds):
        s.rows.append([what, seconds, f"{100 * seconds / wall:.1f}%", seconds / n])

    row("`dvc repro` from empty, wall time", wall)
    row("stage work", work)
    row("overhead (wall - work)", wall - work)
    row("- in a stage before its work: interpreter, imports, fork-server handoff", before)
    row("- in a stage after its last output (MLflow run end, exit), and DVC saving its outs",
        inside - sum(t["process_s"] for t in ran))
    row("- DVC between stages: start-up, checking each stage's deps and params, the lock file", wall - inside)
    how = [t["launched"] for t in ran]
    s.notes.append("Stages launched: " + ", ".join(f"{how.count(k)} {k}" for k in sorted(set(how)))
                   + " (`process`: in its own process; the first stage runs so and starts the server).")
    item_wall = sum(sum(t.get("items", {}).values()) for t in ran)
    item_work = sum(t["work_s"] for t in items)
    s.notes.append(f"Inside the stages: {len(items)} items, {item_wall:.0f} s of item time (each from the moment its "
                   f"group handed it to a worker to its end) in {work:.0f} s of stage work: {item_wall / work:.2f} items "
                   f"running at a time on average on {os.cpu_count()} cores. Of the item time, {item_wall - item_work:.0f} s "
                   f"({100 * (item_wall - item_work) / item_wall:.1f}%) is outside the items' own work (their MLflow runs' "
                   "start and end, the handoff).")
    top = sorted(windows, key=lambda k: windows[k][1] - windows[k][0], reverse=True)[:5]
    s.notes.append("The five most expensive stages (window, work): " + "; ".join(
        f"{k} {windows[k][1] - windows[k][0]:.1f} s, {timings[k]['work_s']:.1f} s" if k in timings else k
        for k in top) + ".")
    if missing:
        s.notes.append(f"warning: no timing.json for {missing}")
    t_noop = timed({"noop": lambda: _dvc_repro(project)}, b.sizes.noop_repeats, warmup=0)["noop"]
    s.notes.append(f"`dvc repro` once built (nothing reruns), median of {b.sizes.noop_repeats}: {t_noop:.2f} s "
                   "(target <= 3 s).")
    sections = [s]
    idle = workdir / "idle-copy"
    shutil.rmtree(idle, ignore_errors=True)
    sections.append(_no_work_stage(b, copy_built(project, idle)))
    shutil.rmtree(idle, ignore_errors=True)
    return sections


def tiny_params(workdir: Path) -> Path:
    """The tests' tiny cut of params.yaml (a few stages, seconds of work) as a file in ``workdir``."""
    import yaml

    from tests.e2e import sweep_params, tiny_raw

    path = workdir / "tiny-params.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(sweep_params(tiny_raw(yaml.safe_load((ROOT / "params.yaml").read_text()))),
                                   sort_keys=False))
    return path


def section_pipeline(b: Bench, from_empty: bool, built: Path, params_file: Path, workdir: Path) -> Section:
    from tests.e2e import sh

    s = Section("Pipeline overhead",
                "`dvc repro` on a built, up-to-date copy of the project (nothing reruns; target <= 3 s), the "
                "Prefect `reproduce` flow on the same copy (one task per stage, each a `dvc repro --single-item`) "
                "against it: the orchestration overhead.",
                ["what", "runs", "seconds", "vs dvc repro (no-op)"])
    if from_empty or not b.sizes.use_checkout:  # --quick: a tiny project built here, on every machine alike
        source = params_file if from_empty else tiny_params(workdir)
        project, wall, _ = build_from_empty(b, source, workdir)
        s.rows.append([f"`dvc repro` from empty ({source.name})", 1, wall, ""])
    else:
        project = workdir / "built-copy"
        shutil.rmtree(project, ignore_errors=True)
        if not (built / "dvc.lock").exists():
            raise RuntimeError(f"{built} has no dvc.lock: run `dvc repro` there, pass --built DIR of a built project, "
                               "or --from-empty")
        copy_built(built, project)
        status = sh(["dvc", "status"], project, check=False)
        if status.returncode != 0 or "up to date" not in status.stdout:
            raise RuntimeError(f"{built} is not built and up to date (`dvc status` lists changes or missing outs): "
                               "run `dvc repro` there, pass --built DIR, or --from-empty")
        _dvc_repro(project)  # DVC hashes the copied outs once (new inodes); not timed
    t_noop = timed({"noop": lambda: _dvc_repro(project)}, b.sizes.noop_repeats, warmup=0)["noop"]
    ran = [line for line in _dvc_repro(project).splitlines() if line.startswith("Running stage")]
    s.rows.append(["`dvc repro`, up to date (no-op)", b.sizes.noop_repeats, t_noop, "1.00x"])
    t_flow = _time_flow(project, b.sizes.slow_repeats)
    from pipeline.flows import ordered_stages

    n = len(ordered_stages(project))
    s.rows.append(["Prefect `reproduce` flow, up to date", b.sizes.slow_repeats, t_flow, f"{t_flow / t_noop:.1f}x"])
    s.notes.append(f"The flow's overhead: {t_flow - t_noop:.1f} s over `dvc repro` for {n} stages, "
                   f"{(t_flow - t_noop) / n:.2f} s per stage (one `dvc repro --single-item` process each).")
    if ran:
        raise RuntimeError(f"the no-op repro ran stages: {ran}")
    return s


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> list[Section]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one or two runs (tests)")
    ap.add_argument("--only", action="append", choices=SECTIONS, help="run only this section (repeatable)")
    ap.add_argument("--from-empty", action="store_true",
                    help="also run the dag section: `dvc repro` from empty of --params (~40 min for the default)")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="build the pipeline's copy here and keep it (default: a temporary folder)")
    ap.add_argument("--built", type=Path, default=ROOT, help="a built project to copy for the no-op timings")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, one per core)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    argv = list(sys.argv[1:] if argv is None else argv)
    out, built, params_file = args.out.resolve(), args.built.resolve(), args.params.resolve()
    cwd = os.getcwd()
    os.chdir(ROOT)  # data/prepared and models/ are read relative to the project root
    try:
        return _run(args, argv, out, built, params_file)
    finally:
        os.chdir(cwd)


def _run(args, argv: list[str], out: Path, built: Path, params_file: Path) -> list[Section]:
    sizes = QUICK if args.quick else FULL
    b = Bench(sizes, params_file)
    workdir = args.workdir.resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="bench-"))
    runners = {"train": section_train, "cores": section_cores, "flops": section_flops, "pgd": section_pgd, "cascade": section_cascade,
               "options": section_options, "dag": lambda b: section_dag(b, params_file, workdir),
               "dvc": lambda b: section_dvc(b, workdir),
               "pipeline": lambda b: section_pipeline(b, args.from_empty, built, params_file, workdir)}
    names = args.only or [n for n in SECTIONS if n != "dag" or args.from_empty]
    sections, failed = [], []
    try:
        for name in names:
            t0 = time.perf_counter()
            try:
                done = runners[name](b)
            except Exception as err:  # one broken section must not lose the others' figures
                traceback.print_exc()
                failed.append(name)
                done = Section(name, f"failed: {type(err).__name__}: {err}")
            done = done if isinstance(done, list) else [done]
            done[-1].notes.append(f"(section took {time.perf_counter() - t0:.0f} s)")
            for section in done:
                print(section.markdown(), flush=True)
            sections += done
            write_report(out, sections, sizes, argv)
    finally:
        if b.forkserver_dir:
            from pipeline import forkserver

            forkserver.stop(b.forkserver_dir)
            os.environ.pop("BNAT_FORKSERVER_DIR", None)
            shutil.rmtree(b.forkserver_dir, ignore_errors=True)
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"wrote {out}")
    if failed:
        raise SystemExit(f"sections failed: {', '.join(failed)}")
    return sections


if __name__ == "__main__":
    main()
