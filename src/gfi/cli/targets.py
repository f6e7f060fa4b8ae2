"""``gfi explain --targets FILE``: the CSV of ``image,class`` lines (the classes' checks and their
resolution are the folder job's, :mod:`gfi.folder.targets`)."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from gfi.errors import UsageError


def read_targets_csv(path: Path) -> dict[str, list[str]]:
    """``image,class`` lines (UTF-8, a spreadsheet's byte-order mark allowed, an optional header
    row ``image,class``, ``#`` comments); every error names the line."""
    from gfi.data.images import not_regular

    special = not_regular(path)
    if special:
        raise UsageError(f"--targets {path}: is {special}, not a regular file; give a CSV file")
    if not path.is_file():
        raise UsageError(f"--targets {path}: no such file")
    out: dict[str, list[str]] = defaultdict(list)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError as exc:
        raise UsageError(f"--targets {path}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                         "save the CSV as UTF-8") from exc
    for n, row in enumerate(rows, 1):
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if n == 1 and cells[0].lower() == "image":
            continue
        if len(cells) < 2:
            raise UsageError(f"--targets {path}, line {n}: expected `image,class`, got {','.join(row)!r}")
        if not cells[0]:
            raise UsageError(f"--targets {path}, line {n}: no image")
        cls = ",".join(cells[1:]).strip().strip(",").strip()
        if not cls:
            raise UsageError(f"--targets {path}, line {n}: no class for {cells[0]}")
        out[cells[0]].append(cls)
    return dict(out)
