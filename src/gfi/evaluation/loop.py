"""The loop behind ``gfi eval``: data, maps (computed once, cached as ``.npy``), one JSONL line per
image written as it goes, resume, sharding across processes, and the summary.

Files in ``--out``:

* ``options.json``: the options that shape the per-image lines. A rerun with the same ones
  resumes (images already in the lines are skipped); other ones are refused
  (:func:`gfi.persist.resume_or_refuse`, the rule ``gfi explain`` follows too). Options that only
  change the summary (``--alpha``, ``--tune-split``, ``--protocol``, ``--limit``, the batch size,
  the run options) are free, so a summary can be redone without recomputing anything.
* ``records.jsonl``: one JSON object per image (``index``, ``key``, ``image``, the metric's fields,
  ``seconds``, ``cached``), or ``error`` for an image whose files are missing or malformed
  (:mod:`gfi.evaluation.records`; sharding: :mod:`gfi.evaluation.sharding`).
* ``summary.json`` (and the metric's plots), made from the lines only.
* ``model_info.json``: the model and its weights (path, SHA-256) as loaded, so a summary made by
  a run that scored only cached maps (and so loaded no model) still names them.
* ``maps/`` (unless ``--maps DIR``): ``<stem>_<class>.npy``, float32 in [0, 1] at the image's size,
  the files ``gfi explain --save-npy`` writes (:mod:`gfi.evaluation.mapstore`).
* ``.gfi-manifest.jsonl``: the files gfi wrote in ``--out`` (:class:`gfi.persist.Manifest`); gfi
  replaces or deletes no other file, and a file of the user's at one of the names above is
  refused before any work, ``--overwrite`` or not.

Every chunk of ``--batch-size`` images (of this process's images, in dataset order) is computed
as a whole, in a resumed run too: a map's float rounding depends on the images computed with it,
so a resumed run's maps are those of an uninterrupted run, bit for bit.

Entry points: :func:`run_models` (``--model a,b`` runs each into ``OUT/<model>/``) and
:func:`run_experiment` (one model).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gfi.batching import chunked, explain_groups
from gfi.data.images import ImageLoadError, load_image
from gfi.data.prefetch import prefetched
from gfi.data.samples import DataError, Sample
from gfi.evaluation.experiment import EvalError, EvalRun, Experiment, jsonable
from gfi.evaluation.mapstore import MapStore, canonical_provenance
from gfi.evaluation.records import RECORDS, RecordWriter, merge_records, part_name, read_records
from gfi.evaluation.sharding import Shard
from gfi.persist import (
    LOCK_NAME,
    FolderLock,
    Manifest,
    OutputFolderError,
    WriteError,
    atomic_write_text,
    check_folder,
    differences,
    in_the_way,
    resume_or_refuse,
    run_id,
)
from gfi.progress import ProgressLike, Tracker, tracker
from gfi.settings import Settings
from gfi.threads import use_threads

log = logging.getLogger("gfi")
OPTIONS = "options.json"
SUMMARY = "summary.json"
MODEL_INFO = "model_info.json"


# -- the method's settings -----------------------------------------------------------------------
def method_config(run: EvalRun) -> tuple[Settings, Any]:
    """(settings, run options) of ``run.method``: its preset (for a method that has presets), then
    ``run.overrides`` (strings parsed by the field's type); an override that is a run option and not
    a setting of the method goes to the run options. No model is needed."""
    from gfi.methods.spec import resolve

    spec = resolve(run.method, run.preset, run.overrides, options=run.run_options)
    return spec.config, spec.options


def provenance(run: EvalRun, config: Settings, target: dict | None = None) -> dict[str, Any]:
    """What defines a method's maps: name, model, weights, layers, settings (``_maps.json``), and
    what the targets are when a map is of more than its class (``target``,
    :meth:`Experiment.target_key`; absent: a class alone)."""
    out = {"method": run.method, "model": run.model, "weights": str(run.weights),
           "inversion_layer": run.inversion_layer, "channel_layer": run.channel_layer,
           "multilabel": bool(run.multilabel), "config": config.to_dict()}
    return {**out, "target": target} if target is not None else out


# -- the context an experiment scores in ------------------------------------------------------------
class Context:
    """What an experiment's hooks see: the run (``run``), the experiment's options (``opts``), the
    dataset, and the model, explainer and maps, each made on first use (scoring cached maps needs
    no model)."""

    def __init__(self, run: EvalRun, opts: Settings, dataset, *, config: Settings | None = None,
                 run_options: Any = None, classifier=None, info: dict | None = None,
                 device: torch.device | None = None, target: dict | None = None,
                 method_targets: Callable[[list[int]], list[Any] | None] | None = None) -> None:
        self.run = run
        self.opts = opts
        self.dataset = dataset
        if config is None or run_options is None:
            resolved, options = method_config(run)
            config = resolved if config is None else config
            run_options = options if run_options is None else run_options
        self.config = config
        self.run_options = run_options
        self._clf = classifier
        self.info = info or ({"model": getattr(classifier, "name", "custom")} if classifier is not None else None)
        self._explainer = None
        self._checked = False
        self.keys: list[str] = dataset.keys
        self.cache: dict[str, Any] = {}  # per-run state of an experiment (experiments are stateless)
        self.device = device or torch.device("cpu")
        self.settings = provenance(run, config, target)
        # the targets the method is given for an image's classes (None: the classes themselves)
        self.method_targets = method_targets
        self.store = MapStore(run.maps or run.out / "maps", self.settings)
        self.manifest: Manifest | None = None  # OUT's, while the loop runs
        self.info_file: Path | None = None  # where the loaded model's info is kept
        self.progress: Tracker = tracker(None, run.method or "")  # told of every explain call and image

    @property
    def clf(self):
        if self._clf is None:
            from gfi.models.loading import load_classifier

            self._clf, self.info = load_classifier(self.run)
            self._clf.to(self.device)
            if self.info_file is not None:
                atomic_write_text(self.info_file, json.dumps(jsonable(self.info), indent=2))
        if not self._checked:
            self._checked = True
            self.check_classes()
        return self._clf

    def check_classes(self) -> None:
        names = getattr(self.dataset, "class_names", None)
        n = self._clf.num_classes
        if names is not None and n is not None and n != len(names):
            raise EvalError(f"the model has {n} classes but {self.dataset.kind} labels index {len(names)}; "
                            + ("fine-tune a 20-way head with `gfi eval voc-head` and pass --weights FILE --multilabel"
                               if self.dataset.kind == "voc" else "use a model trained on these classes"))

    def make_explainer(self, clf):
        """The run's method on ``clf`` (e.g. a randomised copy of the model) with the run's settings."""
        from gfi.methods.registry import get_method

        explainer = get_method(self.run.method, clf, self.config, options=self.run_options)
        made = explainer.provenance()["config"]
        if made != self.settings["config"]:  # the store would label these maps with other settings
            diff = ", ".join(differences(self.settings["config"], made))
            raise RuntimeError(f"{self.run.method}: its explainer changes {diff} after {type(explainer).__name__}"
                               ".resolve(), so maps would be stored under settings they were not made with; "
                               "make resolve() return the settings the explainer runs")
        return explainer

    @property
    def explainer(self):
        if self._explainer is None:
            self._explainer = self.make_explainer(self.clf)
        return self._explainer

    def prepare(self, images: list[Tensor]) -> Tensor:
        return self.clf.prepare(images).to(self.clf.device)

    def top1(self, x: Tensor) -> list[int]:
        with torch.no_grad():
            return [int(c) for c in self.clf(x).argmax(-1)]

    def explain_now(self, explainer, x: Tensor, targets: list[list[int]],
                    sizes: list[tuple[int, int]]) -> tuple[list[dict[int, Tensor]], float]:
        """Maps (at each image's size, float32) of ``targets`` for the model-size images ``x``,
        computed without the cache (images with equally many targets share one call,
        :func:`gfi.batching.explain_groups`); and the seconds it took."""
        from gfi.viz.overlay import to_original_size

        out: list[dict[int, Tensor]] = [{} for _ in targets]
        given = [self.method_targets(t) or t for t in targets] if self.method_targets is not None else targets
        t0 = time.perf_counter()
        for rows, e, _ in explain_groups(explainer, x, given, self.progress):
            for row, j in enumerate(rows):
                maps = to_original_size(e.maps[row].detach(), sizes[j]).cpu()
                for k, c in enumerate(targets[j]):
                    out[j][c] = torch.from_numpy(maps[k].float().numpy().astype("float32"))
        return out, time.perf_counter() - t0

    def maps(self, samples: list[Sample], images: list[Tensor], targets: list[list[int]],
             x: Tensor | None) -> tuple[list[dict[int, Tensor]], list[float], list[bool]]:
        """Maps of ``targets`` per image: from the store when there, else computed and stored.
        When any is missing, the maps of the whole batch are computed together (those already in the
        store are kept and served from it): a map's last float digits depend on the images computed
        with it, so a batch that a kill left half stored is redone as it was first computed.
        Returns the maps, seconds per image (computation only) and whether all came from the store."""
        sizes = [tuple(img.shape[-2:]) for img in images]
        found: list[dict[int, Tensor]] = []
        missing: list[list[int]] = []
        for s, size, t in zip(samples, sizes, targets, strict=True):
            have = {c: m for c in t if (m := self.store.load(s.path, c, size)) is not None}
            found.append(have)
            missing.append([c for c in t if c not in have])
        seconds = [0.0] * len(samples)
        for j, (s, have) in enumerate(zip(samples, found, strict=True)):
            seconds[j] = sum(self.store.seconds(s.path, c) or 0.0 for c in have)
        if any(missing):
            xs = x if x is not None else self.prepare(images)
            new, secs = self.explain_now(self.explainer, xs, targets, sizes)
            per_map = secs / sum(len(t) for t in targets)
            for j, d in enumerate(new):
                for c in missing[j]:
                    found[j][c] = self.store.save(samples[j].path, c, d[c], per_map)
                seconds[j] += per_map * len(missing[j])
        return found, seconds, [not m for m in missing]


# -- options, output folder, selection -------------------------------------------------------------
def record_options(exp: Experiment, run: EvalRun, opts: Settings, dataset, settings: dict) -> dict:
    """``options.json``: what shapes the per-image lines."""
    out = {"experiment": exp.name, "data": str(Path(run.data).resolve()), "dataset": dataset.kind,
           "split": run.split if dataset.kind == "voc" else None, **settings}
    out.update(exp.record_options(opts))
    return jsonable(out)


def check_out(run: EvalRun, exp: Experiment, manifest: Manifest) -> None:
    """Before any work: a file of the user's at a name this run writes in ``--out`` is refused
    (with or without ``--overwrite``), and so is a folder an earlier version wrote (no manifest)."""
    from gfi.runs import legacy_folder

    legacy_folder(run.out, manifest, (OPTIONS,))
    names = [OPTIONS, RECORDS, SUMMARY, MODEL_INFO, *getattr(exp, "outputs", ())]
    manifest.check_free([run.out / n for n in names])


def prepare_out(run: EvalRun, options: dict, shard: Shard, manifest: Manifest | None = None,
                store_folder: Path | None = None) -> bool:
    """Make ``run.out`` ready: the stored ``options.json`` must equal ``options`` (read as the map
    store reads settings, so runs of earlier versions resume), else
    :class:`~gfi.persist.OutputFolderError` names what differs; with ``overwrite`` the files gfi
    wrote there (and in the map store ``store_folder``: the default one) are deleted instead, and
    nothing else. ``options.json`` itself is written by :func:`write_options`, once the map store
    has been checked too. Returns whether an earlier run is resumed."""
    from gfi.evaluation.mapstore import STORE_MANIFEST

    out = run.out
    opt_file = out / OPTIONS
    manifest = manifest if manifest is not None else Manifest(out)
    stored = None
    if not run.overwrite and os.path.lexists(opt_file):
        data = manifest.read(opt_file)
        if data is None:
            raise OutputFolderError(f"{opt_file} exists and gfi did not write it; move it away or choose another "
                                    "--out")
        stored = json.loads(data)
    resuming = resume_or_refuse(out, None if stored is None else canonical_provenance(stored),
                                canonical_provenance(options), overwrite=False, what="options")
    if shard.rank == 0:
        if run.overwrite:
            gone = manifest.clear()
            if store_folder is not None:
                gone += Manifest(store_folder, STORE_MANIFEST, shared=True).clear()
            log.debug("--overwrite: deleted %d file(s) gfi wrote in %s", len(gone), out)
        else:
            manifest.remove_temporaries(every_other_run=shard.world == 1)
    shard.barrier()
    return resuming


def write_options(run: EvalRun, options: dict, shard: Shard, manifest: Manifest) -> None:
    """``options.json`` (rank 0, when the folder has none: a resumed run keeps its file)."""
    opt_file = run.out / OPTIONS
    if shard.rank == 0 and (run.overwrite or not manifest.owns(opt_file)):
        manifest.write_text(opt_file, json.dumps(options, indent=2, sort_keys=True))
    shard.barrier()


def select(n: int, span: str | None, limit: int = 0) -> list[int]:
    """Indices of the images to score: ``--range START:STOP`` of the sorted order (Python slice
    semantics), then the first ``--limit`` of them."""
    idx = list(range(n))
    if span:
        try:
            start, _, stop = span.partition(":")
            idx = idx[int(start) if start else None:int(stop) if stop else None]
        except ValueError as exc:
            raise EvalError(f"--range {span!r}: expected START:STOP, e.g. 150:300") from exc
    return idx[: limit or None]


# -- entry points ----------------------------------------------------------------------------------
def run_models(exp: Experiment, run: EvalRun, opts: Settings | None = None, *, classifier=None,
               info: dict | None = None, report: Callable[[str], Any] | None = None,
               progress: ProgressLike = True) -> dict[str, dict]:
    """Run ``exp`` for every model of ``run.model`` (a comma list): one model into ``run.out``,
    several into ``run.out/<model>/`` (and ``run.maps/<model>/``) with a table of their headlines
    in ``run.out/summary.json`` (Sec. 4.1.4). ``report`` gets each finished run's
    :meth:`Experiment.headline` (the CLI prints it); ``progress`` is :func:`run_experiment`'s.
    Returns the summaries by model (none on ranks > 0 of a sharded run)."""
    opts = exp.options() if opts is None else opts
    models = [m.strip() for m in str(run.model).split(",") if m.strip()]
    if not models:
        raise EvalError("--model is empty")
    if len(models) > 1:  # the table's summary.json: a file of the user's there is refused before any work
        Manifest(run.out).check_free([run.out / SUMMARY])
    summaries = {}
    for m in models:
        one = run.replace(model=m)
        if len(models) > 1:
            one = one.replace(out=run.out / m, maps=run.maps / m if run.maps is not None else None)
        s = run_experiment(exp, one, opts, classifier=classifier, info=info, progress=progress)
        if s is not None:
            summaries[m] = s
            if report is not None:
                report(exp.headline(s))
    if len(models) > 1 and summaries:
        table = {m: {k: s.get(k) for k in (*exp.headline_keys, "n_images", "seconds_per_image")}
                 for m, s in summaries.items()}
        with FolderLock(run.out):
            manifest = Manifest(run.out)
            try:
                manifest.write_text(run.out / SUMMARY, json.dumps({"experiment": exp.name, "models": table}, indent=2))
            finally:
                manifest.close()
    return summaries


def run_experiment(exp: Experiment, run: EvalRun, opts: Settings | None = None, *, classifier=None,
                   info: dict | None = None, progress: ProgressLike = True) -> dict | None:
    """Run ``exp`` over ``run.data`` into ``run.out`` for one model; returns the summary (None on
    ranks > 0, and on rank 0 of a job array without ``torch.distributed``). Every check (the
    options, ``--range``, files of the user's in the way, the map store) comes before anything is
    written. ``progress`` (:mod:`gfi.progress`: True, the default, shows bars on a terminal and
    plain lines in a log; None or False, or ``run.quiet``: nothing; or a callable) hears of every
    image and of the steps inside every explain call, on rank 0."""
    from gfi.evaluation.mapstore import STORE_MANIFEST, map_files
    from gfi.models.device import choose_device

    opts = exp.options() if opts is None else opts
    if not isinstance(opts, exp.options_class):
        raise TypeError(f"{exp.name} takes {exp.options_class.__name__} options, got {type(opts).__name__}")
    if run.method is None:
        run = run.replace(method=exp.default_method)
    config, run_options = method_config(run)
    use_threads(run.threads)  # 0: the gfi program's free cores; from Python, torch's count
    dataset, classifier, info = exp.setup(run, opts, classifier, info)
    keys = dataset.keys
    dup = {k for k in keys if keys.count(k) > 1} if len(set(keys)) != len(keys) else set()
    if dup:
        raise EvalError(f"images share an output name: {sorted(dup)[:3]}; rename them")
    exp.check(run, opts, dataset)
    indices = select(len(dataset), run.range, run.limit)
    device = choose_device(run.device)
    check_folder(run.out)  # a file in the way, a read-only place, a full disk: one line, before any work
    shard = Shard(device)
    run.out.mkdir(parents=True, exist_ok=True)
    # one writer per folder and rank (the ranks of one torchrun job write their own part files)
    lock = FolderLock(run.out, name=LOCK_NAME if shard.rank == 0 else f"{LOCK_NAME}.rank{shard.rank}")
    manifest = Manifest(run.out, shared=shard.world > 1)
    selected = [keys[i] for i in indices]
    try:
        lock.acquire()
        if shard.rank == 0:
            check_out(run, exp, manifest)
        store_folder = run.out / "maps" if run.maps is None else None
        if run.overwrite and store_folder is not None:  # maps of the user's there: refused before deleting
            listed = Manifest(store_folder, STORE_MANIFEST, shared=True)
            for n in map_files(store_folder, selected):
                if not listed.listed(store_folder / n):
                    raise in_the_way(store_folder / n)
        target = exp.target_key(opts)
        options = record_options(exp, run, opts, dataset, provenance(run, config, target))
        with manifest.active():
            prepare_out(run, options, shard, manifest, store_folder if run.overwrite else None)
            if shard.rank == 0:
                exp.write_inputs(run, dataset, manifest)
            shard.barrier()
            ctx = Context(run, opts, dataset, config=config, run_options=run_options, classifier=classifier,
                          info=info, device=device, target=target,
                          method_targets=lambda classes: exp.method_targets(opts, classes))
            ctx.store.prepare(selected, given=run.maps is not None)
            # the model's info is one file of the folder: rank 0 writes it (two ranks writing it at once
            # would each find the other's file in the way)
            ctx.manifest, ctx.info_file = manifest, run.out / MODEL_INFO if shard.rank == 0 else None
            quiet = run.quiet or shard.rank != 0
            ctx.progress = tracker(None if quiet else progress, run.method, f"{exp.name}, method {run.method}")
            write_options(run, options, shard, manifest)
            if classifier is not None:
                classifier.to(device)
            done = {k for k, r in read_records(run.out, manifest).items() if "error" not in r}
            left = sum(1 for i in indices if keys[i] not in done)
            if shard.rank == 0 and not left:
                log.warning("nothing to do: all %d images are already scored in %s; the summary is made again from "
                            "their lines (pass --overwrite to redo them)", len(indices), run.out)
            elif shard.rank == 0 and left < len(indices):
                log.info("resuming the run in %s: %d of %d images are done, %d to go", run.out, len(indices) - left,
                         len(indices), left)
            try:
                _loop(exp, ctx, shard.mine(indices), done, shard)
                shard.barrier()
                if shard.rank != 0:
                    return None
                if not shard.merges:
                    log.info("rank 0 of %d without torch.distributed: rerun without WORLD_SIZE to merge", shard.world)
                    return None
                records = merge_records(run.out, manifest)
                return write_summary(exp, ctx, records, indices, keys)
            except WriteError as exc:
                raise _write_failed(exc, run, manifest, [keys[i] for i in indices]) from None
    finally:
        manifest.close()
        lock.release()
        shard.close()


def _write_failed(exc: WriteError, run: EvalRun, manifest: Manifest, keys: list[str]) -> EvalError:
    """The one-line error of a write that failed (a full disk, a folder turned read-only): what is
    saved, and that the same command resumes."""
    try:
        recs = read_records(run.out, manifest)
        n = sum(1 for k in keys if k in recs and "error" not in recs[k])
        saved = f"{n} of {len(keys)} images are scored and their lines saved in {run.out}"
    except (OSError, ValueError) as again:
        log.debug("the lines could not be read back: %s", again)
        saved = f"the lines written so far are saved in {run.out}"
    if exc.kind == "full":
        return EvalError(f"the disk holding {exc.path.parent} is full: {saved}; free some space and run the same "
                         "command again to finish")
    fix = "make it writable" if exc.kind == "readonly" else "fix that"
    return EvalError(f"{exc}: {saved}; {fix} and run the same command again to finish")


# -- the loop ----------------------------------------------------------------------------------------
def _loop(exp: Experiment, ctx: Context, mine: list[int], done: set[str], shard: Shard) -> None:
    """Score this process's images ``mine`` (of the selection) that have no line yet (``done``),
    chunk by chunk of ``--batch-size`` images; a chunk is computed whole (see :meth:`Context.maps`)
    and the lines of its images without one are appended. ``ctx.progress`` hears of each image and
    of the steps inside each explain call."""
    run = ctx.run
    chunks = [c for c in chunked(mine, run.batch_size) if any(ctx.keys[i] not in done for i in c)]
    todo = sum(1 for c in chunks for i in c if ctx.keys[i] not in done)
    if not chunks:
        return
    # a new part file for every run (its name holds the process's id, listed in the manifest)
    writer = RecordWriter(run.out / part_name(shard.rank, f"{run_id()}.{secrets.token_hex(3)}"), ctx.manifest)
    ctx.progress.start(todo)
    try:
        read = functools.partial(_read_batch, exp, ctx)
        for samples, images, lines in prefetched(read, chunks, run.prefetch):
            if samples:
                lines.extend(_score_batch(exp, ctx, samples, images))
            new = [r for r in lines if r["key"] not in done]
            writer.write(sorted(new, key=lambda r: r["index"]))
            ctx.progress.advance(len(new))
    finally:
        ctx.progress.end()
        writer.close()


def _read_batch(exp: Experiment, ctx: Context, batch: list[int]) -> tuple[list[Sample], list[Tensor], list[dict]]:
    """The samples and decoded images of ``batch`` (indices), and an error line for each that cannot be read."""
    samples, images, lines = [], [], []
    for i in batch:
        base = {"index": i, "key": ctx.keys[i], "image": str(ctx.dataset.paths[i])}
        try:
            s = ctx.dataset[i]
            img = load_image(s.path)
            if s.size is not None:
                s = s.scaled_to(img.shape[-1], img.shape[-2])
            exp.check_sample(s, img)
        except (DataError, ImageLoadError) as exc:
            log.warning("skipped: %s", exc)
            lines.append({**base, "error": str(exc)})
            continue
        samples.append(s)
        images.append(img)
    return samples, images, lines


def _score_batch(exp: Experiment, ctx: Context, samples: list[Sample], images: list[Tensor]) -> list[dict]:
    x = None
    targets = [exp.targets(s, ctx.opts) for s in samples]
    if any(t is None for t in targets) or exp.needs_model:
        x = ctx.prepare(images)
        if any(t is None for t in targets):
            top = ctx.top1(x)
            targets = [t if t is not None else [top[j]] for j, t in enumerate(targets)]
    maps, seconds, cached = ctx.maps(samples, images, targets, x)
    extra, extra_seconds = exp.batch_extras(ctx, samples, images, x, targets)
    out = []
    for j, s in enumerate(samples):
        base = {"index": s.index, "key": s.key, "image": str(s.path), "targets": targets[j]}
        t1 = time.perf_counter()
        try:
            rec = exp.score(ctx, s, images[j], maps[j], j, extra)
        except (DataError, ValueError) as exc:
            log.warning("skipped: %s", exc)
            out.append({**base, "error": str(exc)})
            continue
        score_seconds = time.perf_counter() - t1
        out.append({**base, **rec, "seconds": round(seconds[j] + extra_seconds / len(samples), 6),
                    "metric_seconds": round(score_seconds, 6), "cached": cached[j]})
    return out


def model_info(ctx: Context) -> dict:
    """The model the maps came from: as loaded by this run, else as an earlier run into the same
    ``--out`` loaded it (``model_info.json``), else from the run's options (the weights file's
    SHA-256 computed from the file; ``"loaded": false``)."""
    if ctx.info is not None:
        return ctx.info
    if ctx.manifest is not None and ctx.info_file is not None and os.path.lexists(ctx.info_file):
        data = ctx.manifest.read(ctx.info_file)
        if data is not None:
            try:
                return json.loads(data)
            except ValueError:
                log.debug("%s: unreadable", ctx.info_file)
    from gfi.models.weights import file_sha256

    weights = str(ctx.run.weights)
    sha = file_sha256(weights) if weights not in ("default", "random") and Path(weights).is_file() else None
    return {"model": ctx.run.model, "weights": weights, "sha256": sha, "loaded": False}


def write_summary(exp: Experiment, ctx: Context, records: list[dict], indices: list[int], keys: list[str]) -> dict:
    """``summary.json`` from the lines of the images in ``indices`` (plots written by ``exp``)."""
    from gfi import __version__

    wanted = {keys[i] for i in indices}
    recs = [r for r in records if r["key"] in wanted]
    ok = [r for r in recs if "error" not in r]
    failed = [{"image": r["image"], "error": r["error"]} for r in recs if "error" in r]
    timed = [r["seconds"] for r in ok if r.get("seconds")]
    run = ctx.run
    summary: dict[str, Any] = {"experiment": exp.name, "method": run.method, "model": run.model,
                               "dataset": ctx.dataset.kind, "data": str(run.data)}
    if ok:
        summary.update(exp.summarize(ok, run, ctx.opts))
    else:
        log.warning("no image could be scored (%d failed)", len(failed))
    summary.update({
        "n_images": len(ok), "n_failed": len(failed), "failures": failed,
        "seconds_per_image": round(sum(timed) / len(timed), 4) if timed else None,
        "seconds_per_image_note": "the method's time per image (maps; for adversarial and sanity also the extra "
                                  "maps); from the map store's timings for maps computed by an earlier run",
        "metric_seconds_per_image": round(sum(r.get("metric_seconds", 0) for r in ok) / len(ok), 4) if ok else None,
        "n_maps_cached": sum(1 for r in ok if r.get("cached")),
        "model_info": model_info(ctx), "method_settings": ctx.settings, "maps": str(ctx.store.folder),
        "gfi_version": __version__, "torch": torch.__version__,
        "options": {"command": "eval", "experiment": exp.name, **run.to_dict(),
                    "run_options": ctx.run_options.to_dict(), **ctx.opts.to_dict()},
    })
    atomic_write_text(run.out / SUMMARY, json.dumps(summary, indent=2, allow_nan=True))
    return summary
