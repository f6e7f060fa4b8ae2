"""One folder job: explain every image of a list into an output folder, each image's record saved
as soon as it is done, resumable, under the folder's lock (:mod:`gfi.runs`, :mod:`gfi.persist`).

The job reads the images a batch at a time (the next batch in a background thread,
:mod:`gfi.data.prefetch`), scores them, explains the images with equally many targets in one call
(:func:`gfi.batching.explain_groups`) and writes each image's outputs (:mod:`gfi.folder.outputs`)
as its group finishes; :mod:`gfi.progress` hears of every step and image.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gfi import evidence
from gfi.data.samples import safe_stem
from gfi.errors import UsageError
from gfi.folder.outputs import ImageWriter, OutputSettings, planned_files
from gfi.folder.targets import (
    Item,
    check_contrastive,
    check_target_memory,
    check_target_specs,
    contrastive,
    resolve_targets,
    target_key,
)
from gfi.persist import FolderLock, WriteError
from gfi.progress import Tracker, tracker

log = logging.getLogger(__name__)

#: how a resumed run is asked for, and a finished one redone, in messages (the command line says
#: "run the same command again" and "pass --overwrite")
AGAIN = "call explain_folder again with the same arguments"
REDO = "pass overwrite=True to redo them"
#: results.json is rewritten along the way at most this often (seconds)
SUMMARY_EVERY = 10.0


class Interrupted(KeyboardInterrupt):
    """A folder job stopped by Ctrl-C (or what a caller turns into it): ``results.json`` and
    ``report.html`` list the ``done`` of ``total`` images saved in ``out``; the same call resumes."""

    def __init__(self, done: int, total: int, out: Path, again: str = AGAIN) -> None:
        super().__init__(f"interrupted: {done} of {total} images are done and saved in {out}; {again} to finish")
        self.done, self.total, self.out = done, total, out


@dataclass
class FolderResult:
    """What a folder job left in ``out``: ``summary`` is ``results.json``'s content (``images``:
    the records of the images explained, this call or an earlier one; ``failures``: the images
    that could not be, each with its one-line reason); ``explained``: images explained by this
    call; ``resumed``: whether an earlier run's records were kept."""

    out: Path
    summary: dict
    results: Path
    report: Path
    explained: int = 0
    resumed: bool = False

    @property
    def images(self) -> list[dict]:
        return self.summary["images"]

    @property
    def failures(self) -> list[dict]:
        return self.summary["failures"]


@contextmanager
def folder_lock(out: Path) -> Iterator[FolderLock]:
    """The output folder checked (a file in the way, a read-only place, a full disk: refused before
    any work) and its lock, taken at once when the folder exists (a second run is refused before
    it loads a model); :meth:`FolderJob.open` takes it for a new folder once everything is known good."""
    from gfi.persist import check_folder

    check_folder(out)
    with FolderLock(out, eager=False) as lock:
        if out.is_dir():
            lock.acquire()
        yield lock


def version() -> str:
    """``gfi VERSION (torch VERSION)``, as ``gfi --version`` says (read here from the installed
    distribution: the package ``gfi`` imports this module, so this module cannot import it)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        ours = installed("gfi-explain")
    except PackageNotFoundError:  # a source tree on sys.path, not installed
        ours = "0+unknown"
    try:
        theirs = installed("torch")  # the distribution's version, as gfi --version reads it without importing torch
    except PackageNotFoundError:
        theirs = torch.__version__
    return f"gfi {ours} (torch {theirs})"


def finite_rows(output, n: int) -> list[bool]:
    """Whether each of the ``n`` images' outputs is finite: rows of a tensor, or each image's dict of
    tensors (torchvision's detections)."""
    if isinstance(output, torch.Tensor):
        return torch.isfinite(output.reshape(n, -1)).all(1).tolist()
    if isinstance(output, list | tuple) and len(output) == n:
        return [all(bool(torch.isfinite(v).all()) for v in (d.values() if isinstance(d, dict) else [d])
                    if isinstance(v, torch.Tensor) and v.is_floating_point()) for d in output]
    return [True] * n


@dataclass
class FolderJob:
    """The state of one folder job: what to explain, with what, and where it goes. Made by
    :meth:`open`; run by :meth:`execute`; a context manager that closes the folder."""

    paths: list[Path]
    out: Path
    explainer: Any
    info: dict
    run: Any  # gfi.runs.RunFolder
    writer: ImageWriter
    target: list[str] | None = None
    per_image: dict[Path, list[str]] = field(default_factory=dict)
    batch_size: int = 4
    prefetch: bool = True
    preset: str | None = None
    again: str = AGAIN
    redo: str = REDO
    contrastive: float | None = None  # beta of --contrastive: each image's classes against the others
    t_start: float = field(default_factory=time.time)
    progress: Tracker = field(default_factory=lambda: tracker(None, ""))  # silent until execute()

    @classmethod
    def open(cls, paths: Sequence[Path], out: Path, explainer, info: dict, lock: FolderLock, *,
             target: list[str] | None = None, per_image: dict[Path, list[str]] | None = None,
             outputs: OutputSettings | None = None, overwrite: bool = False, batch_size: int = 4,
             prefetch: bool = True, preset: str | None = None, again: str = AGAIN, redo: str = REDO,
             contrastive: float | None = None) -> FolderJob:
        """Check the targets (names, and their number against memory), then open ``out`` (made and
        locked now when it is new): nothing is written before every argument is known to be good."""
        from gfi.runs import RunFolder

        paths, per_image, outputs = list(paths), dict(per_image or {}), outputs or OutputSettings()
        clf = explainer.classifier
        check_target_specs(list(dict.fromkeys(c for p in paths for c in (per_image.get(p) or target or ["top1"]))), clf)
        if contrastive is not None:
            check_contrastive(contrastive, [per_image.get(p) or target or ["top1"] for p in paths], clf)
        check_target_memory(clf, [per_image.get(p) or target or ["top1"] for p in paths],
                            batch=min(batch_size, len(paths)), max_side=outputs.max_side)
        arguments = {
            "inputs": [str(p.resolve()) for p in paths], "model": info, **explainer.provenance(),
            "run_options": explainer.options.to_dict(),
            "inversion_layer": str(clf.inversion_layer), "channel_layer": str(clf.channel_layer),
            "multilabel": bool(clf.multilabel), "target": target,
            "targets": {str(p): v for p, v in per_image.items()} or None, **vars(outputs)}
        if contrastive is not None:  # (absent otherwise: folders of earlier runs resume)
            arguments["contrastive"] = float(contrastive)
        out.mkdir(parents=True, exist_ok=True)
        lock.acquire()
        run = RunFolder(out, arguments, overwrite=overwrite, keys=[safe_stem(p) for p in paths])
        log.debug("model %s (weights %s), method %s, l0=%s, l1=%s, device %s; %d input(s); output in %s",
                  info.get("model"), info.get("weights"), explainer.name, clf.inversion_layer, clf.channel_layer,
                  clf.device, len(paths), out)
        return cls(paths, out, explainer, info, run, ImageWriter(run, clf, outputs, explainer.name, explainer), target,
                   per_image, batch_size, prefetch, preset, again, redo, contrastive)

    def __enter__(self) -> FolderJob:
        return self

    def __exit__(self, *exc) -> None:
        self.run.close()

    # ------------------------------------------------------------------------------------------
    @property
    def keys(self) -> list[str]:
        return [safe_stem(p) for p in self.paths]

    @property
    def settings(self) -> OutputSettings:
        return self.writer.settings

    def todo(self) -> list[Path]:
        """The images without a finished record (all of them in a new folder)."""
        done = self.run.finished()
        return [p for p, k in zip(self.paths, self.keys, strict=True) if k not in done]

    def specs(self, p: Path) -> list[str]:
        return self.per_image.get(p) or self.target or ["top1"]

    def summary(self, complete: bool) -> dict:
        recs = self.run.records(self.keys)
        e = self.explainer
        clf = e.classifier
        return {
            "gfi_version": version(), "torch": torch.__version__, "model": self.info, "method": e.name,
            "preset": self.preset or ("default" if e.presets else None),
            "config": e.config.to_dict(), "run_options": e.options.to_dict(), "contrastive": self.contrastive,
            "inversion_layer": str(clf.inversion_layer), "channel_layer": str(clf.channel_layer),
            "device": str(clf.device), "seed": getattr(e.config, "seed", None),
            "seconds_total": round(time.time() - self.t_start, 3), "complete": complete,
            "evidence_check": evidence.description(),
            "evidence_failures": sum(1 for r in recs if r["status"] == "ok" for t in r["targets"]
                                     if t.get("evidence", {}).get("holds") is False),
            "images": [r for r in recs if r["status"] == "ok"],
            "failures": [{"image": r["image"], "error": r["error"]} for r in recs if r["status"] == "failed"],
        }

    def finish(self, complete: bool) -> tuple[dict, Path]:
        """results.json, then report.html (both atomically)."""
        from gfi.viz.report import render_report

        final = self.summary(complete)
        path = self.run.write_results(final)
        self.run.write_report(render_report(final, self.run.out, title=f"gfi explain: {self.run.out.name}"))
        return final, path

    def execute(self, progress: Tracker | None = None) -> FolderResult:
        """Explain the images without a finished record (all of them in a new folder). Ctrl-C:
        the summary of what is done is saved, then :class:`Interrupted`; a write that fails (a full
        disk, a folder turned read-only): the summary too, then a one-line :class:`UsageError`."""
        if progress is not None:
            self.progress = progress
        todo = self.todo()
        if not todo:
            log.warning("nothing to do: all %d images are already explained in %s (%s)", len(self.paths), self.out,
                        self.redo)
        elif self.run.resuming:
            log.info("resuming the run in %s: %d of %d images are done, %d to go", self.out,
                     len(self.paths) - len(todo), len(self.paths), len(todo))
        try:
            ready = self.precheck(todo)
            explained = self.loop(ready, len(self.paths) - len(ready)) if ready else 0
            final, path = self.finish(True)
        except KeyboardInterrupt:
            try:
                final, _ = self.finish(False)
            except WriteError as exc:
                raise self.write_failed(exc) from None
            raise Interrupted(len(final["images"]), len(self.paths), self.out, self.again) from None
        except WriteError as exc:
            raise self.write_failed(exc) from None
        if final["failures"]:
            log.warning("%d image(s) not explained, listed under `failures` in %s", len(final["failures"]), path)
        return FolderResult(self.out, final, path, self.out / "report.html", explained,
                            len(todo) < len(self.paths))

    def write_failed(self, exc: WriteError) -> UsageError:
        """The one-line error of a write that failed (a full disk, a folder turned read-only), after
        saving what can still be saved: says what is saved and that the same call resumes."""
        try:
            self.finish(False)
            saved = "results.json and report.html list them"
        except (WriteError, OSError) as again:
            log.debug("the summary could not be written either: %s", again)
            saved = "their records are in records/"
        n = len(self.run.finished())
        done = f"{n} of {len(self.paths)} images are done and saved ({saved})"
        if exc.kind == "full":
            return UsageError(f"the disk holding {self.out} is full: {done}; free some space and {self.again} to "
                              "finish")
        fix = "make it writable" if exc.kind == "readonly" else "fix that"
        return UsageError(f"{exc}: {done}; {fix} and {self.again} to finish")

    def precheck(self, todo: list[Path]) -> list[Path]:
        """Before any work: an image whose output names are known without the model's scores (every
        image's input thumbnail and stage-1 files; all of them when its classes are given by index
        or name) and hold a file gfi did not write is skipped, with the fix. Returns the others."""
        from gfi.persist import OutputFolderError

        keep = []
        for p in todo:
            specs = self.specs(p)
            classes = ([] if any(re.fullmatch(r"top\d+", s.strip().lower()) for s in specs)
                       else resolve_targets(specs, self.explainer.classifier, None))  # no topK: no scores needed
            try:
                self.run.check_free(self.planned(p, classes))
                keep.append(p)
            except OutputFolderError as exc:
                self.fail(p, str(exc), count=False)
        return keep

    def planned(self, p: Path, items: list[Item]) -> list[str]:
        return planned_files(safe_stem(p), [target_key(t) for t in items], self.explainer.has_stage1,
                             self.settings.save_npy, self.settings.method_tag)

    def explainable(self, p: Path, items: list[Item]) -> list:
        """What the method is given for one image's targets: as resolved, or with ``contrastive``
        each class against the image's other classes."""
        return items if self.contrastive is None else contrastive(items, self.contrastive, str(p))

    # ------------------------------------------------------------------------------------------
    def loop(self, todo: list[Path], n_done: int) -> int:
        """Explain ``todo`` batch by batch; each image's record is stored as soon as it is finished,
        and the summary is rewritten every 10 s. The next batch is read while this one is explained
        (``prefetch=False``: in turn). Returns how many images were explained."""
        from gfi.batching import chunked
        from gfi.data.prefetch import prefetched

        last_summary = time.time()
        explained = 0
        self.progress.start(len(self.paths), n_done)
        try:
            for images, ok, failed in prefetched(self.read, chunked(todo, self.batch_size), self.prefetch):
                explained += self.batch(images, ok, failed)
                if time.time() - last_summary > SUMMARY_EVERY:  # a readable summary along the way
                    self.run.write_results(self.summary(False))
                    last_summary = time.time()
        finally:
            self.progress.end()
        return explained

    def read(self, chunk: list[Path]) -> tuple[list, list[Path], list[tuple[Path, str]]]:
        """The decoded images of one batch, their paths, and (path, message) for each unreadable one.
        Runs in the prefetch thread: it touches nothing the main thread changes."""
        from gfi.data.images import ImageLoadError, load_image

        images, ok, failed = [], [], []
        for p in chunk:
            try:
                images.append(load_image(p, max_side=self.settings.max_side,
                                      channels=self.explainer.classifier.channels))
                ok.append(p)
            except ImageLoadError as exc:
                failed.append((p, str(exc)))
        return images, ok, failed

    def batch(self, images: list, ok: list[Path], failed: list[tuple[Path, str]]) -> int:
        """Score and explain one batch of read images; unreadable ones become failures. Returns how
        many images were explained."""
        for p, message in failed:
            self.fail(p, message)
        if not ok:
            return 0
        clf = self.explainer.classifier
        x = clf.prepare(images).to(clf.device)
        with torch.no_grad():
            out = clf(x)
        if clf.task == "classification":  # class scores (anything else is refused here, in one line)
            probs = clf.scores(out.float() if isinstance(out, torch.Tensor) else out)
            finite = torch.isfinite(out).all(1).tolist()
        else:  # a segmentation or detection output: no class ranking of the image
            probs, finite = [None] * len(ok), finite_rows(out, len(ok))
        targets: dict[int, list[Item]] = {}
        for j, fine in enumerate(finite):
            if not fine:
                self.fail(ok[j], f"{ok[j]}: the model's output for this image contains NaN or inf, so there is "
                                 "nothing to explain; check the weights (--weights)")
                continue
            targets[j] = resolve_targets(self.specs(ok[j]), clf, probs[j], tuple(images[j].shape[-2:]))
        return self.explain_rows(x, ok, images, probs, targets)

    def explain_rows(self, x, paths, images, probs, targets: dict[int, list[Item]]) -> int:
        """Explain the rows of ``x`` in ``targets`` (images with equally many targets share one
        call, so GFI's stage 1 runs once per image) and write each image's outputs as its call ends."""
        from gfi.batching import explain_groups

        rows, given = [], []
        for j, t in targets.items():  # a file of the user's in the way: refused before explaining
            try:
                self.run.check_free(self.planned(paths[j], t), key=safe_stem(paths[j]))
                given.append(self.explainable(paths[j], t))  # (--contrastive: top1 and its name are one class)
                rows.append(j)
            except UsageError as exc:
                self.fail(paths[j], str(exc))
        n = 0
        for group, e, seconds in explain_groups(self.explainer, x[rows], given, self.progress):
            checked = evidence.evidence_of(self.explainer, x[[rows[i] for i in group]], e,
                                           [given[i] for i in group]).cpu()
            e = e.cpu()
            for row, i in enumerate(group):
                j = rows[i]
                n += self.write_image(paths[j], images[j], e, row, probs[j], seconds, targets[j], len(group),
                                      checked)
        return n

    def write_image(self, path: Path, image, e, row: int, probs, seconds: float, classes: list[Item],
                    batch_images: int = 1, checked=None) -> int:
        from gfi.persist import OutputFolderError

        key = safe_stem(path)
        self.run.start(key, str(path), self.planned(path, classes))
        try:
            rec = self.writer.write(path, image, e, row, probs, seconds, batch_images, checked,
                                    [target_key(t) for t in classes], [getattr(t, "spec", None) for t in classes])
        except OutputFolderError as exc:
            self.fail(path, str(exc))
            return 0
        self.run.add(key, rec)
        log.debug("%s: explained in %.2f s, record saved", path, seconds)
        self.progress.advance(1, rec)
        return 1

    def fail(self, path: Path, error: str, *, count: bool = True) -> None:
        log.warning("skipped: %s", error)
        rec = {"image": str(path), "status": "failed", "error": error}
        self.run.add(safe_stem(path), rec)
        if count:
            self.progress.advance(1, rec)
