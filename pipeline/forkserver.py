"""A fork server for stage processes: the libraries imported once, each stage a forked child.

Why: a stage is a fresh Python process, and before it does any work it imports torch, torch's
compiler front end (the first optimizer step imports ``torch._dynamo``), MLflow with its
SQLAlchemy store and alembic, pydantic and the rest: about 6 s on a 2-core CPU, for every one of
the DAG's stages. The server imports those third-party libraries once and forks a child per
stage, the technique of multiprocessing's forkserver with ``preload``: a stage then starts in a
fraction of a second. Nothing of the project itself is preloaded, so an edited ``pipeline/`` or
``stages/`` file is what the next stage runs.

How: ``python -m stages NAME ARGS`` (stages/__main__.py) calls :func:`request`. If a server for
this interpreter runs, the client sends it argv, cwd, environment, umask and sys.path, and its
stdin/stdout/stderr as file descriptors (SCM_RIGHTS over an AF_UNIX socket), so the stage writes
straight to the caller's pipes or terminal. The server forks; the child starts a session of its
own, takes over all of that and runs ``stages.NAME`` as ``__main__`` with runpy, as
``python -m stages.NAME`` would, then exits as the interpreter would (exit codes, tracebacks,
atexit) but without its teardown (:func:`run_as_main`). The server reaps the child and sends its
wait status to the client, which exits with it (or dies of the same signal). The client forwards
SIGINT, SIGTERM and SIGHUP to the child. A watchdog thread in the child kills its process group
the moment the client's end of the socket closes (the client was killed, say by DVC), so a stage
never runs on, or writes outputs, after its caller died. With no server the client runs the stage
in its own process and starts one in the background (:func:`spawn`) for the next stages; a server
exits after ``BNAT_FORKSERVER_IDLE`` seconds (default 300) without a stage. ``BNAT_FORKSERVER=0``
turns it off.

Keyed: a server serves only clients that would have imported the same libraries the same way:
the same interpreter and flags, the same sys.path and site-packages directories (a pip install
changes their modification time), the environment variables that libraries read when imported
(``ENV_PREFIXES``: thread counts, CUDA devices, the hash seed, locale, ...), the nice value and
this file's own source. The key names the socket; a mismatch means another socket, so another
server. A lock file makes the start race-free: of two servers started at once, one binds.

Safe to fork: the server starts no Python thread and runs no torch computation, so no OpenMP pool
and no CUDA context exist when it forks (if an import loaded the CUDA driver, or started a Python
thread, it refuses to serve, and no server is started again for its key). The native threads some
libraries start at import (OpenBLAS' pool, jemalloc's background thread in pyarrow) handle fork
with pthread_atfork. The child reseeds numpy's global generator, as a fresh process would have its
own. Not carried over from the client: resource limits (ulimit) and ignored signal dispositions;
the child has the server's.

Never stale: before each fork the server compares every file of the modules it has loaded (about
4,000 with torch and MLflow, some 25 ms of stat calls) with what it loaded; a library file edited
or reinstalled in place since then makes it refuse the request (the stage runs in its client's own
process) and exit, so the next stage starts a fresh server. A server also retires after
``BNAT_FORKSERVER_MAX_AGE`` seconds (default 3600) however busy it is.

Two CPython internals, each with a plain fallback where a Python lacks it:
``subprocess._args_from_interpreter_flags`` (the server starts with its client's -X, -W, -O; without
it, with none, and a server whose flags differ refuses to serve) and ``atexit._run_exitfuncs``
(the child runs the atexit handlers, then skips the interpreter's teardown, about 2 s with torch
and MLflow loaded; without it, the child exits through the interpreter's full shutdown).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import time

PRELOAD = (  # third-party modules only: never the project's own
    "numpy", "yaml", "pydantic", "tqdm", "PIL.Image",
    "torch", "torch.optim", "torch._dynamo", "torch.utils.serialization", "torchvision", "pyautoattack",
    "sqlalchemy", "alembic", "alembic.migration", "git",
    "mlflow", "mlflow.store.tracking.sqlalchemy_store", "mlflow.system_metrics.system_metrics_monitor",
    "mlflow.tracing.processor.otel",
    "matplotlib", "matplotlib.pyplot",  # after matplotlib.use("Agg"), as pipeline/analysis does
)
PROJECT = ("pipeline", "stages")  # packages every child imports afresh
ENV_PREFIXES = ("PYTHON", "OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_", "CUDA_", "NVIDIA_", "TORCH", "PYTORCH_",
                "MLFLOW_", "_MLFLOW_", "MPL", "MATPLOTLIB", "GIT_PYTHON_", "SYMPY_", "OTEL_", "LD_", "LANG", "LC_",
                "HOME", "XDG_", "TMPDIR")
STARTED_ENV = "BNAT_STAGE_STARTED"  # "PID SECONDS": when the client of forked stage PID started
_MSG = struct.Struct("=ci")  # a tag and a number: P pid (forked), X wait status (exited), S signal (to the child)
_FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP")


def enabled() -> bool:
    return (os.environ.get("BNAT_FORKSERVER", "1") != "0" and hasattr(os, "fork")
            and hasattr(socket, "AF_UNIX") and hasattr(socket.socket, "sendmsg"))


def process_started() -> float:
    """When this process started (epoch seconds), from the kernel's record where there is one."""
    try:
        with open("/proc/self/stat", "rb") as f:
            ticks = int(f.read().rsplit(b")", 1)[1].split()[19])  # field 22, starttime since boot
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
        if 0 <= age < 86400 * 365:
            return time.time() - age
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    return _IMPORTED


_IMPORTED = time.time()


def launched() -> tuple[float, str]:
    """When the process that runs this stage was launched, and how: ``forkserver`` (the time its
    client started) or ``process`` (this process)."""
    pid, _, started = os.environ.get(STARTED_ENV, "").partition(" ")
    if pid == str(os.getpid()):
        return float(started), "forkserver"
    return process_started(), "process"


# --------------------------------------------------------------------------------------------
# the key and where the server listens


def _directory() -> str | None:
    """The servers' folder (``BNAT_FORKSERVER_DIR``, else one per user in the runtime or temporary
    folder), or None when it is not this user's alone (then no server)."""
    base = os.environ.get("BNAT_FORKSERVER_DIR") or os.path.join(
        os.environ.get("XDG_RUNTIME_DIR") or os.environ.get("TMPDIR") or "/tmp", f"bnat-forkserver-{os.getuid()}")
    try:
        os.makedirs(base, mode=0o700, exist_ok=True)
        st = os.stat(base)
    except OSError:
        return None
    return base if st.st_uid == os.getuid() and st.st_mode & 0o077 == 0 else None


def _key() -> str:
    """What the server's imports depend on (see the module docstring); sys.path[0] (the client's
    folder) is left out: one server serves every checkout."""
    import hashlib

    exe = os.path.realpath(sys.executable)
    st = os.stat(exe)
    site = []
    for p in sys.path[1:]:
        if p.endswith(("site-packages", "dist-packages")):
            try:
                site.append((p, os.stat(p).st_mtime_ns))
            except OSError:
                pass
    with open(__file__, "rb") as f:
        source = hashlib.sha256(f.read()).hexdigest()
    return json.dumps({"python": [exe, st.st_mtime_ns, st.st_size, sys.version], "flags": repr(sys.flags),
                       "xoptions": sys._xoptions, "warnoptions": sys.warnoptions, "path": sys.path[1:], "site": site,
                       "env": sorted((k, v) for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)),
                       "nice": os.getpriority(os.PRIO_PROCESS, 0), "server": source}, sort_keys=True)


def socket_path(key: str | None = None) -> str | None:
    """Where the server for ``key`` (default: this interpreter's) listens; None if nowhere safe."""
    import hashlib

    base = _directory()
    if base is None:
        return None
    path = os.path.join(base, hashlib.sha256((key or _key()).encode()).hexdigest()[:20] + ".sock")
    return path if len(os.fsencode(path)) < 104 else None  # AF_UNIX paths are short (macOS: 104 bytes)


# --------------------------------------------------------------------------------------------
# the client


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(min(1 << 20, size - len(data)))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _recv_msg(sock: socket.socket) -> tuple[bytes, int] | None:
    """The next message, or None when the other end closed the socket."""
    try:
        return _MSG.unpack(_recv_exactly(sock, _MSG.size))
    except EOFError:
        return None


def request(module: str, args: list[str], started: float) -> int | None:
    """Run ``module`` with ``args`` as ``__main__`` in a child of this interpreter's fork server;
    its exit code (negative: the signal that ended it), or None when no server took the request
    (nothing ran: run it here)."""
    import signal

    key = _key()
    path = socket_path(key)
    if path is None:
        return None
    try:
        for fd in (0, 1, 2):
            os.fstat(fd)  # the child gets all three
        payload = json.dumps({"key": key, "module": module, "args": args, "cwd": os.getcwd(),
                              "env": dict(os.environ), "path": sys.path, "umask": _umask(),
                              "started": started}).encode()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
    except OSError:
        return None
    with sock:
        try:
            head = struct.pack("=I", len(payload))
            sock.sendmsg([head], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("3i", 0, 1, 2))])
            sock.sendall(payload)
            sock.settimeout(120)  # a server still importing answers within seconds
            msg = _recv_msg(sock)
        except OSError:
            return None
        if msg is None or msg[0] != b"P":
            return None  # gone, or not ours: nothing was forked
        sock.settimeout(None)

        def forward(signum, _frame):
            try:
                sock.sendall(_MSG.pack(b"S", signum))
            except OSError:
                pass

        for name in _FORWARDED:
            signal.signal(getattr(signal, name), forward)
        msg = _recv_msg(sock)
    if msg is None:
        print("error: the fork server went away while the stage ran; its exit status is unknown", file=sys.stderr)
        return 1
    return os.waitstatus_to_exitcode(msg[1])


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def exit_with(code: int) -> None:
    """Exit as the child did: with its code, or of the same signal."""
    if code < 0:
        import signal

        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        code = 128 - code
    sys.exit(code)


def spawn() -> None:
    """Start a server for this interpreter in the background (its own session, detached), unless
    one cannot run here. Returns at once; the server imports the libraries on its own."""
    import subprocess

    path = socket_path()
    if path is None or os.path.exists(path[:-len(".sock")] + ".refused"):
        return
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    boot = "import sys; sys.path.insert(0, sys.argv[1]); from pipeline.forkserver import serve; serve(sys.argv[2])"
    try:
        with open(path[:-len(".sock")] + ".log", "ab") as log:
            flags_of = getattr(subprocess, "_args_from_interpreter_flags", None)  # -X, -W, -O as this interpreter's
            flags = flags_of() if flags_of else []
            proc = subprocess.Popen([sys.executable, *flags, "-c", boot, root, path], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=log, cwd="/", start_new_session=True)
        proc.wait(timeout=60)  # returns once the server has forked again and detached
    except (OSError, subprocess.TimeoutExpired):
        pass


def servers(directory: str | None = None) -> list[int]:
    """Pids of the live servers of ``directory`` (default: this user's folder): each holds the lock
    it wrote its pid into."""
    import fcntl

    directory = directory or _directory()
    pids = []
    for name in sorted(os.listdir(directory)) if directory and os.path.isdir(directory) else []:
        if name.endswith(".lock"):
            try:
                fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # free: no server behind this file
            except BlockingIOError:
                text = os.read(fd, 32).strip()
                if text.isdigit():
                    pids.append(int(text))
            finally:
                os.close(fd)
    return pids


def stop(directory: str | None = None) -> list[int]:
    """Ask every server of ``directory`` to exit once its running stages are done; their pids."""
    import signal

    pids = servers(directory)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    return pids


# --------------------------------------------------------------------------------------------
# the server


def _log(*what) -> None:
    print(time.strftime("%Y-%m-%d %H:%M:%S"), f"[{os.getpid()}]", *what, file=sys.stderr, flush=True)


def _preload() -> None:
    import importlib

    for name in PRELOAD:
        try:
            if name == "matplotlib.pyplot":
                import matplotlib

                matplotlib.use("Agg")
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - an optional library that fails to import stays unloaded
            _log(f"not preloaded: {name} ({type(err).__name__}: {err})")


def _stamp(path: str) -> tuple[int, int] | None:
    """(mtime_ns, size) of ``path``; None where it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _module_files() -> dict[str, tuple[int, int] | None]:
    """Every file a loaded module came from, the project's own aside (each child imports those
    afresh), with its :func:`_stamp`."""
    found = {}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if name.split(".")[0] not in PROJECT and isinstance(path, str) and os.path.isabs(path):
            found[path] = _stamp(path)
    return found


def _unsafe_to_fork() -> str | None:
    import threading

    if threading.active_count() != 1:
        return f"Python threads started while importing: {threading.enumerate()}"
    try:
        with open("/proc/self/maps") as f:
            if any("/libcuda.so" in line for line in f):
                return "the CUDA driver was loaded while importing"
    except OSError:
        pass
    return None


def serve(path: str) -> None:
    """The server's main (run by :func:`spawn`'s interpreter); returns when the server stops. A
    forked child never returns: it exits in :func:`run_as_main`."""
    import fcntl
    import gc

    if os.fork():  # the second fork: never a session leader, and the spawning client can reap its child
        os._exit(0)
    sys.path.pop(0)  # the project folder was only needed to import this module
    key = _key()  # sys.path[0] is -c's '' here, as it is the client's folder there
    if socket_path(key) != path:
        _log("this interpreter's key does not match its client's; not serving")
        return
    del sys.path[0]
    lock = os.open(path[:-len(".sock")] + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return  # another server for this key started first
    try:
        os.ftruncate(2, 0)  # spawn's log file: this server's alone from here on
    except OSError:
        pass  # not a file
    os.ftruncate(lock, 0)
    os.write(lock, f"{os.getpid()}\n".encode())
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(path):
        os.unlink(path)  # a dead server's socket; the lock says no live server owns it
    listener.bind(path)
    listener.listen(64)  # clients arriving while the libraries load wait for them
    t0 = time.perf_counter()
    gc.disable()  # no collection holes in the pages the children share; enabled again in each child
    _preload()
    reason = _unsafe_to_fork()
    if reason:
        _log(f"not serving: {reason}")
        with open(path[:-len(".sock")] + ".refused", "w") as f:
            f.write(reason + "\n")  # spawn() starts no other server for this key
        os.unlink(path)
        return
    _log(f"serving {path} after {time.perf_counter() - t0:.1f} s of imports")
    gc.freeze()  # children's collections skip (and so never copy) the pages of what was imported
    job = _Server(listener, lock, key, path).loop()
    if job is not None:  # a forked child
        _run(*job)


class _Server:
    def __init__(self, listener: socket.socket, lock: int, key: str, path: str):
        import signal

        self.listener, self.lock, self.key, self.path = listener, lock, key, path
        self.inode = os.stat(path).st_ino  # to unlink the socket only while it is still this one
        self.children: dict[int, socket.socket] = {}
        self.idle_s = float(os.environ.get("BNAT_FORKSERVER_IDLE", "300"))
        self.max_age_s = float(os.environ.get("BNAT_FORKSERVER_MAX_AGE", "3600"))
        self.born = time.monotonic()
        self.files = _module_files()  # what the children would run: checked before each fork
        self.stopping = False
        self.wakeup_r, self.wakeup_w = os.pipe()
        os.set_blocking(self.wakeup_r, False)
        os.set_blocking(self.wakeup_w, False)
        signal.set_wakeup_fd(self.wakeup_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def _stop(self, *_) -> None:
        self.stopping = True

    def _stale(self) -> str | None:
        """Why this server must not fork again (a loaded file changed on disk, or its age), or None."""
        if time.monotonic() - self.born > self.max_age_s:
            return f"older than BNAT_FORKSERVER_MAX_AGE={self.max_age_s:g} s"
        changed = next((path for path, was in self.files.items() if _stamp(path) != was), None)
        return f"{changed} changed on disk since it was loaded" if changed else None

    def loop(self):
        """Accept and fork until idle; returns None in the server, (conn, request) in a child."""
        import select

        idle_since = time.monotonic()
        while True:
            if self.stopping and self.listener.fileno() >= 0:
                self._close_listener()
            if not self.children:
                if self.stopping:
                    return None
                left = self.idle_s - (time.monotonic() - idle_since)
                if left <= 0:
                    _log("idle; exiting")
                    self._close_listener()
                    return None
            waiting = [self.wakeup_r] + ([self.listener] if self.listener.fileno() >= 0 else [])
            ready, _, _ = select.select(waiting, [], [], None if self.children else left)
            if self.wakeup_r in ready:
                while True:
                    try:
                        if not os.read(self.wakeup_r, 512):
                            break
                    except BlockingIOError:
                        break
                self._reap()
                if not self.children:
                    idle_since = time.monotonic()
            if self.listener.fileno() >= 0 and self.listener in ready:
                conn, _ = self.listener.accept()
                job = self._fork(conn)
                if job is not None:
                    return job

    def _leave(self) -> None:
        """In a new child: drop the server's signal handling and every descriptor of the server's."""
        import signal

        signal.set_wakeup_fd(-1)
        for name in ("SIGCHLD", "SIGTERM", "SIGHUP"):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
        for other in self.children.values():
            other.close()
        self.listener.close()
        for fd in (self.lock, self.wakeup_r, self.wakeup_w):
            os.close(fd)

    def _close_listener(self) -> None:
        try:
            if os.stat(self.path).st_ino == self.inode:
                os.unlink(self.path)  # first, so that no client connects to a closing socket
        except OSError:
            pass
        self.listener.close()

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is not None:
                try:
                    conn.sendall(_MSG.pack(b"X", status))
                except OSError:
                    pass
                conn.close()

    def _fork(self, conn: socket.socket):
        fds: list[int] = []
        try:
            conn.settimeout(10)
            head, ancillary, _, _ = conn.recvmsg(4, socket.CMSG_SPACE(3 * 4))
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds += struct.unpack(f"{len(data) // 4}i", data[: len(data) // 4 * 4])
            head += _recv_exactly(conn, 4 - len(head))
            (size,) = struct.unpack("=I", head)
            payload = _recv_exactly(conn, size)
            req = json.loads(payload)
            if req["key"] != self.key or len(fds) != 3:
                raise ValueError("a request for another server")
            stale = self._stale()
            if stale:
                self.stopping = True  # exits once its running stages are done; the next client starts a fresh one
                raise ValueError(f"{stale}; exiting")
        except (OSError, EOFError, ValueError, KeyError, struct.error) as err:
            _log(f"request refused: {err}")
            for fd in fds:
                os.close(fd)
            try:
                conn.sendall(_MSG.pack(b"M", 0))
            except OSError:
                pass
            conn.close()
            return None
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._leave()
            return conn, fds, req
        for fd in fds:
            os.close(fd)
        try:
            conn.sendall(_MSG.pack(b"P", pid))
        except OSError:
            pass  # the client is gone: the child's watchdog sees it too and ends the child
        self.children[pid] = conn
        return None


# --------------------------------------------------------------------------------------------
# the forked child


def _run(conn: socket.socket, fds: list[int], req: dict) -> None:
    """Become the client's stage process, then run its module as ``__main__``."""
    import gc
    import importlib
    import linecache
    import signal
    import threading

    os.setsid()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    conn.settimeout(None)
    threading.Thread(target=_watchdog, args=(conn,), name="forkserver-watchdog", daemon=True).start()

    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        if fd > 2:
            os.close(fd)
    sys.stdin, sys.stdout, sys.stderr = (_stdio(0, "r", sys.stdin), _stdio(1, "w", sys.stdout),
                                         _stdio(2, "w", sys.stderr))
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    os.environ[STARTED_ENV] = f"{os.getpid()} {req['started']}"
    os.umask(req["umask"])
    sys.path[:] = req["path"]
    for name in [m for m in sys.modules if m.split(".")[0] in PROJECT]:
        del sys.modules[name]  # this module included: the stage imports the project as it is now
    importlib.invalidate_caches()
    linecache.clearcache()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()  # a fresh process draws its own unseeded state
    gc.enable()
    run_as_main(req["module"], req["args"])


def run_as_main(module: str, args: list[str]):
    """Run ``module`` as ``__main__`` with ``args`` as ``python -m MODULE ARGS`` does, and exit
    as the interpreter would (the exit code, a traceback, death by SIGINT after an uncaught
    KeyboardInterrupt; non-daemon threads joined, atexit handlers run, streams flushed) but
    without its teardown: with torch and MLflow imported, freeing every module and object takes
    a second or more, and nothing a stage leaves needs it (outputs are renamed into place)."""
    import atexit
    import runpy
    import signal
    import threading

    sys.argv = [module, *args]
    code, interrupted = 0, False
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        code = exit_.code
        if code is None:
            code = 0
        elif not isinstance(code, int):
            print(code, file=sys.stderr)
            code = 1
    except BaseException as err:  # noqa: BLE001 - what the interpreter would print and exit 1 on
        sys.excepthook(type(err), err, err.__traceback__)
        code, interrupted = 1, isinstance(err, KeyboardInterrupt)
    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
    if run_exitfuncs is None:  # no way to run the handlers alone: the interpreter's own exit does it all
        sys.exit(128 + signal.SIGINT if interrupted else code)
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 120  # as the interpreter exits when it cannot flush
    if interrupted:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code & 0xFF)


def _stdio(fd: int, mode: str, old):
    """A standard stream on ``fd`` made as the interpreter makes it at startup (line-buffered on a
    terminal, stderr always; write-through when unbuffered), with the server's encoding."""
    import io

    buffered = not old.write_through or mode == "r"  # -u and PYTHONUNBUFFERED make write-through streams
    raw = io.FileIO(fd, mode, closefd=False)
    raw.name = f"<std{('in', 'out', 'err')[fd]}>"
    buf = io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw) if buffered else raw
    return io.TextIOWrapper(buf, encoding=old.encoding, errors=old.errors, newline="\n",
                            line_buffering=buffered and (fd == 2 or raw.isatty()), write_through=not buffered)


def _watchdog(conn: socket.socket) -> None:
    """Deliver the signals the client forwards; end the whole stage when the client goes away."""
    import signal

    data = b""
    while True:
        try:
            chunk = conn.recv(64)
        except OSError:
            chunk = b""
        if not chunk:
            os.killpg(0, signal.SIGKILL)
        data += chunk
        while len(data) >= _MSG.size:
            tag, number = _MSG.unpack(data[:_MSG.size])
            data = data[_MSG.size:]
            if tag == b"S":
                os.kill(os.getpid(), number)
