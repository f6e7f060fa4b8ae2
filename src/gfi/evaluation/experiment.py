"""The plug-in API of ``gfi eval``: what one run is (:class:`EvalRun`), and what one metric is
(:class:`Experiment`, with its own typed options, a :class:`gfi.settings.Settings` dataclass).

An experiment says which maps it needs (:meth:`Experiment.targets`), scores one image from them
(:meth:`Experiment.score`) and summarises the per-image lines (:meth:`Experiment.summarize`). The
loop around it (data, maps, records, resume, sharding) is :mod:`gfi.evaluation.loop`; the command
line builds an :class:`EvalRun` and the experiment's options and calls
:func:`gfi.evaluation.loop.run_models`.

Adding an experiment: a module with a subclass (``name``, ``help``, ``options_class``,
``headline_keys`` and the hooks) and its line in :mod:`gfi.evaluation.registry`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from gfi.errors import UsageError
from gfi.models.presets import DEFAULT_MODEL
from gfi.settings import Settings

if TYPE_CHECKING:
    from torch import Tensor

    from gfi.data.samples import Sample
    from gfi.methods.base import RunOptions

DATASET_KINDS = ("auto", "imagenet", "voc", "sod")


class EvalError(UsageError):
    """A problem with the run's options, its data or its output folder (one line, exit code 2)."""


@dataclass(frozen=True)
class EvalRun:
    """What every ``gfi eval`` experiment is run with (the experiment's own options apart).

    Attributes:
        data: the dataset folder (ImageNet val, VOCdevkit, or images/ + masks/).
        out: the output folder (a run with the same options there is resumed).
        method: a method of :data:`gfi.methods.registry.METHODS`; None: the experiment's default.
        dataset: the dataset kind, ``auto`` (from the folder's layout), ``imagenet``, ``voc``, ``sod``.
        split: the VOC split (``ImageSets/Main/<split>.txt``).
        model: a model preset.
        weights: ``default``, ``random``, a checkpoint file (e.g. from ``gfi eval voc-head``).
        allow_pickle: load a full-pickle checkpoint (runs code from the file).
        download: let torchvision download missing weights.
        multilabel: sigmoid scores (the fine-tuned VOC model).
        preset: the method's settings preset (None: ``default``): one of the method's ``preset_names()``.
        overrides: the method's settings by field name; values may be strings (parsed by the field's
            type, as ``--set KEY=VALUE`` gives them). A key of :class:`~gfi.methods.base.RunOptions`
            that is not a setting of the method goes to the run options.
        run_options: how fast the maps are computed (a ``RunOptions`` or its fields by name).
        inversion_layer, channel_layer: l0 and l1 (module names, ``NAME:input``); None: the model's.
        range: ``START:STOP`` of the images in sorted order (Python slice semantics).
        limit: only the first ``limit`` images (after ``range``; 0: all).
        maps: the map store (None: ``out/maps``).
        batch_size: images per forward.
        prefetch: decode and check the next batch's images in a background thread while the current
            batch is explained (``--no-prefetch`` turns it off).
        device: ``auto``, ``cpu`` or ``cuda`` (:func:`gfi.models.device.choose_device`).
        threads: CPU threads for torch (0: from the gfi program, one per free core; from Python, torch's count).
        overwrite: discard the lines and maps of an earlier run in ``out``.
        quiet: no progress bar.
    """

    data: Path
    out: Path
    method: str | None = None
    dataset: str = "auto"
    split: str = "test"
    model: str = DEFAULT_MODEL
    weights: str = "default"
    allow_pickle: bool = False
    download: bool = False
    multilabel: bool = False
    preset: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    run_options: RunOptions | Mapping[str, Any] | None = None
    inversion_layer: str | None = None
    channel_layer: str | None = None
    range: str | None = None
    limit: int = 0
    maps: Path | None = None
    batch_size: int = 8
    prefetch: bool = True
    device: str = "auto"
    threads: int = 0
    overwrite: bool = False
    quiet: bool = False

    def __post_init__(self) -> None:
        for name in ("data", "out", "maps"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        object.__setattr__(self, "weights", str(self.weights))
        object.__setattr__(self, "overrides", dict(self.overrides or {}))
        if self.dataset not in DATASET_KINDS:
            raise EvalError(f"--dataset {self.dataset!r}: choose one of {', '.join(DATASET_KINDS)}")
        for name, low in (("batch_size", 1), ("limit", 0), ("threads", 0)):
            if getattr(self, name) < low:
                raise EvalError(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(self, name)}")
        from gfi.models.device import available_cpus

        if self.threads > available_cpus():
            raise EvalError(f"--threads {self.threads}: gfi may use {available_cpus()} CPU core(s) here; give at most "
                            f"{available_cpus()} (or 0 for torch's default)")

    def replace(self, **changes: Any) -> EvalRun:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values (paths as strings; run options as their fields)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Settings):
                v = v.to_dict()
            out[f.name] = jsonable(v)
        return out


def jsonable(v: Any) -> Any:
    """Paths as strings, tuples as lists, mappings as dicts, recursively."""
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, Mapping):
        return {k: jsonable(x) for k, x in v.items()}
    return v


@dataclass(frozen=True)
class NoOptions(Settings):
    """The options of an experiment that has none of its own."""


class Experiment:
    """One metric: which maps it needs, how it scores an image, how it summarises the lines.

    Every hook gets the run's :class:`EvalRun` and the experiment's options (an instance of
    :attr:`options_class`), directly or through the loop's context (``ctx.run``, ``ctx.opts``);
    never parsed command-line arguments. Experiments hold no state (``ctx.cache`` is per run)."""

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    default_method: ClassVar[str] = "gfi"
    needs_model: ClassVar[bool] = False  # scoring itself runs the model (deletion, adversarial, sanity)
    datasets: ClassVar[tuple[str, ...]] = ("imagenet", "voc", "sod")
    options_class: ClassVar[type[Settings]] = NoOptions
    headline_keys: ClassVar[tuple[str, ...]] = ()  # the summary's keys printed by headline()
    outputs: ClassVar[tuple[str, ...]] = ()  # files summarize() writes in run.out (checked before any work)

    def options(self, overrides: Mapping[str, Any] | None = None, **more: Any) -> Settings:
        """The experiment's options: the defaults with ``overrides`` (strings parsed by field type)."""
        return self.options_class().with_overrides(overrides, **more)

    def record_options(self, opts: Any) -> dict:
        """The options that shape the per-image lines (kept in ``options.json``; a rerun with others
        is refused). Options that only change the summary are left out."""
        return {}

    def setup(self, run: EvalRun, opts: Any, classifier: Any = None,
              info: dict | None = None) -> tuple[Any, Any, dict | None]:
        """(dataset, classifier, info) the loop runs on: by default the folder's dataset
        (:func:`gfi.data.datasets.open_dataset`) and the given model (None: the run's, loaded on
        first use). An experiment whose samples are made from the folder (``grid``: 2x2 grids of
        its images, fed at twice the model's input size) returns its own dataset and model."""
        from gfi.data.datasets import open_dataset

        return open_dataset(run.data, run.dataset, run.split), classifier, info

    def write_inputs(self, run: EvalRun, dataset: Any, manifest: Any) -> None:
        """Write the files of ``dataset`` that live in ``run.out`` (``grid``: its grid images and
        ``grids.json``). Called once, on rank 0, under the folder's lock and after ``--overwrite``
        has cleared what gfi wrote; every file goes through ``manifest``
        (:class:`gfi.persist.Manifest`), which refuses a file of the user's at its name. ``setup``
        itself writes nothing: a refusal there leaves the folder as it was."""
        return None

    def check(self, run: EvalRun, opts: Any, dataset: Any) -> None:
        if dataset.kind not in self.datasets:
            raise EvalError(f"{self.name} needs a dataset of kind {' or '.join(self.datasets)}; "
                            f"{run.data} is {dataset.kind}")

    def check_sample(self, sample: Sample, image: Tensor) -> None:
        return None

    def targets(self, sample: Sample, opts: Any) -> list[int] | None:
        """Classes to map (None: the model's top-1): the image's label, unless the experiment's
        options have ``target="top1"``."""
        if getattr(opts, "target", "label") == "top1":
            return None
        return sample.classes[:1] or None

    def target_key(self, opts: Any) -> dict | None:
        """What a map's target is beyond its class, when it is more (e.g. ``grid --contrastive``: the
        class against the grid's other classes): recorded with the method's settings, so the map
        store keys on it and never serves a map made for another target. None: each map is of its
        class alone."""
        return None

    def method_targets(self, opts: Any, classes: list[int]) -> list[Any] | None:
        """The targets the method is given for one image's ``classes`` (a :mod:`gfi.targets` target
        per class, in order; the maps stay keyed by class). None: the class indices themselves.
        Must agree with :meth:`target_key`."""
        return None

    def batch_extras(self, ctx: Any, samples: list[Sample], images: list[Tensor], x: Tensor | None,
                     targets: list[list[int]]) -> tuple[Any, float]:
        """Work shared by a batch (e.g. attacked images); returns (extra, seconds of method time)."""
        return None, 0.0

    def score(self, ctx: Any, sample: Sample, image: Tensor, maps: dict[int, Tensor], j: int, extra: Any) -> dict:
        """One image's line from its maps (``ctx`` is the loop's :class:`~gfi.evaluation.loop.Context`)."""
        raise NotImplementedError

    def summarize(self, records: list[dict], run: EvalRun, opts: Any) -> dict:
        """The summary's metric keys from the lines of the scored images (plots go to ``run.out``)."""
        raise NotImplementedError

    def headline(self, summary: dict) -> str:
        """The one line ``gfi eval`` prints for a finished run."""
        s = summary
        parts = [f"{k}={s[k]:.4g}" if isinstance(s.get(k), float) else f"{k}={s.get(k)}" for k in self.headline_keys]
        sec = s.get("seconds_per_image")
        return (f"{self.name} {s['method']} on {s['model']}: " + " ".join(parts)
                + f" n_images={s['n_images']} failed={s['n_failed']}"
                + (f" s/img={sec:.3g}" if sec is not None else ""))
