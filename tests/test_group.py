"""A stage's group of items side by side (stages/group.py): the same results as one at a time,
the failing item named and the rest stopped, a terminated group ending its workers."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from pipeline.tracking import md5_file
from tests.conftest import tiny_raw
from tests.e2e import ROOT, copy_project, env, sh

pytestmark = pytest.mark.slow

PROBE = '''"""probe GROUP[/NAME]: items that sleep, or fail when named bad."""
import sys, time
from pathlib import Path

from stages.common import Item, run, start

def items(params, group):  # group g has an item that fails
    names = (("slow", 3.0), ("bad", 2.0), ("late", 1.0)) if group == "g" else (("slow", 3.0), ("late", 1.0))
    return [Item("probe", group, name, cost) for name, cost in names]

def main(argv):
    params, item, device = start(argv, items, "probe")
    Path("probe").mkdir(exist_ok=True)
    (Path("probe") / item.name).write_text("started")
    if item.name == "bad":
        print("bad: failing on purpose", file=sys.stderr)
        sys.exit(3)
    time.sleep(float(Path("sleep").read_text()) if Path("sleep").exists() else 0.5)
    (Path("probe") / item.name).write_text("done")

if __name__ == "__main__":
    run(main, items, "probe")
'''


def _raw() -> dict:
    raw = tiny_raw(yaml.safe_load((ROOT / "params.yaml").read_text()))
    base = raw["pretrain"]["base"]["models"]
    raw["pretrain"] = {"base": {"models": {k: base[k] for k in ("standard", "adversarial", "trades")}}}
    raw["finetune"], raw["analyses"], raw["ablations"] = {}, {}, {}
    raw["evaluations"] = {"base": {"full": ["standard"], "screen": ["adversarial", "trades"]}}
    return raw


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    proj = copy_project(tmp_path_factory.mktemp("group"), _raw())
    sh([sys.executable, "-m", "stages", "fetch"], proj)
    (proj / "stages" / "probe.py").write_text(PROBE)
    return proj


def _built(project) -> dict[str, str]:
    files = [f for d in ("models", "results") for f in (project / d).rglob("*")
             if f.name in ("model.pt", "metrics.json", "accuracy.csv")]
    files += list((project / "metrics").rglob("*.json"))
    return {f.relative_to(project).as_posix(): md5_file(f) for f in files}


def test_two_items_at_once_give_the_results_of_one_at_a_time(project):
    """What a group builds does not depend on how many of its items run at once: each item runs
    with params' `threads` (one) whatever runs beside it."""
    built = {}
    for workers in ("1", "2"):
        for stage in ("pretrain", "evaluate"):
            proc = sh([sys.executable, "-m", "stages", stage, "base"], project, BNAT_WORKERS=workers)
            assert f"{stage}@base: 3 items on {workers} worker" in proc.stdout
        timing = json.loads((project / "models" / "base" / "timing.json").read_text())
        assert timing["workers"] == int(workers) and len(timing["items"]) == 3
        built[workers] = _built(project)
    assert len(built["1"]) == 2 * (3 * 2 + 3) and built["1"] == built["2"]  # model.pt or accuracy.csv, metrics
    # and an item run alone, as `python -m stages pretrain base/standard` does, is the same model again
    sh([sys.executable, "-m", "stages", "pretrain", "base/standard"], project)
    assert _built(project)["models/base/standard/model.pt"] == built["1"]["models/base/standard/model.pt"]


def test_a_failing_item_stops_its_group_and_is_named_in_one_line(project):
    (project / "sleep").write_text("30")
    proc = subprocess.run([sys.executable, "-m", "stages", "probe", "g"], cwd=project, env=env(BNAT_WORKERS="2"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: probe@g/bad failed (exit 3); its output above says why"], proc.stderr
    assert "bad: failing on purpose" in proc.stderr
    # the longest item went first beside the failing one and was stopped; the last never started
    assert (project / "probe" / "slow").read_text() == "started"
    assert not (project / "probe" / "late").exists()


def test_terminating_a_group_ends_its_workers(project):
    (project / "sleep").write_text("600")
    for name in ("slow", "late"):
        (project / "probe" / name).unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "stages", "probe", "h"], cwd=project,  # the group in this process
                            env=env(BNAT_WORKERS="2", BNAT_FORKSERVER="0"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while not (project / "probe" / "slow").exists() and time.time() < deadline:
        time.sleep(0.1)
    assert (project / "probe" / "slow").exists(), proc.stderr.read() if proc.poll() is not None else ""
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    time.sleep(1)
    out = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert out == [], f"processes of the group still running: {out}"
    for name in ("slow", "late"):  # both stopped, not finished
        assert (project / "probe" / name).read_text() == "started"
    os.remove(project / "sleep")
