"""Kernel benchmarks: the training step against its floor, achieved FLOP/s against SGEMM, the
pipeline's PGD against torchattacks, the evaluation suite with and without early exit and
cascade, both cores used side by side, and the speed options. Each measures models and data that
:class:`harness.Bench` builds."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from harness import Bench, Section, sgemm_rate, timed
from pipeline import evaluate as ev
from pipeline.attacks.pgd import pgd
from pipeline.deploy import Deployed
from pipeline.methods import METHODS
from pipeline.norms import training_mode
from pipeline.train import accelerated, as_input, augment, autocast_for, optimizer_for, to_float, train_step

ITEM = Path(__file__).with_name("item_process.py")  # one item of section_cores, in a process of its own


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
    sgemm = sgemm_rate(b)
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
# 4b. AutoAttack through the pipeline against the official code run alone


def section_autoattack(b: Bench) -> Section:
    """Official standard AutoAttack on the clean-correct test images, called as the package's
    users call it (the model entering its deployment on every call) and as the pipeline runs it
    (the deployment held for the run: ``Deployed.held``), interleaved; the examples must be
    identical."""
    from pipeline.attacks.autoattack import autoattack

    cfg = b.params.evaluate
    x, y = b.eval_data(b.sizes.pgd_n)
    s = Section("AutoAttack: the pipeline against the official code run alone",
                f"Standard AutoAttack (the official `pyautoattack`, seed 0) at the threat eps {cfg.threat:g} on the "
                f"clean-correct images of the first {len(x)} test images, one batch: per call (the deployment entered "
                "on every forward, as a user of the package would wrap the model) and as `pipeline/evaluate.py` runs "
                "it (the mode and route held for the whole run, the weights' gradients off). Cost per robust image: "
                "the run's seconds over the images AutoAttack leaves robust.",
                ["model", "clean-correct images", "robust %", "official, per call s", "pipeline, held s", "speed-up",
                 "s per robust image (official / pipeline)", "identical examples"])
    for name, model, origin in b.reference_models():
        deployed = Deployed(model)
        keep = deployed.predict(x) == y
        xs, ys = x[keep], y[keep]

        adv = {}

        def official():
            adv["official"] = autoattack(deployed, xs, ys, eps=cfg.threat, batch_size=len(xs)).x_adv

        def pipeline_run():
            with deployed.held():
                adv["pipeline"] = autoattack(deployed, xs, ys, eps=cfg.threat, batch_size=len(xs)).x_adv

        t = timed({"official": official, "pipeline": pipeline_run}, 1, warmup=0)  # whole runs: one each
        robust = int((deployed.predict(adv["pipeline"]) == ys).sum())
        s.rows.append([name, len(xs), 100 * robust / len(x), t["official"], t["pipeline"],
                       f"{t['official'] / t['pipeline']:.2f}x",
                       f"{t['official'] / max(robust, 1):.2f} / {t['pipeline'] / max(robust, 1):.2f}",
                       "yes" if torch.equal(adv["official"], adv["pipeline"]) else "NO"])
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
    sizes = {"train": 6 if b.sizes.quick else 60, "attack": 1 if b.sizes.quick else 10}
    labels = {"train": "PGD-3 training, 60 steps", "attack": "PGD-50 on 100 images, 10 times"}
    if b.sizes.quick:
        labels = {k: f"{v} (quick: {sizes[k]})" for k, v in labels.items()}

    def ready(threads: int, what: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, str(ITEM), str(threads), what, str(sizes[what])],
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
                "(images/s of `train_step`, measured interleaved). The default turns channels_last on "
                "(params.yaml's train_defaults; every model also loads in that layout for evaluation); "
                "tests/test_perf.py checks that each option changes no result beyond float tolerance.",
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
