"""``gfi explain IMAGE...``: maps for files or folders, written as overlays, ``.npy``, ``results.json``
and ``report.html``; an interrupted run resumes with the same command (:mod:`gfi.runs`)."""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gfi.cli import common
from gfi.cli.outputs import ImageWriter, OutputSettings, planned_files
from gfi.cli.targets import (
    check_target_memory,
    check_target_specs,
    match_csv_to_inputs,
    read_targets_csv,
    resolve_targets,
    unique_inputs,
)
from gfi.data.names import printable
from gfi.data.samples import safe_stem
from gfi.errors import UsageError
from gfi.persist import WriteError

log = logging.getLogger("gfi")


def add_parser(sub, argv: Sequence[str]) -> argparse.ArgumentParser:
    ex = sub.add_parser("explain", help="explain images; writes overlays, .npy maps, results.json and report.html",
                        description="Explain the predictions for IMAGE... (files or folders). Each image's record is "
                                    "saved as soon as it is done: rerunning the same command on the same --out "
                                    "resumes an interrupted run (see docs/RELIABILITY.md). The settings shown are "
                                    "those of --method (gfi unless given): `gfi explain --method NAME --help`.")
    g = ex.add_argument_group("input")
    g.add_argument("images", nargs="*", help=f"image files or folders (default: the bundled photo "
                                             f"{common.DEMO_IMAGE.name})")
    g.add_argument("--target", action="append", default=None,
                   help="class to explain: top1 (default), topK (e.g. top5), an index or a class name; repeatable")
    g.add_argument("--targets", type=Path,
                   help="CSV of `image,class` lines: a class per image (repeat a line for more)")
    g.add_argument("--max-side", type=int, default=4096,
                   help="images with a longer side are reduced to this many pixels when read (default: 4096)")
    common.add_model_arguments(ex)
    o = ex.add_argument_group("output")
    o.add_argument("--out", type=Path, default=Path("gfi-out"), help="output folder (default: gfi-out)")
    o.add_argument("--save-npy", action="store_true",
                   help="also save maps as float32 .npy in [0,1] at the image's size")
    o.add_argument("--overwrite", action="store_true",
                   help="start afresh in --out: delete the files gfi wrote there (as its list of them proves; a file "
                        "gfi did not write is never replaced or deleted); without it the same arguments resume the "
                        "run and other arguments are refused")
    o.add_argument("--cmap", default="jet", help="matplotlib colour map, e.g. cividis (colour-blind safe)")
    o.add_argument("--colorbar", action="store_true", help="draw a colour bar on overlays")
    common.add_log_arguments(o)
    m = ex.add_argument_group("method")
    m.add_argument("--method", default=common.DEFAULT_METHOD,
                   help="explanation method (`gfi methods`; default: gfi)")
    speed = common.add_method_arguments(ex, common.methods_in_argv(argv), group=m)
    common.add_device_arguments(ex, speed)
    speed.add_argument("--batch-size", type=int, default=4, help="images per batch (default: 4)")
    speed.add_argument("--no-prefetch", dest="prefetch", action="store_false",
                       help="read each batch's images only when it is its turn (default: the next batch is decoded "
                            "in a background thread while the current one is explained)")
    ex.set_defaults(handler=run)
    return ex


def run(args: argparse.Namespace) -> int:
    from gfi.persist import FolderLock, check_folder

    _check_options(args)
    paths, per_image = _inputs(args)
    check_folder(args.out)  # an existing file, a read-only place, a full disk: before the model loads
    with FolderLock(args.out, eager=False) as lock:  # one writer per output folder: a second run is refused
        if args.out.is_dir():
            lock.acquire()  # at once; a new folder is made (and locked) once the arguments are known good
        try:
            job = ExplainJob.create(args, paths, per_image, lock)
        except KeyboardInterrupt:  # model loading; nothing is written before the job exists
            print("gfi: interrupted before any image was explained", file=sys.stderr)
            return 130
        try:
            return job.execute()
        finally:
            job.run.close()


def _check_options(args: argparse.Namespace) -> None:
    from gfi.methods.registry import METHODS
    from gfi.viz.overlay import colormap

    if args.quiet and args.verbose:
        raise UsageError("--quiet and --verbose conflict; give one of them")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.max_side < 32:
        raise UsageError(f"--max-side must be >= 32 pixels, got {args.max_side}")
    if args.target and args.targets:
        raise UsageError("--target and --targets conflict: give classes on the command line or in the CSV, not both")
    if args.method not in METHODS:
        raise UsageError(f"unknown method {args.method!r}; valid methods: {', '.join(METHODS)}")
    colormap(args.cmap)  # an unknown --cmap: refused before the model loads, not at the first overlay


def _inputs(args: argparse.Namespace) -> tuple[list[Path], dict[Path, list[str]]]:
    from gfi.data.images import ImageLoadError, find_images

    try:
        paths = find_images(args.images) if args.images else [common.DEMO_IMAGE]
    except ImageLoadError as exc:
        raise UsageError(str(exc)) from exc
    paths = unique_inputs(paths)
    per_image = match_csv_to_inputs(read_targets_csv(args.targets), paths) if args.targets else {}
    return paths, per_image


@dataclass
class ExplainJob:
    """The state of one ``gfi explain`` run: what to explain, with what, and where it goes."""

    args: argparse.Namespace
    paths: list[Path]
    per_image: dict[Path, list[str]]
    clf: object
    info: dict
    explainer: object
    run: object
    device: torch.device
    writer: ImageWriter
    explained: list[dict] = field(default_factory=list)
    t_start: float = field(default_factory=time.time)

    @classmethod
    def create(cls, args: argparse.Namespace, paths: list[Path], per_image: dict[Path, list[str]],
               lock) -> ExplainJob:
        """Check the settings, load the model, open the output folder (in that order: nothing is
        written before every argument is known to be good)."""
        from gfi.runs import RunFolder

        given = common.given_settings(args)
        # a setting the method lacks, or a bad value: refused before the model loads
        common.resolve_settings(args.method, preset=getattr(args, "preset", None), given=given)
        common.apply_threads(args.threads)
        device = common.choose_device(args.device)
        clf, info = common.load_classifier(args, device)
        explainer = common.make_explainer(args.method, clf, preset=args.preset if "preset" in args else None,
                                          given=given)
        check_target_specs([*(args.target or []), *(c for v in per_image.values() for c in v)], clf)
        check_target_memory(clf, [per_image.get(p) or args.target or ["top1"] for p in paths],
                            batch=min(args.batch_size, len(paths)), max_side=args.max_side)
        outputs = OutputSettings(save_npy=args.save_npy, cmap=args.cmap, colorbar=args.colorbar,
                                 max_side=args.max_side,
                                 method_tag="" if explainer.name == common.DEFAULT_METHOD else explainer.name)
        arguments = {
            "inputs": [str(p.resolve()) for p in paths], "model": info, **explainer.provenance(),
            "run_options": explainer.options.to_dict(),
            "inversion_layer": str(clf.inversion_layer), "channel_layer": str(clf.channel_layer),
            "multilabel": bool(clf.multilabel), "target": args.target,
            "targets": {str(p): v for p, v in per_image.items()} or None, **vars(outputs)}
        args.out.mkdir(parents=True, exist_ok=True)
        lock.acquire()
        run = RunFolder(args.out, arguments, overwrite=args.overwrite, keys=[safe_stem(p) for p in paths])
        log.debug("model %s (weights %s), method %s, l0=%s, l1=%s, device %s; %d input(s); output in %s",
                  info.get("model"), info.get("weights"), args.method, clf.inversion_layer, clf.channel_layer,
                  device, len(paths), args.out)
        writer = ImageWriter(run, clf, outputs, explainer.name)
        return cls(args, paths, per_image, clf, info, explainer, run, device, writer)

    # ------------------------------------------------------------------------------------------
    @property
    def keys(self) -> list[str]:
        return [safe_stem(p) for p in self.paths]

    def summary(self, complete: bool) -> dict:
        recs = self.run.records(self.keys)
        e = self.explainer
        return {
            "gfi_version": common.version(), "torch": torch.__version__, "model": self.info, "method": e.name,
            "preset": getattr(self.args, "preset", None) or ("default" if e.presets else None),
            "config": e.config.to_dict(), "run_options": e.options.to_dict(),
            "inversion_layer": str(self.clf.inversion_layer), "channel_layer": str(self.clf.channel_layer),
            "device": str(self.device), "seed": getattr(e.config, "seed", None),
            "seconds_total": round(time.time() - self.t_start, 3), "complete": complete,
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

    def execute(self) -> int:
        done = self.run.finished()
        todo = [p for p, k in zip(self.paths, self.keys, strict=True) if k not in done]
        if self.run.resuming:
            log.info("resuming the run in %s: %d of %d images are done, %d to go", self.args.out,
                     len(self.paths) - len(todo), len(self.paths), len(todo))
        previous = _sigterm_as_interrupt()
        try:
            ready = self.precheck(todo)
            self.loop(ready, len(self.paths) - len(ready))
            return self.report(todo)
        except KeyboardInterrupt:
            try:
                final, _ = self.finish(False)
            except WriteError as exc:
                raise self.write_failed(exc) from None
            print(f"gfi: interrupted: {len(final['images'])} of {len(self.paths)} images are done and saved in "
                  f"{printable(self.args.out)}; run the same command again to finish", file=sys.stderr)
            return 130
        except WriteError as exc:
            raise self.write_failed(exc) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def write_failed(self, exc: WriteError) -> UsageError:
        """The one-line error of a write that failed (a full disk, a folder turned read-only), after
        saving what can still be saved: says what is saved and that the same command resumes."""
        try:
            self.finish(False)
            saved = "results.json and report.html list them"
        except (WriteError, OSError) as again:
            log.debug("the summary could not be written either: %s", again)
            saved = "their records are in records/"
        n = len(self.run.finished())
        done = f"{n} of {len(self.paths)} images are done and saved ({saved})"
        if exc.kind == "full":
            return UsageError(f"the disk holding {self.args.out} is full: {done}; free some space and run the same "
                              "command again to finish")
        fix = "make it writable" if exc.kind == "readonly" else "fix that"
        return UsageError(f"{exc}: {done}; {fix} and run the same command again to finish")

    def precheck(self, todo: list[Path]) -> list[Path]:
        """Before any work: an image whose output names are known without the model's scores (every
        image's input thumbnail and stage-1 files; all of them when its classes are given by index
        or name) and hold a file gfi did not write is skipped, with the fix. Returns the others."""
        from gfi.persist import OutputFolderError

        keep = []
        for p in todo:
            specs = self.specs(p)
            classes = ([] if any(re.fullmatch(r"top\d+", s.strip().lower()) for s in specs)
                       else list(dict.fromkeys(self.clf.class_index(s) for s in specs)))
            try:
                self.run.check_free(planned_files(safe_stem(p), classes, self.explainer.has_stage1,
                                                  self.args.save_npy, self.writer.settings.method_tag))
                keep.append(p)
            except OutputFolderError as exc:
                self.fail(p, str(exc))
        return keep

    def report(self, todo: list[Path]) -> int:
        final, results_path = self.finish(True)
        if not final["images"]:
            first = final["failures"][0]["error"] if final["failures"] else ""
            raise UsageError(f"no image could be explained ({len(final['failures'])} failed; first: {first}); "
                             f"see {results_path}")
        if not todo:
            log.warning("nothing to do: all %d images are already explained in %s (pass --overwrite to redo them)",
                        len(self.paths), self.args.out)
        if final["failures"]:
            log.warning("%d image(s) not explained, listed under `failures` in %s", len(final["failures"]),
                        results_path)
        return 0

    # ------------------------------------------------------------------------------------------
    def loop(self, todo: list[Path], n_done: int) -> None:
        """Explain ``todo`` batch by batch; each image's record is stored as soon as it is finished,
        and the summary is rewritten every 10 s. The next batch is read while this one is explained
        (``--no-prefetch``: in turn)."""
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        from gfi.data.prefetch import prefetched

        last_summary = time.time()
        n_total = len(self.paths)
        self.bar = tqdm(total=n_total, initial=n_done, unit="img", disable=self.args.quiet or n_total < 2,
                        file=sys.stderr, dynamic_ncols=True)
        inner = tqdm(total=0, unit="step", desc=f"{self.explainer.name}, this batch", leave=False, position=1,
                     disable=self.args.quiet, file=sys.stderr, dynamic_ncols=True)
        self.explainer.progress = _inner_progress(inner, self.say_estimate)
        self.announce_cost()
        try:
            with logging_redirect_tqdm(loggers=[log]):
                chunks = [todo[i0:i0 + self.args.batch_size] for i0 in range(0, len(todo), self.args.batch_size)]
                for read in prefetched(self.read, chunks, self.args.prefetch):
                    self.batch(*read)
                    if time.time() - last_summary > 10:  # a readable summary along the way, not only at the end
                        self.run.write_results(self.summary(False))
                        last_summary = time.time()
        finally:
            self.explainer.progress = None
            inner.close()
            self.bar.close()

    def say_estimate(self, seconds: float, steps: int) -> None:
        """The cost of the method here, measured on the first steps of the first call."""
        per_image = seconds / max(1, getattr(self, "group_size", 1))
        log.info("%s: %d steps per call, about %.3g s per image here (measured on its first steps); %d image(s) "
                 "to go", self.explainer.name, steps, per_image, self.bar.total - self.bar.n if self.bar else 0)

    def announce_cost(self) -> None:
        """Before a slow method starts: its settings that cost the most, and its documented cheaper ones."""
        def costs_more(now, cheap) -> bool:
            if isinstance(now, tuple):
                return len(now) > len(cheap) or (len(now) == len(cheap) and now > cheap)
            return isinstance(now, int | float) and now > cheap

        cheaper = {k: v for k, v in self.explainer.cheaper.items()
                   if costs_more(getattr(self.explainer.config, k, v), v)}
        if cheaper:
            now = ", ".join(f"{k}={getattr(self.explainer.config, k)}" for k in cheaper)
            flags = " ".join(f"--{k.replace('_', '-')} {','.join(map(str, v)) if isinstance(v, tuple) else v}"
                             for k, v in cheaper.items())
            log.info("%s runs with %s per image (its published setting; each image shows its progress); %s is its "
                     "documented cheaper setting", self.explainer.name, now, flags)

    def read(self, chunk: list[Path]) -> tuple[list, list[Path], list[tuple[Path, str]]]:
        """The decoded images of one batch, their paths, and (path, message) for each unreadable one.
        Runs in the prefetch thread: it touches nothing the main thread changes."""
        from gfi.data.images import ImageLoadError, load_image

        images, ok, failed = [], [], []
        for p in chunk:
            try:
                images.append(load_image(p, max_side=self.args.max_side, channels=self.clf.channels))
                ok.append(p)
            except ImageLoadError as exc:
                failed.append((p, str(exc)))
        return images, ok, failed

    def batch(self, images: list, ok: list[Path], failed: list[tuple[Path, str]]) -> None:
        """Score and explain one batch of read images; unreadable ones become failures."""
        for p, message in failed:
            self.fail(p, message)
        if not ok:
            return
        x = self.clf.prepare(images).to(self.device)
        with torch.no_grad():
            logits = self.clf(x).float()
        probs = self.clf.scores(logits)
        targets: dict[int, list[int]] = {}
        for j, finite in enumerate(torch.isfinite(logits).all(1).tolist()):
            if not finite:
                self.fail(ok[j], f"{ok[j]}: the model's output for this image contains NaN or inf, so there is "
                                 "nothing to explain; check the weights (--weights)")
                continue
            targets[j] = resolve_targets(self.specs(ok[j]), self.clf, probs[j])
        self.explain_rows(x, ok, images, probs, targets)

    def explain_rows(self, x, paths, images, probs, targets: dict[int, list[int]]) -> None:
        """Explain the rows of ``x`` in ``targets`` (images with equally many targets share one
        call, so GFI's stage 1 runs once per image) and write each image's outputs."""
        from gfi.batching import group_by_target_count
        from gfi.persist import OutputFolderError

        stage1 = self.explainer.has_stage1
        rows = []
        for j, t in targets.items():  # a file of the user's in the way: refused before explaining
            try:
                self.run.check_free(planned_files(safe_stem(paths[j]), t, stage1, self.args.save_npy,
                                                  self.writer.settings.method_tag),
                                    key=safe_stem(paths[j]))
                rows.append(j)
            except OutputFolderError as exc:
                self.fail(paths[j], str(exc))
        for idx in group_by_target_count([targets[j] for j in rows]):
            group = [rows[i] for i in idx]
            self.group_size = len(group)
            t0 = time.time()
            e = self.explainer.explain(x[group], [targets[j] for j in group]).cpu()
            seconds = (time.time() - t0) / len(group)
            for row, j in enumerate(group):
                self.write_image(paths[j], images[j], e, row, probs[j], seconds, targets[j], len(group))

    def write_image(self, path: Path, image, e, row: int, probs, seconds: float, classes: list[int],
                    batch_images: int = 1) -> None:
        from gfi.persist import OutputFolderError

        key = safe_stem(path)
        self.run.start(key, str(path), planned_files(key, classes, self.explainer.has_stage1, self.args.save_npy,
                                         self.writer.settings.method_tag))
        try:
            rec = self.writer.write(path, image, e, row, probs, seconds, batch_images)
        except OutputFolderError as exc:
            self.fail(path, str(exc))
            return
        self.run.add(key, rec)
        self.explained.append(rec)
        log.debug("%s: explained in %.2f s, record saved", path, seconds)
        self.done_one()
        if not self.args.quiet:  # each image's lines as it finishes
            from tqdm import tqdm

            for t in rec["targets"]:
                tqdm.write(printable(f"{rec['image']}: {t['class_name']} ({t['class']}) "
                                     f"p={common.format_prob(t['prob'])} -> {self.args.out / t['overlay']}"),
                           file=sys.stdout)

    def done_one(self) -> None:
        if getattr(self, "bar", None) is not None:
            self.bar.update(1)

    def specs(self, p: Path) -> list[str]:
        return self.per_image.get(p) or self.args.target or ["top1"]

    def fail(self, path: Path, error: str) -> None:
        log.warning("skipped: %s", error)
        self.run.add(safe_stem(path), {"image": str(path), "status": "failed", "error": error})
        self.done_one()


def _inner_progress(bar, estimate=None):
    """The explainer's progress callback: a second bar for the steps inside the current call; once
    a twentieth of the first call's steps (at least 2) are done, ``estimate(seconds, total)`` gets
    that call's projected seconds."""
    state = {"t0": None, "said": estimate is None}

    def update(done: int, total: int) -> None:
        if bar.total != total or done < bar.n:
            bar.reset(total=total)
            state["t0"] = None
        bar.update(done - bar.n)
        now = time.perf_counter()
        if state["t0"] is None:
            state["t0"], state["d0"] = now, done
        elif not state["said"] and done - state["d0"] >= max(1, total // 20):
            state["said"] = True
            estimate((now - state["t0"]) / (done - state["d0"]) * total, total)

    return update


def _sigterm_as_interrupt():
    """Treat SIGTERM like Ctrl-C (save the summary, then stop); returns the previous handler."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        return None
