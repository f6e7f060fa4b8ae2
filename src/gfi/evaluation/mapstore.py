"""Saliency maps on disk, shared by ``gfi explain --save-npy`` and ``gfi eval``.

A map is ``<stem>_<class>.npy``: float32 in [0, 1] at the image's original size, ``stem`` from
:func:`gfi.data.samples.safe_stem`. A folder written by ``gfi eval`` also holds ``_maps.json``,
the method, model and settings that made the maps; a run with other settings refuses the folder
(maps of one method are never scored as another's). A folder without it (written by
``gfi explain``) is used as it is. ``_seconds.<pid>.jsonl`` files record how long each map took,
so a metric scoring cached maps still reports the method's seconds per image.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gfi.data.samples import safe_stem

log = logging.getLogger("gfi")
META = "_maps.json"


def map_name(stem: str, cls: int | str) -> str:
    """The file name of the map of class ``cls`` for an image with output stem ``stem``."""
    return f"{stem}_{cls}.npy"


def write_npy_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.stem + f".tmp{os.getpid()}.npy")
    np.save(tmp, array)
    tmp.replace(path)


def _same(key: str, old, new, stage1_only: bool = False) -> bool:
    """Equal settings. GFI settings are compared as :meth:`GFIConfig.canonical` reads them: a
    setting missing on one side (a field added to :class:`GFIConfig` after the maps were made)
    counts as the value that reproduces the code before it (``GFIConfig.ADDED``), else as its
    default. For stage-1 maps (``stage1_only``) stage 2's settings do not count."""
    if key == "config" and isinstance(old, dict) and isinstance(new, dict):
        from gfi.methods.gfi import GFIConfig

        old, new = GFIConfig.canonical(old), GFIConfig.canonical(new)
        keys = set(old) | set(new)
        if stage1_only:
            keys -= GFIConfig.STAGE2_FIELDS | {"stage2"}
        return all(old.get(k) == new.get(k) for k in keys)
    return old == new


def _stage1_maps(provenance: dict) -> bool:
    """Maps made by stage 1 alone: the ``gfi-stage1`` method (whose maps made before it recorded
    ``stage2=False`` say ``True``), or a GFI config with ``stage2`` off."""
    config = provenance.get("config")
    return provenance.get("method") == "gfi-stage1" or (isinstance(config, dict) and config.get("stage2") is False)


class MapStore:
    """A folder of maps with the settings that made them."""

    def __init__(self, folder: str | Path, provenance: dict, *, create: bool = True) -> None:
        self.folder = Path(folder)
        self.provenance = provenance
        self._seconds: dict[str, float] | None = None
        meta = self.folder / META
        if meta.is_file():
            try:
                found = json.loads(meta.read_text())
            except json.JSONDecodeError as exc:
                raise ValueError(f"{meta}: malformed ({exc}); delete it to reuse the maps") from exc
            stage1 = _stage1_maps(found) and _stage1_maps(provenance)
            diff = sorted(k for k in set(found) | set(provenance)
                          if not _same(k, found.get(k), provenance.get(k), stage1))
            if diff:
                shown = "; ".join(f"{k}: {found.get(k)!r} there, {provenance.get(k)!r} now" for k in diff[:4])
                raise ValueError(f"the maps in {self.folder} were made with other settings ({shown}); "
                                 "give another --maps folder or the same settings")
        elif self.folder.is_dir() and any(self.folder.glob("*.npy")):
            log.info("%s has maps without %s (e.g. from gfi explain --save-npy): using them as they are",
                     self.folder, META)
        elif create:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = meta.with_name(f"{META}.tmp{os.getpid()}")
            tmp.write_text(json.dumps(provenance, indent=2, sort_keys=True))
            tmp.replace(meta)

    def seconds(self, path: str | Path, cls: int | str) -> float | None:
        """Seconds the stored map took to compute, when recorded."""
        if self._seconds is None:
            self._seconds = {}
            for f in sorted(self.folder.glob("_seconds.*.jsonl")):
                for line in f.read_text().splitlines():
                    try:
                        rec = json.loads(line)
                        self._seconds[rec["file"]] = float(rec["seconds"])
                    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                        log.debug("%s: skipped a cut-off timing line", f)
        return self._seconds.get(self.path(path, cls).name)

    def path(self, path: str | Path, cls: int | str) -> Path:
        return self.folder / map_name(safe_stem(path), cls)

    def load(self, path: str | Path, cls: int | str, size: tuple[int, int]) -> Tensor | None:
        """The map of ``cls`` for image ``path`` at ``size`` = (H, W), or None when not stored."""
        f = self.path(path, cls)
        if not f.is_file():
            return None
        try:
            arr = np.load(f)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{f}: cannot read the map ({exc}); delete it to recompute") from exc
        if arr.shape != tuple(size) or arr.dtype != np.float32:
            raise ValueError(f"{f}: a {arr.dtype} map of shape {arr.shape}, expected float32 {tuple(size)} "
                             "(the image's size); delete it to recompute")
        return torch.from_numpy(arr)

    def save(self, path: str | Path, cls: int | str, saliency: Tensor, seconds: float | None = None) -> Tensor:
        """Store a map (already at the image's size) and the seconds it took; returns it as the
        float32 tensor later loads give."""
        self.folder.mkdir(parents=True, exist_ok=True)
        arr = saliency.detach().cpu().float().clamp(0, 1).numpy().astype(np.float32)
        dest = self.path(path, cls)
        write_npy_atomic(dest, arr)
        if seconds is not None:
            with open(self.folder / f"_seconds.{os.getpid()}.jsonl", "a") as fh:
                fh.write(json.dumps({"file": dest.name, "seconds": seconds}) + "\n")
            if self._seconds is not None:
                self._seconds[dest.name] = seconds
        return torch.from_numpy(arr)
