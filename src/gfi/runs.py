"""The output folder of a ``gfi explain`` run: nothing is lost when a run stops.

Layout of ``--out``::

    run.json            the run's arguments (what decides the outputs), written first
    records/STEM.json   one record per input image, written atomically when that image finishes
    results.json        the summary: every record in input order (rewritten atomically as the run goes)
    report.html         the page to look at (written at the end and when interrupted)
    STEM_CLASS.png ...  overlays, .npy maps, thumbs/ for the report

Restarting a run with the same arguments on the same folder resumes it: images with a record are
not explained again, the rest are, and the summary is the one an uninterrupted run gives. Other
arguments on a folder that holds a run with finished images are refused (a run that finished
none is simply replaced); ``overwrite=True`` starts afresh (the outputs
named by the old records are deleted first). Every file is written to a temporary name in the
same folder, then renamed over the target, so a kill leaves either the old file or the new one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
RECORDS = "records"
RESULTS = "results.json"
REPORT = "report.html"
THUMBS = "thumbs"
FORMAT = 1


class OutputFolderError(ValueError):
    """The output folder cannot be used as asked; the message says why and what to do."""


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` to a temporary file next to ``path``, then rename it over ``path``."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def dumps(obj) -> str:
    """JSON that never holds NaN or inf (``allow_nan=False``: a non-finite number is a bug here)."""
    return json.dumps(obj, indent=2, allow_nan=False)


def _differences(old, new, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += _differences(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]


class RunFolder:
    """One run's output folder. ``arguments`` is everything that decides the outputs."""

    def __init__(self, out: Path, arguments: dict, *, overwrite: bool = False) -> None:
        self.out = out
        self.arguments = json.loads(dumps(arguments))  # as it reads back from run.json
        self.resuming = False
        out.mkdir(parents=True, exist_ok=True)
        self.root = out.resolve()
        run_file = out / RUN_FILE
        if run_file.exists():
            try:
                old = json.loads(run_file.read_text(encoding="utf-8"))["arguments"]
            except (ValueError, KeyError, TypeError) as exc:
                raise OutputFolderError(f"{run_file} is not a gfi run file ({exc}); choose another --out") from exc
            if overwrite:
                self._clear()
            elif old != self.arguments and not self.finished():
                log.info("%s holds a run that finished no image; starting afresh with the new arguments", out)
                self._clear()
            elif old != self.arguments:
                diff = _differences(old, self.arguments)
                raise OutputFolderError(
                    f"{out} holds a run with other arguments (differs in: {', '.join(diff[:8])}); "
                    "rerun with the same arguments to resume it, choose another --out, "
                    "or pass --overwrite to start afresh")
            else:
                self.resuming = True
        elif (out / RESULTS).exists() and not overwrite:
            raise OutputFolderError(f"{out / RESULTS} exists; choose another --out or pass --overwrite")
        (out / RECORDS).mkdir(exist_ok=True)
        self._remove_temporaries()
        # images a stopped run had started: their partial outputs are this run's to replace
        self.interrupted = {k for k, r in self._read_records().items() if r.get("status") == "started"} \
            if self.resuming else set()
        atomic_write_text(run_file, dumps({"format": FORMAT, "arguments": self.arguments}))
        self.overwrite = overwrite

    # ----------------------------------------------------------------------------------------
    def _remove_temporaries(self) -> None:
        """Temporary files a killed run left behind (never a finished output)."""
        for folder in (self.out, self.out / RECORDS, self.out / THUMBS):
            for p in folder.glob(".*.tmp*"):
                if p.is_file():
                    p.unlink()

    def _clear(self) -> None:
        """Delete what the previous run in this folder wrote (only files inside the folder)."""
        for key, rec in self._read_records().items():
            names = _output_files(rec)
            if rec.get("status") == "started":  # its files are not named anywhere: those it may have written
                names += [str(q.relative_to(self.out)) for pattern in (f"{key}_*.png", f"{key}_*.npy")
                          for q in self.out.glob(pattern)]
            for name in names:
                p = (self.out / name).resolve()
                if self.root in p.parents and p.is_file():
                    p.unlink()
        for name in (RECORDS, THUMBS):
            if (self.out / name).is_dir():
                shutil.rmtree(self.out / name)
        for name in (RESULTS, REPORT):
            (self.out / name).unlink(missing_ok=True)

    def _read_records(self) -> dict[str, dict]:
        out = {}
        folder = self.out / RECORDS
        if not folder.is_dir():
            return out
        for p in sorted(folder.glob("*.json")):
            if p.name.startswith("."):
                continue
            try:
                out[p.stem] = json.loads(p.read_text(encoding="utf-8"))
            except ValueError:
                log.warning("%s: unreadable record (ignored; the image is explained again)", p)
        return out

    def finished(self) -> dict[str, dict]:
        """Records of images explained successfully so far, by key."""
        return {k: r for k, r in self._read_records().items() if r.get("status") == "ok"}

    def start(self, key: str, image: str) -> None:
        """Mark an image as started before its outputs are written (see :meth:`save`)."""
        self.add(key, {"image": image, "status": "started"})

    def add(self, key: str, record: dict) -> None:
        """Store one image's record (atomically)."""
        atomic_write_text(self.out / RECORDS / f"{key}.json", dumps(record))

    def records(self, keys: list[str]) -> list[dict]:
        """The stored records of ``keys``, in that order (keys without a record are left out)."""
        got = self._read_records()
        return [got[k] for k in keys if k in got]

    def path(self, name: str) -> Path:
        """``name`` inside the folder; refuses names that would leave it."""
        dest = (self.out / name).resolve()
        if self.root not in dest.parents:
            raise OutputFolderError(f"output name {name!r} would leave {self.out}")
        return dest

    def check_free(self, names: list[str], key: str | None = None) -> None:
        """Refuse (before writing any) when one of ``names`` exists and may not be replaced."""
        if self.overwrite or key in self.interrupted:
            return
        taken = [n for n in names if self.path(n).exists()]
        if taken:
            raise OutputFolderError(f"{self.path(taken[0])} exists; choose another --out or pass --overwrite")

    def save(self, name: str, write: Callable[[Path], None], key: str | None = None) -> str:
        """Write ``name`` (an output of image ``key``) atomically. An existing file is replaced only
        with ``overwrite``, or when a stopped run of the same arguments had started that image (the
        file is then its partial output); returns the path relative to the folder."""
        dest = self.path(name)
        if dest.exists() and not (self.overwrite or key in self.interrupted):
            raise OutputFolderError(f"{dest} exists; choose another --out or pass --overwrite")
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(dest, write)
        return str(dest.relative_to(self.root))

    def write_results(self, summary: dict) -> Path:
        path = self.out / RESULTS
        atomic_write_text(path, dumps(summary))
        return path


def _output_files(record: dict) -> list[str]:
    """Every file a record names (relative to the output folder)."""
    names = [record.get(k) for k in ("stage1_npy", "thumb_input", "thumb_stage1")]
    for t in record.get("targets", []):
        names += [t.get(k) for k in ("overlay", "npy", "thumb")]
    return [n for n in names if isinstance(n, str)]
