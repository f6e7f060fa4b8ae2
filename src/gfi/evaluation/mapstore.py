"""Saliency maps on disk, shared by ``gfi explain --save-npy`` and ``gfi eval``.

A map is ``<stem>_<class>.npy``: float32 in [0, 1] at the image's original size, ``stem`` from
:func:`gfi.data.samples.safe_stem`. A folder written by ``gfi eval`` also holds ``_maps.json``,
the method, model and settings that made the maps (the explainer's provenance), and
``.gfi-maps.jsonl``, the maps stored under them with the seconds each took (so a metric scoring
cached maps still reports the method's seconds per image); a run with other settings refuses the
folder (maps of one method are never scored as another's), and a map file the manifest does not
list is never served as one of them. A folder without ``_maps.json`` (written by ``gfi explain``)
given with ``--maps`` is read as it is, and never written to.

Cache compatibility lives here (:func:`canonical`): ``_maps.json`` files written by earlier
versions of gfi stay usable. Settings recorded there are read as the values that decide the maps:

* keys that are no longer settings of the method (the run options ``autocast``, ``channels_last``,
  ``stage2_chunk`` that GFI's config held) are dropped: they never decided a map;
* a setting that was for a while an unrecorded run option (GFI's ``early_stop``) and is missing
  from the record cannot be known: it reads as :data:`UNRECORDED`, which equals no value, so the
  maps are refused (except stage-1 maps, which it does not decide); recorded off, the fields only
  it reads (:data:`SWITCHED`) do not count, and the same for GFI's ``rivals`` at 0 and its
  ``rival_*`` fields;
* a setting added since is read as :data:`ADDED` says (the value that reproduces the code before
  it), else as its default;
* the settings of a method other than GFI recorded as ``options`` (its constructor's overrides)
  are read as that method's defaults with those overrides;
* stage 2's optional blur (None: stage 1's) is resolved;
* for maps made by stage 1 alone (``stage2`` off on both sides, e.g. ``gfi-stage1``), the
  settings only stage 2 reads (the fields with ``stage=2`` in their metadata) do not count.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gfi.data.samples import safe_stem
from gfi.errors import SettingsError, UsageError
from gfi.persist import Manifest, OutputFolderError, in_the_way
from gfi.settings import Settings, describe

log = logging.getLogger("gfi")
META = "_maps.json"
#: the manifest of a map store: the maps stored under its ``_maps.json`` (with their seconds)
STORE_MANIFEST = ".gfi-maps.jsonl"
#: the key of ``_maps.json`` that names the manifest (absent in an earlier version's store)
LISTED = "maps_listed_in"

#: settings added to GFI after maps were cached, with the value that reproduces the code before
#: them (None: stage 1's blur); a setting added at its old behaviour needs no entry (its default)
ADDED: dict[str, Any] = {"blur_kernel2": None, "blur_sigma2": None, "keep_others": 0.0,
                         "stage2_step": "absolute", "exclusion": 0.0,
                         "contrast_init": 0.0, "joint": "separate", "rivals": 0}
#: fields an earlier GFI config held that are run options now (they never decided a map)
RETIRED = frozenset({"autocast", "channels_last", "stage2_chunk"})
#: settings that were run options, not recorded, for a while: missing from a record, their value is
#: unknown (the maps may have been made with them on), and they read as UNRECORDED
UNRECORDED_SETTINGS = ("early_stop",)
UNRECORDED = "unrecorded"
#: a switch, its value when off, and the fields only it reads: recorded off, those fields did not
#: decide the maps
SWITCHED: dict[str, tuple[Any, tuple[str, ...]]] = {
    "early_stop": (False, ("early_stop_rule", "early_stop_every", "early_stop_tol", "early_stop_windows",
                           "early_stop_px")),
    "rivals": (0, ("rival_overlap", "rival_init", "rival_min_prob", "rival_keep", "rival_exclusion")),
}
#: optional stage-2 fields whose None means the stage-1 field's value
STAGE2_FALLBACK = {"blur_kernel2": "blur_kernel", "blur_sigma2": "blur_sigma"}


def map_name(stem: str, cls: int | str) -> str:
    """The file name of the map of class ``cls`` for an image with output stem ``stem``."""
    return f"{stem}_{cls}.npy"


def stage2_fields(settings_class: type[Settings]) -> frozenset[str]:
    """The fields only stage 2 reads (``stage=2`` in their metadata)."""
    return frozenset(i.name for i in describe(settings_class) if i.stage == 2)


def _method(name: Any):
    from gfi.methods.registry import METHODS

    return METHODS.get(name) if isinstance(name, str) else None


def canonical(method: str | None, config: Mapping[str, Any]) -> dict[str, Any]:
    """Recorded settings of ``method`` (any version's) as the values that decide its maps: every
    field of its settings class, as the method runs them (see the module's docstring)."""
    cls = _method(method)
    if cls is None:
        return dict(config)
    sc = cls.settings_class
    names = set(sc.names())
    from gfi.methods.base import RunOptions

    dropped = RETIRED | set(RunOptions.names())
    given = {k: v for k, v in config.items() if k in names or k not in dropped}
    for switch, (off, only) in SWITCHED.items():
        if switch in given and type(given[switch]) is type(off) and given[switch] == off:
            given = {k: v for k, v in given.items() if k not in only}
    unknown = [k for k in UNRECORDED_SETTINGS if k in names and k not in config]
    given = {**{k: v for k, v in ADDED.items() if k in names}, **given}
    if set(given) <= names:
        try:  # as the method runs them (a method may fix a setting, e.g. gfi-stage1's stage2)
            settings, _ = cls.resolve(sc(**given), None, {})
            given = settings.to_dict()
        except (SettingsError, TypeError) as exc:  # a value this version refuses: compared as recorded
            log.debug("%s settings %s not readable here (%s); compared as recorded", method, given, exc)
    out = {**_defaults(sc), **given}
    for key, stage1 in STAGE2_FALLBACK.items():
        if key in out and out[key] is None:
            out[key] = out.get(stage1)
    if out.get("stage2") is not False:  # stage-1 maps: no stage-2 setting decided them
        out.update(dict.fromkeys(unknown, UNRECORDED))
    return out


def _defaults(settings_class: type[Settings]) -> dict[str, Any]:
    return {i.name: list(i.default) if isinstance(i.default, tuple) else i.default for i in describe(settings_class)}


def canonical_provenance(provenance: Mapping[str, Any]) -> dict[str, Any]:
    """A recorded provenance (``_maps.json``, or the method part of ``options.json``) with its
    settings read by :func:`canonical`; ``options`` of a method other than GFI (before every method
    recorded its settings) become its ``config``."""
    out = dict(provenance)
    if _method(out.get("method")) is None:
        return out
    if "config" not in out and isinstance(out.get("options"), dict):
        out["config"] = out.pop("options")
    if isinstance(out.get("config"), dict):
        out["config"] = canonical(out["method"], out["config"])
    return out


def _stage1_maps(provenance: Mapping[str, Any]) -> bool:
    """Maps made by stage 1 alone: the settings (as the method runs them) have ``stage2`` off."""
    config = provenance.get("config")
    return isinstance(config, dict) and config.get("stage2") is False


def differing(found: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """The provenance keys (``config.NAME`` for a setting) in which two map stores differ."""
    old, new = canonical_provenance(found), canonical_provenance(now)
    ignore: frozenset[str] = frozenset()
    cls = _method(new.get("method"))
    if cls is not None and _stage1_maps(old) and _stage1_maps(new):
        ignore = stage2_fields(cls.settings_class) | {"stage2"}
    diff = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if k == "config" and isinstance(a, dict) and isinstance(b, dict):
            diff += [f"config.{n}" for n in sorted(set(a) | set(b)) if n not in ignore and a.get(n) != b.get(n)]
        elif a != b:
            diff.append(k)
    return diff


def _value(p: Mapping[str, Any], key: str) -> Any:
    if key.startswith("config.") and isinstance(p.get("config"), dict):
        return p["config"].get(key[len("config."):])
    return p.get(key)


def map_files(folder: Path, keys) -> list[str]:
    """The ``.npy`` files in ``folder`` named as the map of an image of ``keys`` (``<key>_<class>.npy``)."""
    wanted = set(keys)
    out = []
    if not folder.is_dir():
        return out
    with os.scandir(folder) as it:
        for entry in it:
            stem, dot, ext = entry.name.rpartition(".")
            key, _, cls = stem.rpartition("_")
            if dot and ext == "npy" and key in wanted and cls.isdigit():
                out.append(entry.name)
    return sorted(out)


class MapStoreError(UsageError):
    """A map store that cannot serve its maps as they are: malformed, made with other settings, or a
    map unreadable; the message names the file and the fix."""


class MapStore:
    """A folder of maps with the settings that made them.

    ``_maps.json`` holds the settings; the maps made under them are those its manifest
    (``.gfi-maps.jsonl``, a :class:`gfi.persist.Manifest` shared by the runs that use the folder)
    lists, each recorded before it appears, with the seconds it took. The folder and ``_maps.json``
    are made when the first map is stored. A folder of maps without ``_maps.json`` (e.g. from
    ``gfi explain --save-npy``), given with ``--maps``, is read as it is and never written to (maps
    missing there are computed and scored, not stored): no map is ever stored without the settings
    that made it. A ``_maps.json`` of an earlier version (no manifest named in it) serves every map
    in its folder, as it did then."""

    def __init__(self, folder: str | Path, provenance: dict, *, create: bool = True) -> None:
        self.folder = Path(folder)
        self.provenance = provenance
        self.create = create
        self.manifest = Manifest(self.folder, STORE_MANIFEST, shared=True, fix="give another --maps folder")
        self._seconds: dict[str, float] | None = None
        self._said_as_is = False
        self.mode = "new"  # new (no _maps.json yet), store, legacy (an earlier version's), as-is (no settings)
        meta = self.folder / META
        if os.path.lexists(meta):
            self._check(self._read_meta())

    def _read_meta(self) -> dict:
        meta = self.folder / META
        try:
            found = json.loads(meta.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MapStoreError(f"{meta}: malformed ({exc}); delete it to reuse the maps") from exc
        if not isinstance(found, dict):
            raise MapStoreError(f"{meta}: malformed (not a JSON object); delete it to reuse the maps")
        return found

    def _check(self, found: dict) -> None:
        """Refuse a folder whose maps were made with other settings; else serve its maps."""
        listed = found.pop(LISTED, None)
        diff = sorted(differing(found, self.provenance), key=lambda k: k.startswith("config."))  # method first
        if diff:
            old, new = canonical_provenance(found), canonical_provenance(self.provenance)
            unknown = [k.removeprefix("config.") for k in diff if _value(old, k) == UNRECORDED]
            if unknown:
                raise MapStoreError(f"the maps in {self.folder} were made before gfi recorded {', '.join(unknown)} "
                                    "(then a run option, possibly on), so they may not be the maps of these "
                                    f"settings: delete its *.npy and {META} to recompute them, or give another "
                                    "--maps folder")
            shown = "; ".join(f"{k}: {_value(old, k)!r} there, {_value(new, k)!r} now" for k in diff[:4])
            raise MapStoreError(f"the maps in {self.folder} were made with other settings ({shown}); "
                             "give another --maps folder or the same settings")
        self.mode = "store" if listed else "legacy"

    def prepare(self, keys, *, given: bool) -> None:
        """Before any work: decide how the folder serves the maps of ``keys``. A map file there that
        gfi did not store under ``_maps.json`` is refused with the fix, except in a folder without
        ``_maps.json`` given with ``--maps`` (``given``), whose maps are then read as they are."""
        if os.path.lexists(self.folder) and not self.folder.is_dir():
            raise OutputFolderError(f"{self.folder} exists and is not a folder; move it away or give another --maps "
                                    "folder")
        self.manifest.remove_temporaries(every_other_run=False)  # of runs on this host that were killed
        if self.mode == "legacy":
            return
        names = map_files(self.folder, keys)
        if self.mode == "new" and names:
            if given:
                self.mode = "as-is"
                log.info("%s has maps without %s (e.g. from gfi explain --save-npy): using them as they are; maps "
                         "missing there are computed but not stored", self.folder, META)
                return
            raise OutputFolderError(
                f"{self.folder / names[0]} is a map file gfi did not store, and {self.folder} has no {META} saying "
                f"what made its maps; move it away, or pass --maps {self.folder} to score the maps there as they are")
        for n in names:
            if not self.manifest.listed(self.folder / n):
                raise in_the_way(self.folder / n, "give another --maps folder")

    def clear(self) -> None:
        """Delete the maps (and ``_maps.json``) stored here and start afresh (the caller holds the
        lock of the folder's run); files gfi did not store stay."""
        self.manifest.clear()
        self._seconds = None
        self.mode = "new"
        if os.path.lexists(self.folder / META):
            self._check(self._read_meta())

    def _ready(self) -> None:
        """Make the folder and its ``_maps.json`` before the first map is stored."""
        if self.mode != "new":
            return
        meta = self.folder / META
        text = json.dumps({**self.provenance, LISTED: STORE_MANIFEST}, indent=2, sort_keys=True)
        if not self.manifest.create(meta, lambda p: Path(p).write_text(text)):  # another run made it first
            self._check(self._read_meta())
        else:
            self.mode = "store"

    def seconds(self, path: str | Path, cls: int | str) -> float | None:
        """Seconds the stored map took to compute, when recorded."""
        name = self.path(path, cls).name
        for e in reversed(self.manifest.files.get(name, [])):
            if isinstance(e.get("seconds"), int | float):
                return float(e["seconds"])
        if self.mode != "legacy":
            return None
        if self._seconds is None:  # an earlier version's timing files
            self._seconds = {}
            for f in sorted(self.folder.glob("_seconds.*.jsonl")):
                for line in f.read_text().splitlines():
                    try:
                        rec = json.loads(line)
                        self._seconds[rec["file"]] = float(rec["seconds"])
                    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                        log.debug("%s: skipped a cut-off timing line", f)
        return self._seconds.get(name)

    def path(self, path: str | Path, cls: int | str) -> Path:
        return self.folder / map_name(safe_stem(path), cls)

    def load(self, path: str | Path, cls: int | str, size: tuple[int, int]) -> Tensor | None:
        """The map of ``cls`` for image ``path`` at ``size`` = (H, W), or None when not stored."""
        f = self.path(path, cls)
        if self.mode == "new" or not os.path.lexists(f):
            return None
        source: Any = f
        if self.mode == "store":  # only a map stored under _maps.json (read once: checked and loaded)
            data = self.manifest.read(f)
            if data is None:  # a file put there since the run began
                raise in_the_way(f, "give another --maps folder")
            source = io.BytesIO(data)
        try:
            arr = np.load(source)
        except (OSError, ValueError) as exc:
            raise MapStoreError(f"{f}: cannot read the map ({exc}); delete it to recompute") from exc
        if arr.shape != tuple(size) or arr.dtype != np.float32:
            raise MapStoreError(f"{f}: a {arr.dtype} map of shape {arr.shape}, expected float32 {tuple(size)} "
                             "(the image's size); delete it to recompute")
        return torch.from_numpy(arr)

    def save(self, path: str | Path, cls: int | str, saliency: Tensor, seconds: float | None = None) -> Tensor:
        """Store a map (already at the image's size) and the seconds it took; returns it as the
        float32 tensor later loads give. In a folder read as it is, the map is only returned."""
        arr = saliency.detach().cpu().float().clamp(0, 1).numpy().astype(np.float32)
        if self.mode == "as-is" or not self.create:
            if not self._said_as_is:
                self._said_as_is = True
                log.info("maps missing in %s are computed and scored, not stored there", self.folder)
            return torch.from_numpy(arr)
        self._ready()
        dest = self.path(path, cls)
        # one writer per map: another run sharing this store (same settings, checked by _maps.json)
        # may have published it meanwhile; the first one stays, and is what every reader sees
        if self.mode == "legacy" and os.path.lexists(dest):
            made = False
        else:
            made = self.manifest.create(dest, lambda p: np.save(p, arr),
                                        extra=None if seconds is None else {"seconds": seconds})
        if not made:
            log.debug("%s was written by another run meanwhile; keeping it", dest)
            loaded = self.load(path, cls, tuple(arr.shape))
            arr = loaded.numpy() if loaded is not None else arr
        return torch.from_numpy(arr)
