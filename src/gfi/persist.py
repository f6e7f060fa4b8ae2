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
