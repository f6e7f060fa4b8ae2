"""The output folder of a ``gfi explain`` run: nothing is lost when a run stops, and nothing of the
user's is ever replaced or deleted.

Layout of ``--out``::

    run.json            the run's arguments (what decides the outputs), written first
    records/STEM.json   one record per input image, written atomically when that image finishes
    results.json        the summary: every record in input order (rewritten atomically as the run goes)
    report.html         the page to look at (written at the end and when interrupted)
    STEM_CLASS.png ...  overlays, .npy maps, thumbs/ for the report
    .gfi-manifest.jsonl the files gfi wrote here (:class:`gfi.persist.Manifest`)

Restarting a run with the same arguments on the same folder resumes it: images with a record are
not explained again, the rest are, and the summary is the one an uninterrupted run gives. Other
arguments on a folder that holds a run are refused (:func:`gfi.persist.resume_or_refuse`, the
rule ``gfi eval`` follows too); ``overwrite=True`` starts afresh. gfi replaces or deletes only the
files the manifest proves it wrote (recorded before each file appears); a user's file where an
output goes is refused, with or without ``overwrite``. Every file is written to a temporary name
in the same folder, then renamed over the target, so a kill leaves either the old file or the new one.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from gfi.persist import (
    Manifest,
    OutputFolderError,
    atomic_write,
    atomic_write_text,
    dumps,
    in_the_way,
    resume_or_refuse,
)

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
RECORDS = "records"
RESULTS = "results.json"
REPORT = "report.html"
THUMBS = "thumbs"
FORMAT = 2

__all__ = ["REPORT", "RESULTS", "OutputFolderError", "RunFolder", "atomic_write", "atomic_write_text", "dumps"]


def legacy_folder(out: Path, manifest: Manifest, run_files: tuple[str, ...]) -> None:
    """Refuse a folder with a run file but no manifest (an earlier gfi version wrote it, or not
    gfi): gfi cannot tell its files from the user's there."""
    found = [n for n in run_files if os.path.lexists(out / n)]
    if found and not manifest.exists:
        raise OutputFolderError(f"{out / found[0]} exists, but {out} has no list of the files gfi wrote there (an "
                                "earlier gfi version, or not gfi), so gfi cannot tell its files from yours; move them "
                                "away or choose another --out")


class RunFolder:
    """One run's output folder. ``arguments`` is everything that decides the outputs; ``keys`` are
    the output stems of the run's images (their records are checked before any work)."""

    def __init__(self, out: Path, arguments: dict, *, overwrite: bool = False, keys: list[str] = ()) -> None:
        self.out = out
        self.arguments = json.loads(dumps(arguments))  # as it reads back from run.json
        self.overwrite = overwrite
        out.mkdir(parents=True, exist_ok=True)
        self.root = out.resolve()
        self.manifest = Manifest(out)
        legacy_folder(out, self.manifest, (RUN_FILE,))
        run_file = out / RUN_FILE
        stored = None
        if os.path.lexists(run_file):
            if not self.manifest.owns(run_file):
                raise in_the_way(run_file)
            try:
                stored = json.loads(run_file.read_text(encoding="utf-8"))["arguments"]
            except (ValueError, KeyError, TypeError) as exc:
                raise OutputFolderError(f"{run_file} is not a gfi run file ({exc}); choose another --out") from exc
        self.resuming = resume_or_refuse(out, stored, self.arguments, overwrite=overwrite)
        for name in (RECORDS, THUMBS):  # a file where gfi makes a folder
            if os.path.lexists(out / name) and (not (out / name).is_dir() or (out / name).is_symlink()):
                raise OutputFolderError(f"{out / name} exists and is not a folder; move it away or choose another "
                                        "--out")
        # a user's file at a name every run writes: refused before any work, with or without overwrite
        self.manifest.check_free([run_file, out / RESULTS, out / REPORT, *(out / RECORDS / f"{k}.json" for k in keys)])
        self._active = self.manifest.active()
        self._active.__enter__()
        try:
            if stored is not None and overwrite:
                gone = self.manifest.clear()
                log.debug("--overwrite: deleted %d file(s) gfi wrote in %s", len(gone), out)
                thumbs = out / THUMBS
                if thumbs.is_dir() and not any(thumbs.iterdir()):
                    thumbs.rmdir()
            else:
                self.manifest.remove_temporaries()
            (out / RECORDS).mkdir(exist_ok=True)
            self.manifest.write_text(run_file, dumps({"format": FORMAT, "arguments": self.arguments}))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop routing writes under the folder through its manifest (the run is over)."""
        if self._active is not None:
            self._active.__exit__(None, None, None)
            self._active = None
        self.manifest.close()

    # ----------------------------------------------------------------------------------------
    def _read_records(self) -> dict[str, dict]:
        """The records gfi wrote (a file in records/ that is not gfi's is never read)."""
        out = {}
        folder = self.out / RECORDS
        if not folder.is_dir():
            return out
        for p in sorted(folder.glob("*.json")):
            if p.name.startswith(".") or not self.manifest.owns(p):
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
        """Store one image's record (atomically; a file of the user's there is refused)."""
        self.manifest.write_text(self.out / RECORDS / f"{key}.json", dumps(record))

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
        """Refuse (before writing any) when one of ``names`` holds a file gfi did not write."""
        self.manifest.check_free([self.path(n) for n in names])

    def save(self, name: str, write: Callable[[Path], None], key: str | None = None) -> str:
        """Write ``name`` (an output of image ``key``) atomically; returns the path relative to the folder."""
        dest = self.path(name)
        self.manifest.write(dest, write)
        return str(dest.relative_to(self.root))

    def write_results(self, summary: dict) -> Path:
        path = self.out / RESULTS
        self.manifest.write_text(path, dumps(summary))
        return path

    def write_report(self, html: str) -> Path:
        path = self.out / REPORT
        self.manifest.write_text(path, html)
        return path
