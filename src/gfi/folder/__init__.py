"""Explain a folder of images into an output folder: :func:`explain_folder`, what ``gfi explain``
runs.

For each image: an overlay per target (``STEM_CLASS.png``; another method than gfi:
``STEM_METHOD_CLASS.png``), with ``save_npy`` its map as float32 ``.npy`` at the image's size, and
its record, which carries the map's evidence check (:mod:`gfi.evidence`: whether the map holds its
class's evidence; a map that does not is one warning line with what to try and a marked row of the
report); for the run ``results.json`` (every record in input order) and ``report.html``. Each
image's record is saved as soon as it is done, so a job stopped by Ctrl-C, a kill or a full disk
resumes where it stopped when called again with the same arguments; other arguments on a folder
that holds a run are refused unless ``overwrite=True``; gfi replaces or deletes only the files it
wrote there, and one job at a time holds the folder (:mod:`gfi.runs`, :mod:`gfi.persist`).

Parts: :mod:`gfi.folder.job` (the job), :mod:`gfi.folder.outputs` (one image's files and record),
:mod:`gfi.folder.targets` (inputs and target specs).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gfi.folder.job import FolderJob, FolderResult, Interrupted
    from gfi.methods.base import Explainer
    from gfi.models.classifier import Classifier
    from gfi.progress import ProgressLike

__all__ = ["FolderJob", "FolderResult", "Interrupted", "explain_folder"]

PathLike = str | os.PathLike
TargetSpec = str | int


def explain_folder(
    inputs: PathLike | Iterable[PathLike],
    out: PathLike = "gfi-out",
    *,
    method: str | Explainer = "gfi",
    model: str | Classifier | None = None,
    targets: TargetSpec | Iterable[TargetSpec] | Mapping[PathLike, TargetSpec | Iterable[TargetSpec]] | None = None,
    contrastive: float | None = None,
    preset: str | None = None,
    save_npy: bool = False,
    overwrite: bool = False,
    cmap: str = "jet",
    colorbar: bool = False,
    max_side: int = 4096,
    batch_size: int = 4,
    prefetch: bool = True,
    progress: ProgressLike = None,
    model_info: dict | None = None,
    **settings: Any,
) -> FolderResult:
    """Explain the images ``inputs`` (files, or folders of images: not recursive) into ``out``, as
    ``gfi explain`` does, and return the :class:`~gfi.folder.job.FolderResult`.

    Args:
        method: a method's name (``gfi methods``) or an :class:`~gfi.methods.base.Explainer` already
            made (then ``model``, ``preset`` and ``settings`` are its own).
        model: a preset's or model source's name (loaded with :func:`gfi.load_model`, on the CPU;
            default ``efficientnet_lite0``) or a :class:`~gfi.models.classifier.Classifier` (it runs
            where it is: ``clf.to("cuda")`` first for a GPU).
        targets: None (each image's top-1 class); a spec for every image (``"top5"``, a class name,
            an index; or one score of the output: ``"logit:243"``, ``"softmax:tabby"``,
            ``"sigmoid:3"``, ``"output:0,2"``) or a list of them; or a mapping from an image (its
            path, file name or stem) to its spec(s).
        contrastive: beta: explain each image's classes each against the others
            (:meth:`gfi.targets.Contrastive.among`: y_c - beta x the mean of the other targets'
            logits), for any method; needs two classes or more per image. None: each as asked.
        preset, settings: the method's settings preset and settings (``gamma=5``, ``iters2=40``)
            and run options (:class:`~gfi.methods.base.RunOptions` fields, e.g. ``chunk=2``).
        save_npy: also write each map as float32 ``.npy`` in [0, 1] at the image's size.
        overwrite: start afresh: delete the files gfi wrote in ``out`` (no other file).
        cmap, colorbar: the overlays' colour map and bar; ``max_side``: longer images are reduced
            to this many pixels when read.
        batch_size: images explained together; ``prefetch``: read the next batch in a background
            thread meanwhile.
        progress: None or False (silent), True (bars on a terminal, plain lines in a log), or a
            callable taking a :class:`gfi.progress.Progress`.
        model_info: what ``results.json`` records of the model (default: what
            :func:`gfi.load_model` returned, or the classifier's name).

    Raises :class:`~gfi.folder.job.Interrupted` (a ``KeyboardInterrupt``) on Ctrl-C once what is
    done is saved, and a :class:`~gfi.errors.GFIError` with a one-line message for bad arguments
    (before anything is written), a folder that holds another run, or a failed write. Images that
    cannot be explained are listed in ``result.failures``, not raised.

    >>> result = gfi.explain_folder("photos/", "maps", method="gradcam", targets="top2")  # doctest: +SKIP
    >>> [t["overlay"] for r in result.images for t in r["targets"]]                         # doctest: +SKIP
    """
    from gfi.folder.job import FolderJob, folder_lock
    from gfi.folder.outputs import OutputSettings, method_tag
    from gfi.folder.targets import target_specs
    from gfi.progress import tracker

    out = Path(out)
    check_output_options(batch_size=batch_size, max_side=max_side, cmap=cmap)
    paths = folder_inputs(inputs)
    target, per_image = target_specs(targets, paths)
    with folder_lock(out) as lock:
        explainer, info = _explainer(method, model, preset, settings, model_info)
        outputs = OutputSettings(save_npy=save_npy, cmap=cmap, colorbar=colorbar, max_side=max_side,
                                 method_tag=method_tag(explainer.name))
        job = FolderJob.open(paths, out, explainer, info, lock, target=target, per_image=per_image, outputs=outputs,
                             overwrite=overwrite, batch_size=batch_size, prefetch=prefetch, preset=preset,
                             contrastive=contrastive)
        with job:
            return job.execute(tracker(progress, explainer.name))


def folder_inputs(inputs: PathLike | Iterable[PathLike]) -> list[Path]:
    """The image files of ``inputs`` (files, or folders: their images, sorted), each file once; two
    files with the same output name are refused (:func:`gfi.folder.targets.unique_inputs`)."""
    from gfi.data.images import ImageLoadError, find_images
    from gfi.errors import UsageError
    from gfi.folder.targets import unique_inputs

    items = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    try:
        return unique_inputs(find_images(items))
    except ImageLoadError as exc:
        raise UsageError(str(exc)) from exc


def check_output_options(*, batch_size: int, max_side: int, cmap: str) -> None:
    """Refused before any work: a batch size below 1, ``max_side`` below 32, an unknown colour map."""
    from gfi.errors import UsageError
    from gfi.viz.overlay import colormap

    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    if max_side < 32:
        raise UsageError(f"--max-side must be >= 32 pixels, got {max_side}")
    colormap(cmap)


def _explainer(method, model, preset: str | None, settings: dict, model_info: dict | None):
    """(explainer, model info) of :func:`explain_folder`'s arguments (the model loaded if named)."""
    from gfi.errors import UsageError
    from gfi.methods.base import Explainer
    from gfi.methods.registry import get_method
    from gfi.models.classifier import Classifier
    from gfi.models.presets import DEFAULT_MODEL, load_model

    if isinstance(method, Explainer):
        if preset is not None or settings or (model is not None and model is not method.classifier):
            raise UsageError("method is an explainer already made: its model and settings are its own; give them "
                             "when making it, not here")
        return method, model_info or {"model": method.classifier.name}
    if isinstance(model, Classifier):
        clf, info = model, {"model": model.name}
    else:
        clf, info = load_model(model or DEFAULT_MODEL)
    return get_method(method, clf, preset, **settings), model_info or info


def __getattr__(name: str):
    if name in ("FolderJob", "FolderResult", "Interrupted"):
        from gfi.folder import job

        return getattr(job, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
