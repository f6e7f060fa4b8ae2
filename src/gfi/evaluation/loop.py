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
* ``maps/`` (unless ``--maps DIR``): ``<stem>_<class>.npy``, float32 in [0, 1] at the image's size,
  the files ``gfi explain --save-npy`` writes (:mod:`gfi.evaluation.mapstore`).

Entry points: :func:`run_models` (``--model a,b`` runs each into ``OUT/<model>/``) and
:func:`run_experiment` (one model).
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gfi.batching import explain_grouped
from gfi.data.images import ImageLoadError, load_image
from gfi.data.prefetch import prefetched
from gfi.data.samples import DataError, Sample
from gfi.evaluation.experiment import EvalError, EvalRun, Experiment, jsonable
from gfi.evaluation.mapstore import META, MapStore, canonical_provenance
from gfi.evaluation.records import PART_GLOB, RECORDS, RecordWriter, merge_records, part_name, read_records
from gfi.evaluation.sharding import Shard
from gfi.persist import LOCK_NAME, FolderLock, atomic_write_text, check_folder, differences, resume_or_refuse
from gfi.settings import Settings

log = logging.getLogger("gfi")
OPTIONS = "options.json"
SUMMARY = "summary.json"


# -- the method's settings -----------------------------------------------------------------------
def method_config(run: EvalRun) -> tuple[Settings, Any]:
    """(settings, run options) of ``run.method``: its preset (for a method that has presets), then
    ``run.overrides`` (strings parsed by the field's type); an override that is a run option and not
    a setting of the method goes to the run options. No model is needed."""
    from gfi.methods.base import RunOptions
    from gfi.methods.registry import method_class

    cls = method_class(run.method)
    own, run_names = set(cls.settings_class.names()), set(RunOptions.names())
    overrides = dict(run.overrides)
    moved = {k: overrides.pop(k) for k in list(overrides) if k in run_names and k not in own}
    options = run.run_options
    if isinstance(options, RunOptions):
        options = options.with_overrides(moved)
    else:
        options = RunOptions().with_overrides({**dict(options or {}), **moved})
    config = cls.preset_config(run.preset or "default") if cls.presets else cls.settings_class()
    config, options = cls.resolve(config.with_overrides(overrides), options, {})
    return config, options


def provenance(run: EvalRun, config: Settings) -> dict[str, Any]:
    """What defines a method's maps: name, model, weights, layers, settings (``_maps.json``)."""
    return {"method": run.method, "model": run.model, "weights": str(run.weights),
            "inversion_layer": run.inversion_layer, "channel_layer": run.channel_layer,
            "multilabel": bool(run.multilabel), "config": config.to_dict()}


# -- the context an experiment scores in ------------------------------------------------------------
class Context:
    """What an experiment's hooks see: the run (``run``), the experiment's options (``opts``), the
    dataset, and the model, explainer and maps, each made on first use (scoring cached maps needs
    no model)."""

    def __init__(self, run: EvalRun, opts: Settings, dataset, *, config: Settings | None = None,
                 run_options: Any = None, classifier=None, info: dict | None = None,
                 device: torch.device | None = None) -> None:
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
        self.settings = provenance(run, config)
        self.store = MapStore(run.maps or run.out / "maps", self.settings)

    @property
    def clf(self):
        if self._clf is None:
            from gfi.evaluation.models import load_classifier

            self._clf, self.info = load_classifier(self.run)
            self._clf.to(self.device)
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
        :func:`gfi.batching.explain_grouped`); and the seconds it took."""
        from gfi.viz.overlay import to_original_size

        out: list[dict[int, Tensor]] = [{} for _ in targets]
        t0 = time.perf_counter()
        for rows, e in explain_grouped(explainer, x, targets):
            for row, j in enumerate(rows):
                maps = to_original_size(e.maps[row].detach(), sizes[j]).cpu()
                for k, c in enumerate(targets[j]):
                    out[j][c] = torch.from_numpy(maps[k].float().numpy().astype("float32"))
        return out, time.perf_counter() - t0

    def maps(self, samples: list[Sample], images: list[Tensor], targets: list[list[int]],
             x: Tensor | None) -> tuple[list[dict[int, Tensor]], list[float], list[bool]]:
        """Maps of ``targets`` per image: from the store when there, else computed and stored.
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
        todo = [j for j, m in enumerate(missing) if m]
        if todo:
            xs = x if x is not None else self.prepare(images)
            new, secs = self.explain_now(self.explainer, xs[todo], [missing[j] for j in todo],
                                         [sizes[j] for j in todo])
            per_map = secs / sum(len(missing[j]) for j in todo)
            for j, d in zip(todo, new, strict=True):
                for c, m in d.items():
                    found[j][c] = self.store.save(samples[j].path, c, m, per_map)
                seconds[j] += per_map * len(d)
        return found, seconds, [not m for m in missing]


# -- options, output folder, selection -------------------------------------------------------------
def record_options(exp: Experiment, run: EvalRun, opts: Settings, dataset, settings: dict) -> dict:
    """``options.json``: what shapes the per-image lines."""
    out = {"experiment": exp.name, "data": str(Path(run.data).resolve()), "dataset": dataset.kind,
           "split": run.split if dataset.kind == "voc" else None, **settings}
    out.update(exp.record_options(opts))
    return jsonable(out)


def prepare_out(run: EvalRun, options: dict, shard: Shard) -> bool:
    """Make ``run.out`` ready: with ``overwrite`` the files of an earlier run go first; then the
    stored ``options.json`` must equal ``options`` (read as the map store reads settings, so runs
    of earlier versions resume), else :class:`~gfi.persist.OutputFolderError` names what differs.
    Returns whether an earlier run is resumed."""
    out = run.out
    opt_file = out / OPTIONS
    if shard.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        if run.overwrite:
            for f in [opt_file, out / RECORDS, out / SUMMARY, *out.glob(PART_GLOB)]:
                f.unlink(missing_ok=True)
            if run.maps is None and (out / "maps").is_dir():  # only the files the map store writes
                for pattern in ("*.npy", META, "_seconds.*.jsonl"):
                    for f in (out / "maps").glob(pattern):
                        f.unlink()
    shard.barrier()
    stored = json.loads(opt_file.read_text()) if opt_file.is_file() else None
    resuming = resume_or_refuse(out, None if stored is None else canonical_provenance(stored),
                                canonical_provenance(options), overwrite=False, what="options")
    shard.barrier()
    if shard.rank == 0 and stored is None:
        atomic_write_text(opt_file, json.dumps(options, indent=2, sort_keys=True))
    return resuming


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
               info: dict | None = None, report: Callable[[str], Any] | None = None) -> dict[str, dict]:
    """Run ``exp`` for every model of ``run.model`` (a comma list): one model into ``run.out``,
    several into ``run.out/<model>/`` (and ``run.maps/<model>/``) with a table of their headlines
    in ``run.out/summary.json`` (Sec. 4.1.4). ``report`` gets each finished run's
    :meth:`Experiment.headline` (the CLI prints it). Returns the summaries by model (none on
    ranks > 0 of a sharded run)."""
    opts = exp.options() if opts is None else opts
    models = [m.strip() for m in str(run.model).split(",") if m.strip()]
    if not models:
        raise EvalError("--model is empty")
    summaries = {}
    for m in models:
        one = run.replace(model=m)
        if len(models) > 1:
            one = one.replace(out=run.out / m, maps=run.maps / m if run.maps is not None else None)
        s = run_experiment(exp, one, opts, classifier=classifier, info=info)
        if s is not None:
            summaries[m] = s
            if report is not None:
                report(exp.headline(s))
    if len(models) > 1 and summaries:
        table = {m: {k: s.get(k) for k in (*exp.headline_keys, "n_images", "seconds_per_image")}
                 for m, s in summaries.items()}
        atomic_write_text(run.out / SUMMARY, json.dumps({"experiment": exp.name, "models": table}, indent=2))
    return summaries


def run_experiment(exp: Experiment, run: EvalRun, opts: Settings | None = None, *, classifier=None,
                   info: dict | None = None) -> dict | None:
    """Run ``exp`` over ``run.data`` into ``run.out`` for one model; returns the summary (None on
    ranks > 0, and on rank 0 of a job array without ``torch.distributed``)."""
    from gfi.models.device import choose_device

    opts = exp.options() if opts is None else opts
    if not isinstance(opts, exp.options_class):
        raise TypeError(f"{exp.name} takes {exp.options_class.__name__} options, got {type(opts).__name__}")
    if run.method is None:
        run = run.replace(method=exp.default_method)
    config, run_options = method_config(run)
    if run.threads:
        torch.set_num_threads(run.threads)
    dataset, classifier, info = exp.setup(run, opts, classifier, info)
    keys = dataset.keys
    dup = {k for k in keys if keys.count(k) > 1} if len(set(keys)) != len(keys) else set()
    if dup:
        raise EvalError(f"images share an output name: {sorted(dup)[:3]}; rename them")
    exp.check(run, opts, dataset)
    device = choose_device(run.device)
    check_folder(run.out)  # a file in the way, a read-only place, a full disk: one line, before any work
    shard = Shard(device)
    run.out.mkdir(parents=True, exist_ok=True)
    # one writer per folder and rank (the ranks of one torchrun job write their own part files)
    lock = FolderLock(run.out, name=LOCK_NAME if shard.rank == 0 else f"{LOCK_NAME}.rank{shard.rank}")
    try:
        lock.acquire()
        prepare_out(run, record_options(exp, run, opts, dataset, provenance(run, config)), shard)
        ctx = Context(run, opts, dataset, config=config, run_options=run_options, classifier=classifier,
                      info=info, device=device)
        if classifier is not None:
            classifier.to(device)
        indices = select(len(dataset), run.range, run.limit)
        done = {k for k, r in read_records(run.out).items() if "error" not in r}
        remaining = [i for i in indices if keys[i] not in done]
        if shard.rank == 0 and len(indices) > len(remaining):
            log.info("resuming: %d of %d images already done", len(indices) - len(remaining), len(indices))
        _loop(exp, ctx, shard.mine(remaining), shard)
        shard.barrier()
        if shard.rank != 0:
            return None
        if not shard.merges:
            log.info("rank 0 of %d without torch.distributed: rerun without WORLD_SIZE to merge", shard.world)
            return None
        records = merge_records(run.out)
        return write_summary(exp, ctx, records, indices, keys)
    finally:
        lock.release()
        shard.close()


# -- the loop ----------------------------------------------------------------------------------------
def _loop(exp: Experiment, ctx: Context, mine: list[int], shard: Shard) -> None:
    from tqdm import tqdm

    run = ctx.run
    writer = RecordWriter(run.out / part_name(shard.rank))
    bar = tqdm(total=len(mine), unit="img", disable=run.quiet or shard.rank != 0 or not mine, file=sys.stderr,
               desc=f"{exp.name} {run.method}", dynamic_ncols=True)
    batches = [mine[b0:b0 + run.batch_size] for b0 in range(0, len(mine), run.batch_size)]
    try:
        read = functools.partial(_read_batch, exp, ctx)
        for batch, (samples, images, lines) in zip(batches, prefetched(read, batches, run.prefetch), strict=True):
            if samples:
                lines.extend(_score_batch(exp, ctx, samples, images))
            writer.write(sorted(lines, key=lambda r: r["index"]))
            bar.update(len(batch))
    finally:
        bar.close()
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
        "model_info": ctx.info, "method_settings": ctx.settings, "maps": str(ctx.store.folder),
        "gfi_version": __version__, "torch": torch.__version__,
        "options": {"command": "eval", "experiment": exp.name, **run.to_dict(),
                    "run_options": ctx.run_options.to_dict(), **ctx.opts.to_dict()},
    })
    atomic_write_text(run.out / SUMMARY, json.dumps(summary, indent=2, allow_nan=True))
    return summary
