"""The per-image lines of ``gfi eval``: JSONL files read, appended and merged.

Each image's result is one JSON object in ``OUT/records.jsonl``. While a run is going, each
process appends to its own part file (:class:`RecordWriter`: flushed and fsynced after every
batch, so a kill loses at most the batch in progress); at the end :func:`merge_records` writes
them into ``records.jsonl`` in dataset order (atomically, :func:`gfi.persist.atomic_write`) and
deletes the parts. A line cut off by a kill is skipped with a warning and its image redone.

With a :class:`gfi.persist.Manifest` (as ``gfi eval`` runs), a part file is
``records.part<RANK>.<RUN ID>.jsonl``, new for each process and listed in the manifest before it
is made; only ``records.jsonl`` and the parts the manifest lists are read or deleted (a file of
the user's with such a name is neither). Without one, parts are ``records.part<RANK>.jsonl``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from gfi.persist import Manifest, atomic_write, write_error

log = logging.getLogger("gfi")
RECORDS = "records.jsonl"
PART_GLOB = "records.part*.jsonl"


def part_name(rank: int, run: str | None = None) -> str:
    """The file the process of ``rank`` (and run id ``run``) appends its lines to."""
    return f"records.part{rank}.{run}.jsonl" if run else f"records.part{rank}.jsonl"


def _files(out: Path, manifest: Manifest | None) -> list[Path]:
    """``records.jsonl`` and the part files, those gfi wrote when a manifest is given."""
    if manifest is None:
        return [out / RECORDS, *sorted(out.glob(PART_GLOB))]
    if manifest.shared:
        manifest.refresh()  # the parts of the other ranks
    parts = sorted(out / rel for rel in manifest.growing if rel.startswith("records.part"))
    return [p for p in [out / RECORDS, *parts] if manifest.owns(p)]


def read_jsonl(path: Path) -> list[dict]:
    """The lines of a JSONL file; a line cut off by a crash is skipped with a warning."""
    out = []
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning("%s, line %d: not valid JSON (cut off by an interrupted run?); it is redone", path, n)
    return out


def read_records(out: Path, manifest: Manifest | None = None) -> dict[str, dict]:
    """Every image's latest line from ``records.jsonl`` and the part files (a failure never
    replaces a success)."""
    recs: dict[str, dict] = {}
    for f in _files(out, manifest):
        if f.is_file():
            for r in read_jsonl(f):
                if "key" in r and ("error" not in r or r["key"] not in recs or "error" in recs[r["key"]]):
                    recs[r["key"]] = r
    return recs


class RecordWriter:
    """Appends lines to a JSONL file, flushed and fsynced per call; with ``manifest``, a new file
    listed in it first (its name holds the run's id)."""

    def __init__(self, path: Path, manifest: Manifest | None = None) -> None:
        self.path = path
        if manifest is not None:
            self.fh = manifest.create_growing(path)
            return
        if path.is_file() and path.stat().st_size:
            with open(path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":  # a line cut off by a kill: end it, read_jsonl skips it
                    with open(path, "a") as fa:
                        fa.write("\n")
        self.fh = open(path, "a")  # noqa: SIM115 - kept open for the run, closed in close()

    def write(self, records: list[dict]) -> None:
        try:
            for r in records:
                self.fh.write(json.dumps(r, allow_nan=True) + "\n")
            self.fh.flush()
            os.fsync(self.fh.fileno())
        except OSError as exc:
            raise write_error(exc, self.path) from exc

    def close(self) -> None:
        try:
            self.fh.close()
        except OSError as exc:  # what could not be flushed is redone by the next run
            log.debug("closing %s: %s", self.path, exc)


def merge_records(out: Path, manifest: Manifest | None = None) -> list[dict]:
    """Write every image's latest line into ``records.jsonl`` in dataset order, delete the parts;
    returns the lines."""
    parts = _files(out, manifest)[:]
    recs = sorted(read_records(out, manifest).values(), key=lambda r: r.get("index", 0))

    def write(tmp: Path) -> None:
        with open(tmp, "w") as fh:
            for r in recs:
                fh.write(json.dumps(r) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    if manifest is None:
        atomic_write(out / RECORDS, write)
        for f in out.glob(PART_GLOB):
            f.unlink()
        return recs
    manifest.write(out / RECORDS, write)
    for f in parts:
        if f.name != RECORDS:
            manifest.remove(f)
    return recs
