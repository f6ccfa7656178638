"""Whole-project benchmarks: a `dvc repro` from empty of a params file in a fresh copy of the
project (its wall time against the stages' own work, a no-op repro, a stage that does no work),
DVC's own cost per stage, and the Prefect flow's overhead on a built copy. Each builds the
project it measures (the tests' tiny cut of params.yaml unless ``--from-empty`` names the
default), so a figure never depends on whether the checkout is built."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

import evaltime
from harness import ROOT, Bench, Section, timed
from tests.e2e import copy_project, env, sh, sweep_params, tiny_raw

IGNORED = (".venv", ".git", "mlruns", "mlartifacts", "mlflow.db", "checkpoints", ".prefect", "raw", "__pycache__",
           ".pytest_cache", "tmp", "BENCHMARKS.md")


def copy_built(src: Path, dest: Path) -> Path:
    """A built project (code, dvc.lock, outs and the DVC cache) in a fresh git repo."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns(*IGNORED), symlinks=True)
    sh(["git", "init", "-q"], dest)
    sh(["git", "add", "-A"], dest)
    sh(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-qm", "built"], dest)
    return dest


def _dvc_repro(project: Path) -> str:
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


def pretrain_code_deps() -> list[str]:
    """The code a pretrain stage of dvc.yaml lists as deps: the pipeline folder and its stages/ modules."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    deps = next(s["do"]["deps"] for name, s in stages.items() if name == "pretrain")
    return [d for d in deps if d == "pipeline" or d.startswith("stages/")]


def section_dvc(b: Bench, workdir: Path) -> Section:
    """DVC's own cost per stage against the number of stages: what a stage per model costs
    beside a stage per group, before any of them does work."""
    deps = pretrain_code_deps()
    counts = (4, 12) if b.sizes.quick else (22, 110)
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
    sections = [s, *evaltime.build_profile(project)]
    idle = workdir / "idle-copy"
    shutil.rmtree(idle, ignore_errors=True)
    sections.append(_no_work_stage(b, copy_built(project, idle)))
    shutil.rmtree(idle, ignore_errors=True)
    return sections


def tiny_params(workdir: Path) -> Path:
    """The tests' tiny cut of params.yaml (a few stages, seconds of work) as a file in ``workdir``."""
    path = workdir / "tiny-params.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(sweep_params(tiny_raw(yaml.safe_load((ROOT / "params.yaml").read_text()))),
                                   sort_keys=False))
    return path


def section_pipeline(b: Bench, from_empty: bool, params_file: Path, workdir: Path) -> Section:
    s = Section("Pipeline overhead",
                "`dvc repro` on a built, up-to-date copy of the project (nothing reruns; target <= 3 s), the "
                "Prefect `reproduce` flow on the same copy (one task per stage, each a `dvc repro --single-item`) "
                "against it: the orchestration overhead. The copy is built here: the default's with "
                "`--from-empty` (the dag section's build), else the tests' tiny cut of it.",
                ["what", "runs", "seconds", "vs dvc repro (no-op)"])
    source = params_file if from_empty else tiny_params(workdir)
    project, wall, _ = build_from_empty(b, source, workdir)
    s.rows.append([f"`dvc repro` from empty ({source.name})", 1, wall, ""])
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
