"""Atomic writes and safe checkpoint loads.

Every output is written to a temporary sibling and renamed into place, so a killed process leaves
either the old file or the new one, never half of one. Temporaries get the default modes, so
outputs follow the umask like any other file (a DVC cache or results folder may be shared between
users); an output that cannot be written is one line naming it (:class:`WriteError`).
Checkpoints are state dicts loaded with ``weights_only=True``: a file that would run code when
unpickled is refused.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt, unsafe or of the wrong shape."""


class WriteError(RuntimeError):
    """An output that cannot be written where it belongs; the message names the path and why."""


def _unwritable(path: Path, err: OSError) -> WriteError:
    """One line for the user: the first ancestor that is a file where a folder should be, or the
    system's reason (no permission, read-only file system, disk full)."""
    for ancestor in reversed(path.parents):
        if ancestor.exists() and not ancestor.is_dir():
            return WriteError(f"{path}: cannot be written: {ancestor} is a file where a folder should be")
    return WriteError(f"{path}: cannot be written: {err.strerror or err}")


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Turn a failure to create, replace or remove ``path`` (or its temporary) into a WriteError."""
    try:
        yield
    except OSError as err:
        raise _unwritable(path, err) from None


def _remove_stale(path: Path) -> None:
    """Temporaries a killed writer of ``path`` left behind (DVC runs one stage per checkout)."""
    import shutil

    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


def _new_file(tmp: Path) -> None:
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


def _temporary(path: Path, make: Callable[[Path], None]) -> Path:
    """A fresh hidden sibling of ``path`` made by ``make`` with the default mode, which the umask
    trims (``tempfile`` would make it private: 0600 files, 0700 folders)."""
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(path)
        while True:
            tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
            try:
                make(tmp)
                return tmp
            except FileExistsError:
                continue


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    tmp = _temporary(path, _new_file)
    try:
        yield tmp
        with _writing(path):
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp, _writing(Path(path)):
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


#: The few figures per item that ``dvc metrics show`` and ``dvc metrics diff`` list (metrics/,
#: pipeline.layout); everything else an item measured stays in its folder's metrics.json.
HEADLINE_KEYS = ("test_acc", "clean", "pgd", "autoattack", "apgd", "worst_case")


def headline(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric HEADLINE_KEYS of ``metrics``, rounded to 4 places."""
    return {k: round(float(metrics[k]), 4) for k in HEADLINE_KEYS if isinstance(metrics.get(k), (int, float))}


def write_headline(path: str | Path, metrics: dict[str, Any]) -> None:
    """``path`` (metrics/KIND/GROUP/NAME.json): the :func:`headline` of ``metrics``, one of the
    narrow files DVC lists as the project's metrics. Written once the item's own folder is in
    place, so no headline names results that a kill left unwritten."""
    write_json(path, headline(metrics))


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def save_checkpoint(path: str | Path, obj: dict[str, Any]) -> None:
    """Byte-reproducible: the same weights give the same file (and DVC hash) on every build.
    Saved to a path, torch names the archive inside after the file, here a random temporary name."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_path(path) as tmp, _writing(Path(path)):
        tmp.write_bytes(buffer.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, refusing anything but plain data."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        detail = [line for line in str(err).splitlines() if "GLOBAL" in line or "global" in line]
        if detail:
            raise CheckpointError(f"{path}: refused to load, it would import code ({detail[0].strip()}); "
                                  "checkpoints hold tensors and plain data only") from None
        raise CheckpointError(f"{path}: not a readable checkpoint (corrupt or not written by torch.save)") from None
    except Exception as err:  # noqa: BLE001 - garbage bytes make the unpickler raise about anything (KeyError, ...)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {reason})") from None


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``path``; on success it replaces ``path`` whole
    (hidden files such as DVC's .gitignore carry over unless the block wrote its own)."""
    import shutil

    path = Path(path)
    tmp = _temporary(path, os.mkdir)
    try:
        yield tmp
        with _writing(path):
            if path.is_dir():  # keep the folder's dotfiles the writer did not make (DVC's .gitignore)
                for kept in path.glob(".*"):
                    if kept.is_file() and not (tmp / kept.name).exists():
                        shutil.copy2(kept, tmp / kept.name)
            if path.exists():
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_csv(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Rows of one shape as CSV (the format ``dvc plots`` reads)."""
    import csv
    import io

    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    write_text(path, buf.getvalue())


def fingerprint(obj: Any) -> str:
    """A stable hash of plain data (e.g. the params a result depends on)."""
    import hashlib

    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
