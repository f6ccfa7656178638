"""Services the project starts listen on loopback unless the user asks otherwise."""

import os
import signal
import subprocess
import time

import pytest

from tests.e2e import BIN, env, free_port

pytestmark = pytest.mark.slow


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on ``port`` (from /proc, no traffic sent)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.rsplit(":", 1)
            if state == "0A" and int(p, 16) == port:  # 0A: LISTEN
                found.add(addr)
    return found


def test_mlflow_ui_binds_loopback_by_default(tmp_path):
    port = free_port()
    proc = subprocess.Popen([str(BIN / "bnat"), "mlflow-ui", "--port", str(port)], cwd=tmp_path, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not _listening_addresses(port) and time.time() < deadline:
            assert proc.poll() is None, "mlflow ui exited"
            time.sleep(1)
        addresses = _listening_addresses(port)
        assert addresses == {"0100007F"}, addresses  # 127.0.0.1, little-endian hex, and nothing else
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
