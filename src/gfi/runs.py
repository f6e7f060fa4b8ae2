"""The output folder of a ``gfi explain`` run: nothing is lost when a run stops.

Layout of ``--out``::

    run.json            the run's arguments (what decides the outputs), written first
    records/STEM.json   one record per input image, written atomically when that image finishes
    results.json        the summary: every record in input order (rewritten atomically as the run goes)
    report.html         the page to look at (written at the end and when interrupted)
    STEM_CLASS.png ...  overlays, .npy maps, thumbs/ for the report

Restarting a run with the same arguments on the same folder resumes it: images with a record are
not explained again, the rest are, and the summary is the one an uninterrupted run gives. Other
arguments on a folder that holds a run are refused (:func:`gfi.persist.resume_or_refuse`, the
rule ``gfi eval`` follows too); ``overwrite=True`` starts afresh. The only files gfi ever deletes
are those its own records list as written by it (an image's record names its files before the
first is written), and only with ``overwrite``; a user's file in the way is refused, never
replaced. Every file is written to a temporary name in the same folder, then renamed over the
target (:mod:`gfi.persist`), so a kill leaves either the old file or the new one.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from gfi.persist import (
    OutputFolderError,
    atomic_write,
    atomic_write_text,
    dumps,
    remove_temporaries,
    resume_or_refuse,
)

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
RECORDS = "records"
RESULTS = "results.json"
REPORT = "report.html"
THUMBS = "thumbs"
FORMAT = 1

__all__ = ["REPORT", "RESULTS", "OutputFolderError", "RunFolder", "atomic_write", "atomic_write_text", "dumps"]


class RunFolder:
    """One run's output folder. ``arguments`` is everything that decides the outputs."""

    def __init__(self, out: Path, arguments: dict, *, overwrite: bool = False) -> None:
        self.out = out
        self.arguments = json.loads(dumps(arguments))  # as it reads back from run.json
        self.overwrite = overwrite
        out.mkdir(parents=True, exist_ok=True)
        self.root = out.resolve()
        run_file = out / RUN_FILE
        stored = None
        if run_file.exists():
            try:
                stored = json.loads(run_file.read_text(encoding="utf-8"))["arguments"]
            except (ValueError, KeyError, TypeError) as exc:
                raise OutputFolderError(f"{run_file} is not a gfi run file ({exc}); choose another --out") from exc
        elif (out / RESULTS).exists() and not overwrite:
            raise OutputFolderError(f"{out / RESULTS} exists; choose another --out or pass --overwrite")
        self.resuming = resume_or_refuse(out, stored, self.arguments, overwrite=overwrite)
        if stored is not None and overwrite:
            self._clear()
        (out / RECORDS).mkdir(exist_ok=True)
        remove_temporaries(self.out, self.out / RECORDS, self.out / THUMBS)
        # images a stopped run had started: the files their records name are this run's to replace
        self.interrupted = {k: set(_output_files(r)) for k, r in self._read_records().items()
                            if r.get("status") == "started"} if self.resuming else {}
        atomic_write_text(run_file, dumps({"format": FORMAT, "arguments": self.arguments}))

    # ----------------------------------------------------------------------------------------
    def _clear(self) -> None:
        """Delete what the previous run in this folder wrote: the files its records name (inside
        the folder), its records, results and report; nothing else."""
        for rec in self._read_records().values():
            for name in _output_files(rec):
                p = (self.out / name).resolve()
                if self.root in p.parents and p.is_file():
                    p.unlink()
        if (self.out / RECORDS).is_dir():
            shutil.rmtree(self.out / RECORDS)
        thumbs = self.out / THUMBS
        if thumbs.is_dir() and not any(thumbs.iterdir()):
            thumbs.rmdir()
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

    def start(self, key: str, image: str, files: list[str]) -> None:
        """Mark an image as started, naming every file it is about to write (see :meth:`save`)."""
        self.add(key, {"image": image, "status": "started", "files": sorted(files)})

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

    def _replaceable(self, name: str, key: str | None) -> bool:
        """An existing ``name`` may be replaced: with ``overwrite``, or when a stopped run of the same
        arguments had started image ``key`` and its record names the file."""
        return self.overwrite or name in self.interrupted.get(key, ())

    def check_free(self, names: list[str], key: str | None = None) -> None:
        """Refuse (before writing any) when one of ``names`` exists and may not be replaced."""
        taken = [n for n in names if self.path(n).exists() and not self._replaceable(n, key)]
        if taken:
            raise OutputFolderError(f"{self.path(taken[0])} exists; choose another --out or pass --overwrite "
                                    "(gfi did not write it, and replaces it only then)")

    def save(self, name: str, write: Callable[[Path], None], key: str | None = None) -> str:
        """Write ``name`` (an output of image ``key``) atomically; returns the path relative to the folder."""
        dest = self.path(name)
        if dest.exists() and not self._replaceable(name, key):
            raise OutputFolderError(f"{dest} exists; choose another --out or pass --overwrite "
                                    "(gfi did not write it, and replaces it only then)")
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(dest, write)
        return str(dest.relative_to(self.root))

    def write_results(self, summary: dict) -> Path:
        path = self.out / RESULTS
        atomic_write_text(path, dumps(summary))
        return path


def _output_files(record: dict) -> list[str]:
    """Every file a record names (relative to the output folder): a started record lists the files
    its image was about to write, a finished one those it wrote."""
    names = list(record.get("files", []))
    names += [record.get(k) for k in ("stage1_npy", "thumb_input", "thumb_stage1")]
    for t in record.get("targets", []):
        names += [t.get(k) for k in ("overlay", "npy", "thumb")]
    return [n for n in names if isinstance(n, str)]
