"""Kills, bad input and concurrency on real stages and a real DVC checkout."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.conftest import tiny_raw
from tests.e2e import ROOT, copy_project, env, sh, sweep_params

pytestmark = pytest.mark.slow


def _raw():
    raw = tiny_raw(yaml.safe_load((ROOT / "params.yaml").read_text()))
    raw["pretrain"]["base"]["models"]["adversarial"]["epochs"] = 6
    return raw


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    proj = copy_project(tmp_path_factory.mktemp("reliability"), _raw())
    sh(["dvc", "repro", "fetch"], proj)
    return proj


def _stage(proj, *args):
    return subprocess.Popen([sys.executable, "-m", *args], cwd=proj, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def _complete_or_absent(out):
    if not out.exists():
        return True
    return (out / "model.pt").exists() and (out / "metrics.json").exists()


def test_killed_training_resumes_to_the_same_metrics_as_an_uninterrupted_run(project):
    out = project / "models" / "base" / "adversarial"
    sh([sys.executable, "-m", "stages.pretrain", "base/adversarial"], project)
    reference = json.loads((out / "metrics.json").read_text())
    t0 = time.time()
    sh([sys.executable, "-m", "stages.pretrain", "base/adversarial"], project)  # a second uninterrupted run
    duration = time.time() - t0
    assert json.loads((out / "metrics.json").read_text()) == reference  # deterministic on CPU

    # Kill at random points until six runs were killed: a resumed run has less left to do, and a
    # loaded machine runs faster or slower than the timed one, so some runs may finish first (a
    # finished run is a complete output, and the next run starts over).
    rng = random.Random(0)
    kills = attempts = 0
    while kills < 6 and attempts < 15:
        attempts += 1
        proc = _stage(project, "stages.pretrain", "base/adversarial")
        time.sleep(rng.uniform(0.2, 0.8) * duration)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        assert _complete_or_absent(out)
    assert kills == 6
    sh([sys.executable, "-m", "stages.pretrain", "base/adversarial"], project)
    assert json.loads((out / "metrics.json").read_text()) == reference
    assert not (project / "checkpoints" / "pretrain@base" / "adversarial.pt").exists()
    assert not list(out.parent.glob(".adversarial.*.tmp"))


def test_killed_evaluation_leaves_no_partial_results(project):
    sh([sys.executable, "-m", "stages.pretrain", "base/standard"], project)
    out = project / "results" / "base" / "standard"
    proc = _stage(project, "stages.evaluate", "base/standard")
    time.sleep(8)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists() or (out / "metrics.json").exists()
    sh([sys.executable, "-m", "stages.evaluate", "base/standard"], project)
    first = json.loads((out / "metrics.json").read_text())
    sh([sys.executable, "-m", "stages.evaluate", "base/standard"], project)
    assert json.loads((out / "metrics.json").read_text()) == first  # deterministic on CPU


BAD = [
    ("pretrain.base.models.adversarial.attack.eps", 2.0, "pretrain.base.models.adversarial.attack.eps"),
    ("model.arch", "resnet9000", "model.arch"),
    ("evaluate.eps", [], "evaluate.eps"),
]


@pytest.mark.parametrize("key,value,expect", BAD, ids=[b[0] for b in BAD])
def test_a_bad_params_file_stops_a_stage_before_any_work(project, key, value, expect, tmp_path):
    raw = _raw()
    node = raw
    *parents, last = key.split(".")
    for k in parents:
        node = node[k]
    node[last] = value
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(raw))
    before = {p: p.stat().st_mtime_ns for p in (project / "models").rglob("*") if p.is_file()}
    proc = subprocess.run([sys.executable, "-m", "stages.pretrain", "base/standard"], cwd=project,
                          env=env(PIPELINE_PARAMS=str(bad)), capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], proc.stderr
    assert {p: p.stat().st_mtime_ns for p in (project / "models").rglob("*") if p.is_file()} == before


def test_a_second_repro_in_the_same_checkout_fails_clearly_and_the_first_finishes(tmp_path):
    proj = copy_project(tmp_path, sweep_params(tiny_raw(yaml.safe_load((ROOT / "params.yaml").read_text()))))
    first = subprocess.Popen(["dvc", "repro"], cwd=proj, env=env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not (proj / ".dvc" / "tmp" / "rwlock").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(2)
    second = sh(["dvc", "repro"], proj, check=False)
    assert second.returncode != 0
    assert "lock" in (second.stdout + second.stderr).lower()
    out, _ = first.communicate(timeout=900)
    assert first.returncode == 0, out[-2000:]
    assert json.loads((proj / "results" / "adv" / "adversarial" / "metrics.json").read_text())["clean"] > 0
    assert sh(["dvc", "status", "--json"], proj).stdout.strip() in ("{}", "")
