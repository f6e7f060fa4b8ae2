"""The per-image lines of ``gfi eval``: JSONL files read, appended and merged.

Each image's result is one JSON object in ``OUT/records.jsonl``. While a run is going, each
process appends to ``records.part<RANK>.jsonl`` (:class:`RecordWriter`: flushed and fsynced after
every batch, so a kill loses at most the batch in progress); at the end :func:`merge_records`
writes them into ``records.jsonl`` in dataset order (atomically, :func:`gfi.persist.atomic_write`)
and deletes the parts. A line cut off by a kill is skipped with a warning and its image redone.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from gfi.persist import atomic_write

log = logging.getLogger("gfi")
RECORDS = "records.jsonl"
PART_GLOB = "records.part*.jsonl"


def part_name(rank: int) -> str:
    """The file the process of ``rank`` appends its lines to."""
    return f"records.part{rank}.jsonl"


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


def read_records(out: Path) -> dict[str, dict]:
    """Every image's latest line from ``records.jsonl`` and the ``records.part*.jsonl`` files (a
    failure never replaces a success)."""
    recs: dict[str, dict] = {}
    files = [out / RECORDS, *sorted(out.glob(PART_GLOB))]
    for f in files:
        if f.is_file():
            for r in read_jsonl(f):
                if "key" in r and ("error" not in r or r["key"] not in recs or "error" in recs[r["key"]]):
                    recs[r["key"]] = r
    return recs


class RecordWriter:
    """Appends lines to a JSONL file, flushed and fsynced per call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.is_file() and path.stat().st_size:
            with open(path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":  # a line cut off by a kill: end it, read_jsonl skips it
                    with open(path, "a") as fa:
                        fa.write("\n")
        self.fh = open(path, "a")  # noqa: SIM115 - kept open for the run, closed in close()

    def write(self, records: list[dict]) -> None:
        for r in records:
            self.fh.write(json.dumps(r, allow_nan=True) + "\n")
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        self.fh.close()


def merge_records(out: Path) -> list[dict]:
    """Write every image's latest line into ``records.jsonl`` in dataset order, delete the parts;
    returns the lines."""
    recs = sorted(read_records(out).values(), key=lambda r: r.get("index", 0))

    def write(tmp: Path) -> None:
        with open(tmp, "w") as fh:
            for r in recs:
                fh.write(json.dumps(r) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    atomic_write(out / RECORDS, write)
    for f in out.glob(PART_GLOB):
        f.unlink()
    return recs
