"""What the benchmarks share: their sizes, interleaved timing, the report's sections and the
machine line, and :class:`Bench`, which prepares the data and trains the models it measures
(never the checkout's: a figure must not depend on whether the checkout is built)."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # this checkout's pipeline

import torch  # noqa: E402

from pipeline.config import load_params  # noqa: E402
from pipeline.data import Splits, channel_stats, prepare  # noqa: E402
from pipeline.layout import model_dir  # noqa: E402
from pipeline.models import build_model  # noqa: E402
from pipeline.spec import load_model  # noqa: E402
from pipeline.train import to_float, train  # noqa: E402


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
    quick: bool  # tiny work sizes inside the sections too


FULL = Sizes(repeats=7, slow_repeats=3, pgd_n=None, cascade_n=40, sgemm=2048, noop_repeats=5, max_steps=None, compile=True,
             quick=False)
QUICK = Sizes(repeats=2, slow_repeats=1, pgd_n=32, cascade_n=12, sgemm=256, noop_repeats=2, max_steps=3, compile=False,
              quick=True)


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


def sgemm_rate(b: "Bench") -> float:
    """FLOP/s of ``torch.mm`` of two ``b.sizes.sgemm``-square float32 matrices on the bench's device:
    the machine's peak the other figures are set against."""
    n = b.sizes.sgemm
    a, c = torch.randn(n, n, device=b.device), torch.randn(n, n, device=b.device)
    return 2 * n ** 3 / timed({"mm": lambda: torch.mm(a, c)}, b.sizes.repeats)["mm"]


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
            out += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in self.rows]
            out.append("")
        out += [f"- {n}" for n in self.notes]
        return "\n".join(out).rstrip() + "\n"


def fmt(v) -> str:
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


def provenance() -> str:
    """When, at which commit and under what load a section was measured: its last line, so that a
    section refreshed alone (``--only``) says which run it comes from."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}, commit {commit.strip() or '?'}, "
            f"load average {load}")


def merged(old: str, sections: list[Section], argv: list[str]) -> str:
    """``old`` (a BENCHMARKS.md) with the sections of the same titles replaced by ``sections`` and
    new ones appended; its head gains a line naming the refreshing command."""
    fresh = {s.title: s.markdown() for s in sections}
    head, *chunks = old.split("\n## ")
    body = []
    for chunk in chunks:
        title = chunk.split("\n", 1)[0].strip()
        body.append(fresh.pop(title) if title in fresh else "## " + chunk.rstrip() + "\n")
    body += fresh.values()
    line = f"- refreshed since by `python bench/run.py {' '.join(argv)}`: those sections' last lines say when"
    head = head.rstrip() + ("\n" + line if line not in head else "") + "\n"
    return head + "\n" + "\n".join(body)


def write_report(path: Path, sections: list[Section], sizes: Sizes, argv: list[str], merge: bool = False) -> None:
    """The report of ``sections``; ``merge``: into the existing file, replacing only those sections."""
    if merge and path.exists():
        path.write_text(merged(path.read_text(), sections, argv))
        return
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
        self.from_empty: tuple[Path, float, list[tuple[float, str]]] | None = None  # see dag.build_from_empty
        self.forkserver_dir: str | None = None  # the build's fork-server folder, removed at the end

    def _splits(self) -> Splits:
        """The fetch stage's data, prepared here in memory."""
        arrays = prepare(self.params.data, seed=self.params.seed)
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
        """Model ``name`` as the dag section's build of this run made it, or trained here with
        params.yaml's entry (the first time it is asked for)."""
        if name not in self._models:
            rel = model_dir(self.params, name)
            built = self.from_empty and self.from_empty[0] / rel / "model.pt"
            if built and built.exists():
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
