"""Writing files so that a kill never leaves half of one, gfi never replaces or deletes a file it
did not write, and the one rule for resuming a run.

* :class:`Manifest`: the list of the files gfi wrote in a folder (``.gfi-manifest.jsonl``, one
  JSON line per file: its path, size and SHA-256), appended *before* the file appears under its
  name. A file is gfi's when its current size and SHA-256 are ones a line recorded for its path;
  gfi replaces or deletes only such files, never by a name pattern, and a file of the user's where
  an output goes is refused (:class:`OutputFolderError`) with the fix. Hidden temporaries are
  named ``.gfi-tmp.<RUN ID>.<name>``, the run's id being recorded in the manifest before the first
  one is made; cleaning up removes only temporaries of ids the manifest lists.
* :func:`atomic_write`: ``write(tmp)`` to a temporary name in the same folder, then renamed over
  the target: a reader (or a resumed run) sees the old file or the new one, never a part. Inside a
  folder whose manifest is active (:meth:`Manifest.active`, held by a run under the folder's lock)
  it goes through the manifest, whatever module calls it.
* :func:`resume_or_refuse`: the rule that ``gfi explain`` and ``gfi eval`` share. A folder's
  stored arguments equal to this run's: resume. Other arguments: refused with the settings that
  differ, unless ``overwrite`` (then the caller deletes what the manifest proves gfi wrote).
* :class:`FolderLock`: one writer per folder, refused at once with the holder named; never follows
  a link at the lock's path.
* :class:`WriteError`: a write that failed (a full disk, a read-only folder), in one line.

This module knows nothing of methods, models or images.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gfi.errors import UsageError

log = logging.getLogger(__name__)

TMP_PREFIX = ".gfi-tmp."
MANIFEST = ".gfi-manifest.jsonl"
LOCK_NAME = ".gfi.lock"
_HEADER = {"gfi": "the files gfi wrote in this folder; gfi replaces or deletes no other file", "format": 1}
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_BINARY = getattr(os, "O_BINARY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class OutputFolderError(UsageError):
    """The output folder cannot be used as asked; the message says why and what to do."""


class WriteError(UsageError):
    """Writing a file failed (``kind``: ``"full"`` disk, ``"readonly"`` folder, or ``"other"``); the
    message is one line. Commands catch it to add what is saved and how to resume."""

    def __init__(self, message: str, path: Path, kind: str) -> None:
        super().__init__(message)
        self.path = path
        self.kind = kind


def write_error(exc: OSError, path: Path) -> WriteError:
    """The :class:`WriteError` of an ``OSError`` raised while writing ``path``. A short write with no
    errno (numpy's ``tofile`` on a full disk) counts as a full disk when the disk has no room left."""
    path = Path(path)
    code = exc.errno
    if code is None:
        try:
            st = os.statvfs(path.parent)
            if st.f_bavail * st.f_frsize < 1 << 20:
                code = errno.ENOSPC
        except (OSError, AttributeError):  # no statvfs (Windows) or the folder is gone
            pass
    reason = exc.strerror or str(exc)
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return WriteError(f"the disk holding {path.parent} is full (writing {path.name})", path, "full")
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return WriteError(f"cannot write in {path.parent} ({reason})", path, "readonly")
    return WriteError(f"cannot write {path} ({reason})", path, "other")


# -- temporaries and the run's id -------------------------------------------------------------------
_RUN_IDS: dict[int, str] = {}


def run_id() -> str:
    """This process's id in temporary names and manifests: its pid and 8 random hex digits."""
    import secrets

    pid = os.getpid()
    if pid not in _RUN_IDS:  # a forked child gets its own
        _RUN_IDS[pid] = f"{pid}-{secrets.token_hex(4)}"
    return _RUN_IDS[pid]


def temporary_name(path: Path) -> Path:
    """The temporary file next to ``path`` that :func:`atomic_write` renames over it: hidden, with
    gfi's prefix and the run's id (no user file has that name), ending in ``path``'s own name."""
    path = Path(path)
    return path.with_name(f"{TMP_PREFIX}{run_id()}.{path.name}")


def _discard(tmp: Path) -> None:
    try:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    except OSError as exc:  # e.g. the folder turned read-only: the next run removes it
        log.debug("could not remove %s: %s", tmp, exc)


def _publish(tmp: Path, path: Path, *, replace: bool) -> bool:
    """Give ``tmp`` the name ``path``: replacing what is there when ``replace``, else only if the name
    is free (a hard link, which fails when it exists). Returns whether ``path`` is now ``tmp``."""
    if replace:
        os.replace(tmp, path)
        return True
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if os.path.lexists(path):  # a file system without hard links: check, then rename
            return False
        os.replace(tmp, path)
        return True


def _plain_write(path: Path, write: Callable[[Path], Any], *, create: bool) -> bool:
    path = Path(path)
    tmp = temporary_name(path)
    try:
        try:
            write(tmp)
            return _publish(tmp, path, replace=not create)
        except OSError as exc:
            raise write_error(exc, path) from exc
    finally:
        _discard(tmp)


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` to a temporary file next to ``path``, then renamed over ``path``. In a folder
    whose :class:`Manifest` is active, through it (a file gfi did not write is refused, not replaced)."""
    manifest = Manifest.covering(path)
    if manifest is not None:
        manifest.write(path, write)
    else:
        _plain_write(path, write, create=False)


def atomic_create(path: Path, write: Callable[[Path], Any]) -> bool:
    """Like :func:`atomic_write`, but the first writer wins: when ``path`` already exists (another
    process published it meanwhile) it is left as it is. Returns whether this call created it."""
    manifest = Manifest.covering(path)
    if manifest is not None:
        return manifest.create(path, write)
    return _plain_write(path, write, create=True)


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


# -- what gfi wrote ---------------------------------------------------------------------------------
def _read_regular(path: Path, keep: bool) -> tuple[int, str, bytes] | None:
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _BINARY | _CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode) or (not _NOFOLLOW and os.path.islink(path)):
            return None
        h = hashlib.sha256()
        size = 0
        kept = []
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
            size += len(chunk)
            if keep:
                kept.append(chunk)
        return size, h.hexdigest(), b"".join(kept)
    finally:
        os.close(fd)


def digest(path: Path) -> tuple[int, str] | None:
    """(size, SHA-256) of the regular file at ``path``, never following a link; None when there is
    no regular file there (nothing, a link, a folder, a FIFO)."""
    got = _read_regular(path, keep=False)
    return None if got is None else got[:2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def in_the_way(path: Path, fix: str = "choose another --out") -> OutputFolderError:
    """The refusal for a file of the user's where gfi would write."""
    return OutputFolderError(f"{path} exists and gfi did not write it; move it away or {fix} (gfi never "
                             "replaces or deletes a file it did not write)")


def check_out_file(path: Path, replace: bool, what: str = "--out") -> None:
    """Refuse, before any work, an output file ``path`` that cannot be written as asked: a folder or
    another special file there, or any file there without ``replace`` (the user's file is kept)."""
    path = Path(path)
    if os.path.lexists(path) and not path.is_symlink() and not path.is_file():
        raise OutputFolderError(f"{what} {path}: is a folder or another special file, not a file; "
                                f"give a file name for {what}")
    if os.path.lexists(path) and not replace:
        raise OutputFolderError(f"{what} {path}: exists; give --overwrite to replace it, or choose another {what}")


class Manifest:
    """The files gfi wrote under ``root``: ``root/<name>``, a JSON-lines file.

    Its first line is a header; then ``{"run": ID, ...}`` when a process starts writing (before its
    first temporary exists), ``{"dir": REL}`` before its first temporary in a folder,
    ``{"file": REL, "size": N, "sha256": H, ...}`` after a file is written
    under its temporary name and before it is renamed to ``REL``, ``{"file": REL, "growing": true}``
    before a file that is appended to (its name holds the run's id) is created. Lines are appended
    with one ``write`` each, so readers (other processes sharing a map store) see whole lines. The
    manifest file itself is made with its header in one step, so an empty or foreign file at its
    name is refused, never taken over.

    :meth:`active` makes every :func:`atomic_write` under ``root`` go through it (the rule holds
    whichever module writes). ``shared=True``: other processes may append at the same time (a map
    store); temporaries are then cleaned only for runs whose process is gone."""

    _active: list[Manifest] = []  # noqa: RUF012 - the manifests of the runs this process is writing

    def __init__(self, root: Path, name: str = MANIFEST, *, shared: bool = False, fix: str = "choose another --out"):
        self.root = Path(os.path.abspath(root))
        self.path = self.root / name
        self.shared = shared
        self.fix = fix
        self.files: dict[str, list[dict]] = {}
        self.growing: set[str] = set()
        self.runs: dict[str, dict] = {}
        self.dirs: set[str] = {"."}  # the folders where gfi made temporaries
        self._offset = 0
        self._fd: int | None = None
        self.refresh()

    # -- reading ----------------------------------------------------------------------------------
    @property
    def exists(self) -> bool:
        return os.path.lexists(self.path)

    def _foreign(self, what: str) -> OutputFolderError:
        return OutputFolderError(f"{self.path} {what}, not gfi's list of the files it wrote; move it away or "
                                 f"{self.fix}")

    def refresh(self) -> None:
        """Read the lines appended since the last read (all of them the first time)."""
        if not os.path.lexists(self.path):
            return
        try:
            fd = os.open(self.path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _BINARY | _CLOEXEC)
        except OSError as exc:
            kind = "is a link" if os.path.islink(self.path) else f"cannot be read ({exc.strerror or exc})"
            raise self._foreign(kind) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise self._foreign("is not a regular file")
            os.lseek(fd, self._offset, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
        finally:
            os.close(fd)
        data = b"".join(chunks)
        end = data.rfind(b"\n") + 1  # a line cut off (a full disk) is read once it is ended
        lines = data[:end].split(b"\n")[:-1]
        if self._offset == 0:
            if not lines or _json_line(lines[0]) != _HEADER:
                raise self._foreign("holds other data")
            lines = lines[1:]
        self._offset += end
        for raw in lines:
            entry = _json_line(raw)
            if not isinstance(entry, dict):
                log.debug("%s: skipped an unreadable line", self.path)
            elif isinstance(entry.get("run"), str):
                self.runs[entry["run"]] = entry
            elif isinstance(entry.get("dir"), str):
                self.dirs.add(entry["dir"])
            elif isinstance(entry.get("file"), str):
                if entry.get("growing") is True:
                    self.growing.add(entry["file"])
                else:
                    self.files.setdefault(entry["file"], []).append(entry)

    def rel(self, path: Path) -> str:
        """``path`` relative to the root, its folders checked to be real folders inside it."""
        path = Path(os.path.abspath(path))
        parent = path.parent.resolve()
        if parent != self.root.resolve() and self.root.resolve() not in parent.parents:
            raise OutputFolderError(f"{path} is not inside {self.root} (a folder on the way is a link?)")
        return (parent / path.name).relative_to(self.root.resolve()).as_posix()

    def listed(self, path: Path) -> bool:
        """Whether the manifest names the file at ``path`` at all (cheap: its content is not read)."""
        rel = self.rel(path)
        if rel not in self.files and rel not in self.growing and self.shared:
            self.refresh()
        return rel in self.files or rel in self.growing

    def entry(self, path: Path) -> dict | None:
        """The line that proves the file now at ``path`` is gfi's, or None."""
        rel = self.rel(path)
        if rel in self.growing:
            p = self.root / rel
            return {"file": rel, "growing": True} if os.path.isfile(p) and not os.path.islink(p) else None
        if rel not in self.files and not self.shared:
            return None
        found = digest(self.root / rel)
        return None if found is None else self._match(rel, found)

    def read(self, path: Path) -> bytes | None:
        """The bytes of the file at ``path`` when gfi wrote it (one read), else None."""
        rel = self.rel(path)
        got = _read_regular(self.root / rel, keep=True)
        if got is None or self._match(rel, got[:2]) is None:
            return None
        return got[2]

    def _match(self, rel: str, found: tuple[int, str]) -> dict | None:
        for attempt in range(2):
            for e in reversed(self.files.get(rel, [])):
                if (e.get("size"), e.get("sha256")) == found:
                    return e
            if attempt == 0 and self.shared:
                self.refresh()  # another process may have published it meanwhile
        return None

    def owns(self, path: Path) -> bool:
        """Whether the file at ``path`` is one gfi wrote (as the manifest proves)."""
        return self.entry(path) is not None

    def check_free(self, paths) -> None:
        """Refuse (:func:`in_the_way`) the first of ``paths`` that holds something gfi did not write."""
        for p in paths:
            if os.path.lexists(p) and not self.owns(p):
                raise in_the_way(p, self.fix)

    def owned_files(self) -> list[Path]:
        """Every file now in the folder that the manifest proves gfi wrote."""
        return [self.root / rel for rel in sorted({*self.files, *self.growing}) if self.owns(self.root / rel)]

    # -- writing ----------------------------------------------------------------------------------
    def _open(self) -> None:
        """Create the manifest (its header in one step) when there is none, and register this run."""
        if self._fd is not None:
            return
        header = (json.dumps(_HEADER) + "\n").encode()
        for orphan in self.root.glob(f"{TMP_PREFIX}*.{self.path.name}"):  # a kill before a new manifest's link
            if digest(orphan) == (len(header), hashlib.sha256(header).hexdigest()):  # exactly a new manifest
                _discard(orphan)
        if not os.path.lexists(self.path):
            self.root.mkdir(parents=True, exist_ok=True)
            if not _plain_write(self.path, lambda p: Path(p).write_bytes(header), create=True):
                log.debug("%s was made by another process meanwhile", self.path)
        self.refresh()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | _NOFOLLOW | _BINARY | _CLOEXEC)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EMLINK, errno.EISDIR):
                raise self._foreign("is not a regular file") from None
            raise write_error(exc, self.path) from exc
        self._fd = fd
        with open(self.path, "rb") as fh:  # a line cut off by a full disk: end it before appending
            fh.seek(0, os.SEEK_END)
            if fh.tell():
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    self._append_raw(b"\n")
        import socket
        import time

        me = {"run": run_id(), "pid": os.getpid(), "host": socket.gethostname(),
              "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        self._append(me)

    def _append_raw(self, data: bytes) -> None:
        try:
            n = os.write(self._fd, data)
        except OSError as exc:
            raise write_error(exc, self.path) from exc
        if n != len(data):
            raise write_error(OSError(errno.ENOSPC, "short write"), self.path)

    def _append(self, entry: dict) -> None:
        self._append_raw((json.dumps(entry) + "\n").encode())
        if "run" in entry:
            self.runs[entry["run"]] = entry
        elif "dir" in entry:
            self.dirs.add(entry["dir"])
        elif entry.get("growing"):
            self.growing.add(entry["file"])
        else:
            self.files.setdefault(entry["file"], []).append(entry)

    def _write(self, path: Path, write: Callable[[Path], Any], extra: dict | None, *, create: bool) -> bool:
        path = Path(os.path.abspath(path))
        rel = self.rel(path)
        there = os.path.lexists(path)
        if there and not self.owns(path):
            raise in_the_way(path, self.fix)
        if there and create:
            return False
        self._open()
        tmp = temporary_name(path)
        folder = Path(rel).parent.as_posix()
        if folder not in self.dirs:  # where this run's temporaries can be, said before the first is made
            self._append({"dir": folder})
        try:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                write(tmp)
                found = digest(tmp)
                if found is None:
                    raise OSError(errno.EIO, f"{tmp.name} was not written")
                self._append({"file": rel, "size": found[0], "sha256": found[1], **(extra or {})})
                done = _publish(tmp, path, replace=there)
            except OSError as exc:
                raise write_error(exc, path) from exc
            if not done and not create:  # a file appeared meanwhile: it is not replaced
                raise in_the_way(path, self.fix)
            return done
        finally:
            _discard(tmp)

    def write(self, path: Path, write: Callable[[Path], Any], extra: dict | None = None) -> None:
        """``write(tmp)``, then give it the name ``path``: recorded here first, replacing only a
        file gfi wrote (else :class:`OutputFolderError`); ``extra`` goes into the file's line."""
        self._write(path, write, extra, create=False)

    def create(self, path: Path, write: Callable[[Path], Any], extra: dict | None = None) -> bool:
        """Like :meth:`write`, but the first writer wins: a file gfi wrote already at ``path`` (e.g.
        another process sharing the folder published it meanwhile) is kept. Returns whether this
        call made it."""
        return self._write(path, write, extra, create=True)

    def write_text(self, path: Path, text: str) -> None:
        self.write(path, lambda p: Path(p).write_text(text, encoding="utf-8"))

    def create_growing(self, path: Path):
        """A new file at ``path`` (a name holding the run's id) opened for appending; recorded first."""
        path = Path(os.path.abspath(path))
        rel = self.rel(path)
        self._open()
        self._append({"file": rel, "growing": True})
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | _NOFOLLOW | _BINARY | _CLOEXEC,
                         0o644)
        except FileExistsError:
            raise in_the_way(path, self.fix) from None
        except OSError as exc:
            raise write_error(exc, path) from exc
        return os.fdopen(fd, "a", encoding="utf-8")

    def remove(self, path: Path) -> bool:
        """Delete the file at ``path`` if gfi wrote it; returns whether it did."""
        if not self.owns(path):
            return False
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise write_error(exc, Path(path)) from exc
        return True

    def clear(self) -> list[Path]:
        """Delete every file the manifest proves gfi wrote, then start the manifest afresh (the
        caller holds the folder's lock). Returns the files deleted."""
        self.remove_temporaries(every_other_run=True)
        gone = [p for p in self.owned_files() if self.remove(p)]
        if os.path.lexists(self.path):
            header = (json.dumps(_HEADER) + "\n").encode()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            _plain_write(self.path, lambda p: Path(p).write_bytes(header), create=False)
            self.files, self.growing, self.runs, self.dirs, self._offset = {}, set(), {}, {"."}, 0
            self.refresh()
        return gone

    def folders(self) -> list[Path]:
        """The folders where gfi made temporaries (each is named before the first one is made)."""
        return sorted({(self.root / d) for d in self.dirs} | {(self.root / rel).parent for rel in self.files})

    def remove_temporaries(self, *, every_other_run: bool = True) -> list[Path]:
        """Delete the temporaries that runs listed here left (a kill): every other run's (under the
        folder's lock), or only those of runs on this host whose process is gone (``shared``)."""
        import socket

        host = socket.gethostname()
        ids = [i for i, r in self.runs.items() if i != run_id() and (
            every_other_run or (r.get("host") == host and isinstance(r.get("pid"), int) and not _alive(r["pid"])))]
        removed = []
        if not ids:
            return removed
        for folder in self.folders():
            if not folder.is_dir() or folder.is_symlink():
                continue
            for i in ids:
                for p in folder.glob(f"{TMP_PREFIX}{i}.*"):
                    _discard(p)
                    removed.append(p)
        return removed

    # -- the active manifests -----------------------------------------------------------------------
    @contextmanager
    def active(self) -> Iterator[Manifest]:
        """While inside, :func:`atomic_write` and :func:`atomic_create` under ``root`` go through this
        manifest (the innermost active one whose root holds the path)."""
        Manifest._active.append(self)
        try:
            yield self
        finally:
            Manifest._active.remove(self)

    @classmethod
    def covering(cls, path: Path) -> Manifest | None:
        p = Path(os.path.abspath(path))
        real = p.parent.resolve() / p.name
        for m in reversed(cls._active):
            if m.root in p.parents or m.root.resolve() in real.parents:
                return m
        return None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _json_line(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


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
    which starts afresh (the caller then deletes only the files the manifest proves gfi wrote)."""
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
def check_folder(folder: Path, what: str = "--out") -> Path:
    """Check, before any work, that ``folder`` can be made and written: an existing file in the way,
    a read-only place or a full disk is a one-line :class:`OutputFolderError`. Nothing is created
    (a temporary file in the folder, or in its nearest existing parent, is written and removed)."""
    import tempfile

    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise OutputFolderError(f"{what} {folder}: {probe} is an existing file, not a folder; "
                                f"choose another {what}")
    try:  # a file with no name where the system allows it (O_TMPFILE): a kill leaves nothing
        with tempfile.TemporaryFile(dir=probe, prefix=f"{TMP_PREFIX}{run_id()}.write-check.", suffix=".tmp"):
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

    The lock is the operating system's lock on that file (``filelock.lock_descriptor``: ``flock`` on
    POSIX, ``LockFileEx`` on Windows), and the file holds the holder's pid, host and start time. A
    second process is refused at once with a one-line :class:`OutputFolderError` that names the
    holder. The system releases the lock when its process ends in any way (SIGKILL included), so a
    lock file left by a dead run is stale by construction and simply taken over.

    The lock's path is never followed: a link, a folder, a special file, a file with other hard links
    or a file that is not a gfi lock (other content, or none: the lock file gfi makes is never empty)
    there is refused with one line naming it and the fix; it is never written to. Readers (e.g. of
    a shared map store) take no lock: every file is replaced atomically."""

    def __init__(self, folder: Path, what: str = "--out", *, eager: bool = True, name: str = LOCK_NAME) -> None:
        self.path = Path(folder) / name
        self.what = what
        self.eager = eager
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _refuse(self, what: str) -> OutputFolderError:
        return OutputFolderError(f"{self.path} {what}; gfi keeps its lock there and never follows or replaces "
                                 "what it did not make: move it away and run again")

    def _create(self) -> None:
        """Make the lock file with a holder already in it (a temporary linked to its name, which fails
        when the name exists): the lock file gfi makes is never empty."""
        for orphan in self.path.parent.glob(f"{TMP_PREFIX}*.{self.path.name}"):  # a kill between write and link
            if orphan.is_file() and not orphan.is_symlink() and _holder(orphan.read_bytes()) is not None:
                _discard(orphan)
        try:
            _plain_write(self.path, lambda p: Path(p).write_bytes(_holder_bytes()), create=True)
        except WriteError as exc:
            raise OutputFolderError(f"cannot make the lock file {self.path} ({exc}); choose another "
                                    f"{self.what}") from None

    def _open(self) -> int | None:
        """The lock file, never through a link; refused unless a plain file. None: it is gone."""
        if not _NOFOLLOW and os.path.islink(self.path):
            raise self._refuse("is a link")
        try:
            fd = os.open(self.path, os.O_RDWR | _NOFOLLOW | _NONBLOCK | _BINARY | _CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if os.path.islink(self.path):
                raise self._refuse("is a link") from None
            if os.path.isdir(self.path):
                raise self._refuse("is a folder") from None
            raise OutputFolderError(f"cannot open the lock file {self.path} ({exc.strerror or exc}); "
                                    f"choose another {self.what}") from None
        st = os.fstat(fd)
        problem = ("is not a regular file" if not stat.S_ISREG(st.st_mode)
                   else "has other hard links (it is also another file)" if st.st_nlink > 1 else None)
        if problem:
            os.close(fd)
            raise self._refuse(problem)
        return fd

    def acquire(self) -> FolderLock:
        from filelock import lock_descriptor, unlock_descriptor

        if self._fd is not None:
            return self
        while True:
            if not os.path.lexists(self.path):
                self._create()
            fd = self._open()
            if fd is None:  # released (unlinked) meanwhile
                continue
            try:
                got = lock_descriptor(fd, blocking=False)
            except OSError as exc:
                os.close(fd)
                raise OutputFolderError(f"cannot lock {self.path} ({exc.strerror or exc}); choose another "
                                        f"{self.what}") from None
            if not got:
                holder = _holder(_read_fd(fd, 1)) or {}
                os.close(fd)
                who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('since', '?')}"
                raise OutputFolderError(f"{self.path.parent} is being written by another gfi run ({who}); wait "
                                        f"for it to finish or choose another {self.what}") from None
            try:  # the file may have been released (unlinked) between our open and our lock: retry
                a, b = os.lstat(self.path), os.fstat(fd)
                same = (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)
            except FileNotFoundError:
                same = False
            if same:
                break
            unlock_descriptor(fd)
            os.close(fd)
        if _holder(_read_fd(fd, 0)) is None:  # not a lock file gfi made: the user's file
            unlock_descriptor(fd)
            os.close(fd)
            raise self._refuse("holds other data (it is not a gfi lock file)")
        try:  # one write of a holder at least as long as any before: the file is never half-written
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, _holder_bytes())
        except OSError as exc:
            unlock_descriptor(fd)
            os.close(fd)
            raise OutputFolderError(f"cannot write the lock file {self.path} ({exc.strerror or exc}); choose "
                                    f"another {self.what}") from None
        self._fd = fd
        return self

    def release(self) -> None:
        """Unlock and delete the lock file (a killed holder leaves the file; the next run takes it)."""
        if self._fd is None:
            return
        from filelock import unlock_descriptor

        fd, self._fd = self._fd, None
        try:
            os.unlink(self.path)  # while locked: no other process holds this file
            unlinked = True
        except OSError as exc:  # Windows (an open file), or a folder turned read-only
            log.debug("lock file %s not removed while held: %s", self.path, exc)
            unlinked = False
        try:
            unlock_descriptor(fd)
        except OSError as exc:
            log.debug("unlocking %s: %s", self.path, exc)
        os.close(fd)
        if not unlinked:
            try:
                os.unlink(self.path)
            except OSError as exc:
                log.debug("lock file %s left (the next run takes it over): %s", self.path, exc)

    def __enter__(self) -> FolderLock:
        """Holds the lock only once :meth:`acquire` is called (or at once when ``eager``)."""
        return self.acquire() if self.eager else self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_fd(fd: int, start: int) -> bytes:
    """The lock file's content from ``start`` (1 when another process holds the lock: Windows keeps
    byte 0 locked; a gfi lock file's byte 0 is a newline)."""
    try:
        os.lseek(fd, start, os.SEEK_SET)
        return os.read(fd, 4096)
    except OSError:
        return b""


def _holder_bytes() -> bytes:
    """This process as a lock's holder: a newline (byte 0, which Windows keeps locked), its pid,
    host and start time as JSON, padded with spaces to 512 bytes (so rewriting a stale lock's
    holder is one write of a file of the same length)."""
    import socket
    import time

    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    return (b"\n" + json.dumps(me).encode()).ljust(512)


def _holder(content: bytes) -> dict | None:
    """The holder a gfi lock file names, or None when the content is not one."""
    try:
        obj = json.loads(content.decode().strip() or "null")
    except (ValueError, UnicodeDecodeError):
        return None
    return obj if isinstance(obj, dict) and {"pid", "host", "since"} <= set(obj) else None
