"""The fork server (pipeline/forkserver.py) on real stages: the same outs as a stage in its own
process, the same exit codes and error lines, a killed caller ends its stage, edited project
code is what runs, a server that does not fit the client is not used, and one whose loaded
libraries changed on disk retires."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from pipeline import forkserver
from tests.conftest import tiny_raw
from tests.e2e import ROOT, copy_project, env

pytestmark = pytest.mark.slow


def _raw() -> dict:
    raw = tiny_raw(yaml.safe_load((ROOT / "params.yaml").read_text()))
    raw["pretrain"]["base"]["models"]["adversarial"]["epochs"] = 300  # killed mid-training by two tests, never run to its end
    return raw


def _stage(proj: Path, servers: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    """``python -m stages ARGS`` as DVC runs it, with the servers' folder ``servers``."""
    return subprocess.run([sys.executable, "-m", "stages", *args], cwd=proj, capture_output=True, text=True,
                          timeout=600, env=env(BNAT_FORKSERVER_DIR=str(servers), BNAT_FORKSERVER_IDLE="120", **extra))


def _until_in_stderr(proc: subprocess.Popen, marker: str, timeout: float = 300) -> str:
    """What ``proc`` wrote to its stderr pipe until ``marker`` appeared (a stage's own start-up
    takes seconds or tens of seconds, with the machine's load: a fixed sleep is a race)."""
    import threading

    seen, found = [], threading.Event()

    def read():
        while True:
            chunk = proc.stderr.read(1)
            if not chunk:
                break
            seen.append(chunk)
            if chunk in ":\r\n" and marker in "".join(seen[-len(marker) - 200:]):
                found.set()
                break

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert found.wait(timeout), f"{marker!r} never appeared on stderr: {''.join(seen)[-2000:]}"
    reader.join()
    return "".join(seen)


def _servers(folder: Path) -> list[int]:
    return forkserver.servers(str(folder))


def _wait_for_server(folder: Path, count: int = 1, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        serving = [log for log in folder.glob("*.log") if "serving" in log.read_text()]
        if len(serving) >= count and len(_servers(folder)) >= count:
            return
        time.sleep(0.5)
    raise TimeoutError(f"no server in {folder}: {[log.read_text() for log in folder.glob('*.log')]}")


def _stop_servers(folder: Path) -> None:
    forkserver.stop(str(folder))


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _launched(out: Path) -> str:
    return json.loads((out / "timing.json").read_text())["launched"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A tiny project with its data, and a running server for it (started by a first stage)."""
    proj = copy_project(tmp_path_factory.mktemp("forkserver"), _raw())
    servers = tmp_path_factory.mktemp("servers")
    fetch = _stage(proj, servers, "fetch", BNAT_FORKSERVER="0")
    assert fetch.returncode == 0, fetch.stderr
    assert not list(servers.iterdir())  # BNAT_FORKSERVER=0 starts none
    first = _stage(proj, servers, "pretrain", "base/random_init")
    assert first.returncode == 0, first.stderr
    assert _launched(proj / "models" / "base" / "random_init") == "process"  # no server yet: it ran here, and started one
    _wait_for_server(servers)
    yield proj, servers
    sockets, live = len(list(servers.glob("*.sock"))), len(_servers(servers))
    _stop_servers(servers)
    deadline = time.time() + 30
    while _servers(servers) and time.time() < deadline:
        time.sleep(0.2)
    assert not _servers(servers)
    assert len(list(servers.glob("*.sock"))) == sockets - live  # a stopped server removes its socket


def test_a_stage_through_the_server_writes_the_same_outs_as_in_its_own_process(project):
    proj, servers = project
    outs = {}
    for how, extra in (("process", {"BNAT_FORKSERVER": "0"}), ("forkserver", {})):
        for args in (("pretrain", "base/standard"), ("evaluate", "base/standard")):
            proc = _stage(proj, servers, *args, **extra)
            assert proc.returncode == 0, proc.stderr
            assert "Traceback" not in proc.stderr
        assert "standard: clean" in proc.stdout  # the stage's own output reaches the caller's pipe
        models, results = proj / "models" / "base" / "standard", proj / "results" / "base" / "standard"
        assert _launched(models) == _launched(results) == how
        outs[how] = {p.relative_to(proj): p.read_bytes() for d in (models, results) for p in d.iterdir()
                     if p.name not in ("timing.json", "mlflow_run.json", "model_card.json", "model_card.md")}
        history = outs[how].pop(Path("models/base/standard/history.csv")).decode().splitlines()
        seconds = history[0].split(",").index("seconds")  # per-epoch wall time, different on every run
        outs[how]["history"] = [row.split(",")[:seconds] + row.split(",")[seconds + 1:] for row in history]
        card = json.loads((results / "model_card.json").read_text())
        # the runs and the model's registered version differ by design
        outs[how]["card"] = {k: v for k, v in card.items() if k not in ("mlflow_run", "model_uri", "training_run")}
    assert outs["process"].keys() == outs["forkserver"].keys()
    for name in outs["process"]:
        assert outs["process"][name] == outs["forkserver"][name], name  # model.pt, metrics, CSVs, plots


def test_a_bad_params_file_exits_2_with_one_line_as_in_its_own_process(project, tmp_path):
    proj, servers = project
    raw = _raw()
    raw["pretrain"]["base"]["models"]["standard"]["lr"] = -1
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(raw))
    runs = {how: _stage(proj, servers, "pretrain", "base/standard", PIPELINE_PARAMS=str(bad), **extra)
            for how, extra in (("process", {"BNAT_FORKSERVER": "0"}), ("forkserver", {}))}
    for proc in runs.values():
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "pretrain.base.models.standard.lr" in lines[0], proc.stderr
    assert runs["process"].stderr == runs["forkserver"].stderr
    unknown = _stage(proj, servers, "pretrain", "base/no_such_model")
    assert unknown.returncode == 2 and len(unknown.stderr.strip().splitlines()) == 1


def test_killing_the_caller_kills_the_stage_at_once(project):
    proj, servers = project
    (server,) = _servers(servers)
    out = proj / "models" / "base" / "adversarial"
    client = subprocess.Popen([sys.executable, "-m", "stages", "pretrain", "base/adversarial"], cwd=proj,
                              env=env(BNAT_FORKSERVER_DIR=str(servers)), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    while not _children(server) and time.time() < deadline:
        time.sleep(0.05)
    (child,) = _children(server)
    time.sleep(3)  # mid-training
    assert client.poll() is None
    os.killpg(client.pid, signal.SIGKILL)
    client.wait()
    deadline = time.time() + 2
    while Path(f"/proc/{child}").exists() and child in _children(server) and time.time() < deadline:
        time.sleep(0.05)
    assert child not in _children(server), "the stage outlived its caller by 2 s"
    time.sleep(2)
    assert not out.exists() or {"model.pt", "metrics.json", "timing.json"} <= {p.name for p in out.iterdir()}
    assert not list(out.parent.glob(".adversarial.*.tmp")) or not out.exists()


def test_sigint_reaches_the_stage_and_it_exits_130_as_in_its_own_process(project):
    proj, servers = project
    codes = {}
    for how, extra in (("process", {"BNAT_FORKSERVER": "0"}), ("forkserver", {})):
        # started as a terminal starts it: with SIGINT at its default, whatever this test process
        # inherited (an ignored SIGINT is inherited, and Python keeps it ignored, as it should)
        client = subprocess.Popen([sys.executable, "-m", "stages", "pretrain", "base/adversarial"], cwd=proj,
                                  env=env(BNAT_FORKSERVER_DIR=str(servers), **extra), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True,
                                  preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        # the bar's postfix is drawn after the first steps: the stage is in its training loop, past
        # its start-up (signalled at the bar's first drawing on a loaded machine, it trained on)
        err = _until_in_stderr(client, "epoch=")
        client.send_signal(signal.SIGINT)
        rest = client.communicate(timeout=60)[1]
        err += rest
        codes[how] = client.returncode
        assert "Traceback" not in err, err
    assert codes == {"process": 130, "forkserver": 130}


def test_an_edited_project_module_is_what_the_next_stage_runs(project):
    proj, servers = project
    (proj / "stages" / "probe.py").write_text("import pipeline\nfrom pipeline import probe_value\n"
                                              "print(getattr(pipeline, 'EDITED', 'no'), probe_value.VALUE)\n")
    (proj / "pipeline" / "probe_value.py").write_text("VALUE = 1\n")
    first = _stage(proj, servers, "probe")
    assert first.returncode == 0, first.stderr
    assert first.stdout.split() == ["no", "1"]
    init = proj / "pipeline" / "__init__.py"
    init.write_text(init.read_text() + "EDITED = 'yes'\n")  # a module the server itself imported
    (proj / "pipeline" / "probe_value.py").write_text("VALUE = 22\n")
    second = _stage(proj, servers, "probe")
    assert second.stdout.split() == ["yes", "22"], second.stderr
    assert len(_servers(servers)) == 1  # the same server ran both


def test_a_server_that_does_not_fit_the_client_is_not_used(project, tmp_path):
    proj, servers = project
    out = proj / "models" / "base" / "random_init"
    assert _stage(proj, servers, "pretrain", "base/random_init").returncode == 0
    assert _launched(out) == "forkserver"
    # another value of a variable read at import time: the stage runs here, and a second server starts
    threads = "3" if os.environ.get("OMP_NUM_THREADS") != "3" else "4"  # not the value the server has
    other = _stage(proj, servers, "pretrain", "base/random_init", OMP_NUM_THREADS=threads)
    assert other.returncode == 0, other.stderr
    assert _launched(out) == "process"
    _wait_for_server(servers, count=2)
    # a server killed outright leaves its socket behind: it is not used, and a new server replaces it
    for pid in _servers(servers):
        os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 30
    while _servers(servers) and time.time() < deadline:
        time.sleep(0.2)
    assert len(list(servers.glob("*.sock"))) == 2
    stale = _stage(proj, servers, "pretrain", "base/random_init")
    assert stale.returncode == 0, stale.stderr
    assert _launched(out) == "process"
    _wait_for_server(servers)
    assert _stage(proj, servers, "pretrain", "base/random_init").returncode == 0
    assert _launched(out) == "forkserver"


def test_a_changed_fork_server_or_disabling_it_runs_the_stage_in_its_own_process(project, tmp_path):
    proj, servers = project
    out = proj / "models" / "base" / "random_init"
    assert _stage(proj, servers, "pretrain", "base/random_init", BNAT_FORKSERVER="0").returncode == 0
    assert _launched(out) == "process"
    fresh = tmp_path / "servers"
    assert _stage(proj, fresh, "pretrain", "base/random_init", BNAT_FORKSERVER="0").returncode == 0
    assert not fresh.exists() or not list(fresh.iterdir())  # and starts none
    source = proj / "pipeline" / "forkserver.py"
    source.write_text(source.read_text() + "\n# edited\n")  # the running server runs the old code
    try:
        assert _stage(proj, servers, "pretrain", "base/random_init").returncode == 0
        assert _launched(out) == "process"
    finally:
        source.write_text(source.read_text().removesuffix("\n# edited\n"))


def test_a_library_file_edited_in_place_retires_the_server(project, tmp_path):
    """A module the server loaded at start-up (here a sitecustomize on PYTHONPATH, as a library
    file of site-packages would be) changes on disk: the server refuses the next stage, which runs
    in its own process, and exits; the server after it loads the file as it is now."""
    proj, _ = project
    servers, lib = Path(tempfile.mkdtemp(prefix="bnat-fs-")), tmp_path / "lib"  # short: it holds a socket's path
    lib.mkdir()
    site = lib / "sitecustomize.py"
    site.write_text("VALUE = 1\n")
    out = proj / "models" / "base" / "random_init"

    def stage() -> str:
        done = _stage(proj, servers, "pretrain", "base/random_init", PYTHONPATH=str(lib))
        assert done.returncode == 0, done.stderr
        return _launched(out)

    try:
        _retired_when_its_library_changes(stage, servers, site)
    finally:
        _stop_servers(servers)
        shutil.rmtree(servers, ignore_errors=True)


def _retired_when_its_library_changes(stage, servers: Path, site: Path) -> None:
    assert stage() == "process"
    _wait_for_server(servers)
    (old,) = _servers(servers)
    assert stage() == "forkserver"
    site.write_text("VALUE = 2\n")  # the same size: the modification time tells
    os.utime(site, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert stage() == "process"  # the same key: refused, as its loaded file changed
    deadline = time.time() + 60
    while old in _servers(servers) and time.time() < deadline:
        time.sleep(0.2)
    assert old not in _servers(servers)
    if not _servers(servers):  # the refused stage's own spawn lost the race with the exiting server
        assert stage() == "process"
    _wait_for_server(servers)
    assert stage() == "forkserver" and old not in _servers(servers)


def test_without_cpythons_exit_handlers_call_a_stage_exits_through_the_interpreter(tmp_path):
    """``atexit._run_exitfuncs`` is a CPython internal: where it is missing, run_as_main exits the
    interpreter's own way, still with the stage's code and its atexit handlers run."""
    (tmp_path / "probe_exit.py").write_text("import atexit, sys\natexit.register(print, 'handler ran')\nsys.exit(3)\n")
    code = ("import atexit, sys; del atexit._run_exitfuncs; sys.path[:0] = [sys.argv[1], sys.argv[2]]; "
            "from pipeline.forkserver import run_as_main; run_as_main('probe_exit', [])")
    done = subprocess.run([sys.executable, "-c", code, str(ROOT), str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert (done.returncode, done.stdout) == (3, "handler ran\n"), done.stderr
