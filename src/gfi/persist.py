"""Writing files so that a kill never leaves half of one, and the one rule for resuming a run.

* :func:`atomic_write`: ``write(tmp)`` to a temporary name in the same folder, then ``os.replace``
  it over the target: a reader (or a resumed run) sees the old file or the new one, never a part.
  Every file gfi writes goes through it (text, JSON, ``.npy``, PNG, the checkpoint of ``voc-head``).
  Temporary names start with ``.`` and contain ``.tmp``: :func:`remove_temporaries` finds what a
  killed process left.
* :func:`resume_or_refuse`: the rule that ``gfi explain`` and ``gfi eval`` share. A folder's
  stored arguments equal to this run's: resume. Other arguments: refused with the settings that
  differ, unless ``overwrite`` (then the caller deletes what its own records say it wrote).

This module knows nothing of methods, models or images.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gfi.errors import UsageError


class OutputFolderError(UsageError):
    """The output folder cannot be used as asked; the message says why and what to do."""


def temporary_name(path: Path) -> Path:
    """The temporary file next to ``path`` that :func:`atomic_write` renames over it."""
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` to a temporary file next to ``path``, flushed, then renamed over ``path``."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_create(path: Path, write: Callable[[Path], Any]) -> bool:
    """Like :func:`atomic_write`, but the first writer wins: when ``path`` already exists (another
    process published it meanwhile) it is left as it is. Returns whether this call created it.
    Used where several processes may compute the same file (a shared map store)."""
    import errno

    path = Path(path)
    tmp = temporary_name(path)
    try:
        write(tmp)
        try:
            os.link(tmp, path)  # atomic, and fails when the name exists
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            if path.exists():  # a file system without hard links: check, then rename
                return False
            os.replace(tmp, path)
            return True
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: Path(p).write_text(text, encoding="utf-8"))


def atomic_write_json(path: Path, obj: Any, *, allow_nan: bool = False) -> None:
    atomic_write_text(path, dumps(obj, allow_nan=allow_nan))


def atomic_save_npy(path: Path, array) -> None:
    """``numpy.save`` through :func:`atomic_write` (the temporary name keeps the ``.npy`` suffix)."""
    import numpy as np

    atomic_write(path, lambda p: np.save(p, array))


def dumps(obj: Any, *, allow_nan: bool = False) -> str:
    """Indented JSON; by default refusing NaN and inf (a non-finite number in a record is a bug)."""
    return json.dumps(obj, indent=2, allow_nan=allow_nan)


def remove_temporaries(*folders: Path) -> list[Path]:
    """Delete the temporary files a killed run left in ``folders`` (never a finished output)."""
    removed = []
    for folder in folders:
        if Path(folder).is_dir():
            for p in Path(folder).glob(".*.tmp*"):
                if p.is_file():
                    p.unlink()
                    removed.append(p)
    return removed


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted names of the entries that differ between two JSON-like values."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += differences(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [prefix.rstrip(".") or "(value)"]


def resume_or_refuse(folder: Path, stored: dict | None, arguments: dict, *, overwrite: bool,
                     what: str = "arguments") -> bool:
    """The resume rule of ``gfi explain`` and ``gfi eval``: True to resume, False to start afresh.

    ``stored`` is what the folder's run file holds (None: no run there). Equal to ``arguments``:
    resume. Different: :class:`OutputFolderError` naming the differences, unless ``overwrite``,
    which starts afresh (the caller then deletes only the files its own records list)."""
    if stored is None or overwrite:
        return False
    if stored == arguments:
        return True
    diff = differences(stored, arguments)
    shown = "; ".join(diff[:6]) + (f" and {len(diff) - 6} more" if len(diff) > 6 else "")
    raise OutputFolderError(
        f"{folder} holds a run with other {what} (differs in: {shown}); rerun with the same {what} to "
        "resume it, choose another --out, or pass --overwrite to start afresh")


# -- one writer per folder ------------------------------------------------------------------------
LOCK_NAME = ".gfi.lock"


def check_folder(folder: Path, what: str = "--out") -> Path:
    """Check, before any work, that ``folder`` can be made and written: an existing file in the way,
    a read-only place or a full disk is a one-line :class:`OutputFolderError`. Nothing is created
    (a temporary file in the folder, or in its nearest existing parent, is written and removed)."""
    import errno
    import tempfile

    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise OutputFolderError(f"{what} {folder}: {probe} is an existing file, not a folder; "
                                f"choose another {what}")
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".gfi-write-check.", suffix=".tmp"):
            pass
    except PermissionError as exc:
        raise OutputFolderError(f"{what} {folder}: no permission to write there ({exc.strerror}); "
                                f"choose another {what}") from exc
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise OutputFolderError(f"{what} {folder}: the disk is full; free some space or choose another "
                                    f"{what}") from exc
        raise OutputFolderError(f"{what} {folder}: cannot write there ({exc.strerror or exc}); "
                                f"choose another {what}") from exc
    return folder


class FolderLock:
    """One writer per folder: ``with FolderLock(folder): ...`` holds ``folder/.gfi.lock``.

    The lock is an exclusive ``flock`` on that file, which holds the holder's pid, host and start
    time. A second process is refused at once with a one-line :class:`OutputFolderError` that
    names the holder. The kernel releases the lock when its process ends in any way (SIGKILL
    included), so a lock file left by a dead run is stale by construction and simply taken over.
    Readers (e.g. of a shared map store) take no lock: every file is replaced atomically."""

    def __init__(self, folder: Path, what: str = "--out", *, eager: bool = True, name: str = LOCK_NAME) -> None:
        self.path = Path(folder) / name
        self.what = what
        self.eager = eager
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> FolderLock:
        import fcntl
        import socket
        import time

        if self._fd is not None:
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('since', '?')}"
                raise OutputFolderError(f"{self.path.parent} is being written by another gfi run ({who}); wait "
                                        f"for it to finish or choose another {self.what}") from None
            try:  # the file may have been released (unlinked) between our open and our lock: retry
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Unlock and delete the lock file (a killed holder leaves the file; the next run takes it)."""
        if self._fd is None:
            return
        import fcntl

        self.path.unlink(missing_ok=True)  # while locked: no other process holds this file
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> FolderLock:
        """Holds the lock only once :meth:`acquire` is called (or at once when ``eager``)."""
        return self.acquire() if self.eager else self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}
