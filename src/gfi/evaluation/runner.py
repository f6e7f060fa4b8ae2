"""The engine behind ``gfi eval``: data, maps (computed once, cached as ``.npy``), one JSONL line
per image written as it goes, resume, sharding across processes, and the summary.

Files in ``--out``:

* ``options.json``: the options that shape the per-image lines. A rerun with the same ones
  resumes (images already in the lines are skipped); other ones are refused. Options that only
  change the summary (``--alpha``, ``--tune-split``, ``--protocol``, ``--limit``, the batch size)
  are free, so a summary can be redone without recomputing anything.
* ``records.jsonl``: one JSON object per image (``index``, ``key``, ``image``, the metric's fields,
  ``seconds``, ``cached``), or ``error`` for an image whose files are missing or malformed.
  While a run is going, each process appends to ``records.part<RANK>.jsonl`` (flushed and
  fsynced per batch); at the end they are merged into ``records.jsonl`` in dataset order.
* ``summary.json`` (and the metric's plots), made from the lines only.
* ``maps/`` (unless ``--maps DIR``): ``<stem>_<class>.npy``, float32 in [0, 1] at the image's size,
  the files ``gfi explain --save-npy`` writes.

Sharding: under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` set) rank r takes the
images i (dataset order) with i % WORLD_SIZE == r that have no line yet; after a
``torch.distributed`` barrier (gloo on CPU, nccl on GPU) rank 0 merges the parts and writes the
summary. With ``RANK``/``WORLD_SIZE`` but no ``MASTER_ADDR`` (e.g. a job array) each rank writes
its part and exits; a later run with the same options and no ``WORLD_SIZE`` finds every image
done, merges and summarises.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import os
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gfi.data.images import ImageLoadError, load_image
from gfi.data.samples import DataError, Sample
from gfi.evaluation.mapstore import MapStore

log = logging.getLogger("gfi")


class EvalError(ValueError):
    """A problem with the run's options or its output folder (one-line message, exit code 2)."""


# -- options -------------------------------------------------------------------------------------
def parse_value(v: str) -> Any:
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(v.lower(), v)


def parse_set(pairs: Sequence[str]) -> dict[str, Any]:
    out = {}
    for kv in pairs or []:
        if "=" not in kv:
            raise EvalError(f"--set {kv!r}: expected KEY=VALUE, e.g. --set iters2=40")
        k, v = kv.split("=", 1)
        out[k.strip().replace("-", "_")] = parse_value(v.strip())
    return out


def is_gfi(method: str) -> bool:
    return method.startswith("gfi")


def method_settings(args) -> dict:
    """What defines a method's maps: name, model, weights, layers, settings."""
    settings = parse_set(args.set)
    out = {"method": args.method, "model": args.model, "weights": str(args.weights),
           "inversion_layer": args.inversion_layer, "channel_layer": args.channel_layer,
           "multilabel": bool(args.multilabel)}
    if is_gfi(args.method):
        from gfi.methods.gfi import GFIConfig

        try:
            config = GFIConfig.preset(args.preset, **settings)
            if args.method == "gfi-stage1":  # what the method runs (stage 2's fields then do not count)
                config = dataclasses.replace(config, stage2=False)
            out["config"] = config.to_dict()
        except TypeError as exc:
            raise EvalError(f"--set: {exc}; see `gfi explain --help` for GFI's settings") from exc
    else:
        out["options"] = settings
    return out


def make_explainer(args, clf):
    from gfi.methods.gfi import GFIConfig
    from gfi.methods.registry import METHODS, get_method

    if args.method not in METHODS:
        raise EvalError(f"unknown method {args.method!r}; valid methods: {', '.join(METHODS)}")
    settings = parse_set(args.set)
    if is_gfi(args.method):
        return get_method(args.method, clf, config=GFIConfig.preset(args.preset, **settings))
    try:
        return get_method(args.method, clf, **settings)
    except TypeError as exc:
        raise EvalError(f"--set for method {args.method}: {exc}") from exc


# -- distributed ---------------------------------------------------------------------------------
class Shard:
    """This process's place among ``WORLD_SIZE`` (torchrun's environment variables)."""

    def __init__(self, device: torch.device) -> None:
        self.rank = int(os.environ.get("RANK", "0"))
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        if not 0 <= self.rank < self.world:
            raise EvalError(f"RANK={self.rank} is outside WORLD_SIZE={self.world}")
        self.group = False
        if self.world > 1 and os.environ.get("MASTER_ADDR"):
            import torch.distributed as dist

            backend = "nccl" if device.type == "cuda" else "gloo"
            if not dist.is_initialized():
                dist.init_process_group(backend, timeout=datetime.timedelta(days=2))
            self.group = True
            self.backend = backend

    def barrier(self) -> None:
        if self.group:
            import torch.distributed as dist

            if self.backend == "nccl":
                dist.barrier(device_ids=[torch.cuda.current_device()])
            else:
                dist.barrier()

    def close(self) -> None:
        if self.group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.group = False


# -- records -----------------------------------------------------------------------------------------
def read_jsonl(path: Path) -> list[dict]:
    """The lines of a JSONL file; a line cut off by a crash is skipped with a warning."""
    out = []
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning("%s, line %d: not valid JSON (cut off by an interrupted run?); it is redone", path, n)
    return out


def read_records(out: Path) -> dict[str, dict]:
    """Every image's latest line from ``records.jsonl`` and the ``records.part*.jsonl`` files."""
    recs: dict[str, dict] = {}
    files = [out / "records.jsonl", *sorted(out.glob("records.part*.jsonl"))]
    for f in files:
        if f.is_file():
            for r in read_jsonl(f):
                if "key" in r and ("error" not in r or r["key"] not in recs or "error" in recs[r["key"]]):
                    recs[r["key"]] = r
    return recs


class RecordWriter:
    """Appends lines to a JSONL file, flushed and fsynced per call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.is_file() and path.stat().st_size:
            with open(path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    with open(path, "a") as fa:
                        fa.write("\n")
        self.fh = open(path, "a")  # noqa: SIM115 - kept open for the run, closed in close()

    def write(self, records: list[dict]) -> None:
        for r in records:
            self.fh.write(json.dumps(r, allow_nan=True) + "\n")
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        self.fh.close()


def merge_records(out: Path) -> list[dict]:
    recs = sorted(read_records(out).values(), key=lambda r: r.get("index", 0))
    tmp = out / "records.jsonl.tmp"
    with open(tmp, "w") as fh:
        for r in recs:
            fh.write(json.dumps(r) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(out / "records.jsonl")
    for f in out.glob("records.part*.jsonl"):
        f.unlink()
    return recs


# -- the context an experiment scores in ------------------------------------------------------------
class Context:
    """Model, explainer and maps, each made on first use (scoring cached maps needs no model)."""

    def __init__(self, args, dataset, classifier=None, info: dict | None = None) -> None:
        self.args = args
        self.dataset = dataset
        self._clf = classifier
        self.info = info or ({"model": getattr(classifier, "name", "custom")} if classifier is not None else None)
        self._explainer = None
        self._checked = False
        self.keys: list[str] = dataset.keys
        self.cache: dict[str, Any] = {}  # per-run state of an experiment (experiments are stateless)
        self.device = torch.device("cpu")
        self.settings = method_settings(args)
        self.store = MapStore(args.maps or args.out / "maps", self.settings)

    @property
    def clf(self):
        if self._clf is None:
            from gfi.evaluation.models import load_classifier

            self._clf, self.info = load_classifier(self.args)
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

    @property
    def explainer(self):
        if self._explainer is None:
            self._explainer = make_explainer(self.args, self.clf)
        return self._explainer

    def prepare(self, images: list[Tensor]) -> Tensor:
        return self.clf.prepare(images).to(self.clf.device)

    def top1(self, x: Tensor) -> list[int]:
        with torch.no_grad():
            return [int(c) for c in self.clf(x).argmax(-1)]

    def explain_now(self, explainer, x: Tensor, targets: list[list[int]],
                    sizes: list[tuple[int, int]]) -> tuple[list[dict[int, Tensor]], float]:
        """Maps (at each image's size, float32) of ``targets`` for the model-size images ``x``,
        computed without the cache; images with equally many targets share one call."""
        from gfi.viz.overlay import to_original_size

        out: list[dict[int, Tensor]] = [{} for _ in targets]
        groups: dict[int, list[int]] = defaultdict(list)
        for j, t in enumerate(targets):
            if t:
                groups[len(t)].append(j)
        t0 = time.perf_counter()
        for idx in groups.values():
            e = explainer.explain(x[idx], [targets[j] for j in idx])
            for row, j in enumerate(idx):
                maps = to_original_size(e.maps[row].detach(), sizes[j]).cpu()
                for k, c in enumerate(targets[j]):
                    out[j][c] = maps[k].float().numpy().astype("float32")
        out = [{c: torch.from_numpy(m) for c, m in d.items()} for d in out]
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


# -- the loop ----------------------------------------------------------------------------------------
def _jsonable(v):
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    return v


def record_options(exp, args, dataset) -> dict:
    opts = {"experiment": exp.name, "data": str(Path(args.data).resolve()), "dataset": dataset.kind,
            "split": args.split if dataset.kind == "voc" else None, **method_settings(args)}
    opts.update(exp.record_options(args))
    return _jsonable(opts)


def _prepare_out(args, options: dict, shard: Shard) -> None:
    out: Path = args.out
    opt_file = out / "options.json"
    if shard.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        if args.overwrite:
            for f in [opt_file, out / "records.jsonl", out / "summary.json", *out.glob("records.part*.jsonl")]:
                f.unlink(missing_ok=True)
            if args.maps is None and (out / "maps").is_dir():
                for f in (out / "maps").iterdir():
                    f.unlink()
    shard.barrier()
    if opt_file.is_file():
        old = json.loads(opt_file.read_text())
        diff = sorted(k for k in set(old) | set(options) if old.get(k) != options.get(k))
        if diff:
            shown = "; ".join(f"{k}: {old.get(k)!r} before, {options.get(k)!r} now" for k in diff[:4])
            raise EvalError(f"{out} holds a run with other options ({shown}); rerun with the same options to "
                            "resume, or choose another --out, or pass --overwrite to start over")
    shard.barrier()
    if shard.rank == 0 and not opt_file.is_file():
        tmp = opt_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(options, indent=2, sort_keys=True))
        tmp.replace(opt_file)


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


def _device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise EvalError("--device cuda, but CUDA is not available here; use --device cpu")
    if choice in ("auto", "cuda") and torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def run_experiment(exp, args: argparse.Namespace, *, classifier=None, info: dict | None = None) -> dict | None:
    """Run ``exp`` over ``args.data`` into ``args.out``; returns the summary (None on ranks > 0)."""
    from gfi.data.datasets import open_dataset

    if args.batch_size < 1:
        raise EvalError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out = Path(args.out)
    if args.maps is not None:
        args.maps = Path(args.maps)
    dataset = open_dataset(args.data, args.dataset, args.split)
    keys = dataset.keys
    dup = {k for k in keys if keys.count(k) > 1} if len(set(keys)) != len(keys) else set()
    if dup:
        raise EvalError(f"images share an output name: {sorted(dup)[:3]}; rename them")
    exp.check(args, dataset)
    device = _device(args.device)
    shard = Shard(device)
    try:
        options = record_options(exp, args, dataset)
        _prepare_out(args, options, shard)
        ctx = Context(args, dataset, classifier, info)
        ctx.device = device
        if classifier is not None:
            classifier.to(device)
        indices = select(len(dataset), getattr(args, "range", None), args.limit)
        done = {k for k, r in read_records(args.out).items() if "error" not in r}
        remaining = [i for i in indices if keys[i] not in done]
        mine = [i for i in remaining if i % shard.world == shard.rank]  # stable whatever the others did
        if shard.rank == 0 and len(indices) > len(remaining):
            log.info("resuming: %d of %d images already done", len(indices) - len(remaining), len(indices))
        _loop(exp, ctx, mine, shard)
        shard.barrier()
        if shard.rank != 0:
            return None
        if shard.world > 1 and not shard.group:
            log.info("rank 0 of %d without torch.distributed: rerun without WORLD_SIZE to merge", shard.world)
            return None
        records = merge_records(args.out)
        return write_summary(exp, ctx, records, indices, keys)
    finally:
        shard.close()


def _loop(exp, ctx: Context, mine: list[int], shard: Shard) -> None:
    from tqdm import tqdm

    args = ctx.args
    writer = RecordWriter(args.out / f"records.part{shard.rank}.jsonl")
    bar = tqdm(total=len(mine), unit="img", disable=args.quiet or shard.rank != 0 or not mine, file=sys.stderr,
               desc=f"{exp.name} {args.method}", dynamic_ncols=True)
    try:
        for b0 in range(0, len(mine), args.batch_size):
            batch = mine[b0:b0 + args.batch_size]
            samples, images, lines = [], [], []
            for i in batch:
                path = ctx.dataset.paths[i]
                base = {"index": i, "key": ctx.keys[i], "image": str(path)}
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
            if samples:
                lines.extend(_score_batch(exp, ctx, samples, images))
            writer.write(sorted(lines, key=lambda r: r["index"]))
            bar.update(len(batch))
    finally:
        bar.close()
        writer.close()


def _score_batch(exp, ctx: Context, samples: list[Sample], images: list[Tensor]) -> list[dict]:
    x = None
    targets = [exp.targets(s, ctx.args) for s in samples]
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


def write_summary(exp, ctx: Context, records: list[dict], indices: list[int], keys: list[str]) -> dict:
    """``summary.json`` from the lines of the images in ``indices`` (plots written by ``exp``)."""
    from gfi import __version__

    wanted = {keys[i] for i in indices}
    recs = [r for r in records if r["key"] in wanted]
    ok = [r for r in recs if "error" not in r]
    failed = [{"image": r["image"], "error": r["error"]} for r in recs if "error" in r]
    timed = [r["seconds"] for r in ok if r.get("seconds")]
    args = ctx.args
    summary: dict[str, Any] = {"experiment": exp.name, "method": args.method, "model": args.model,
                               "dataset": ctx.dataset.kind, "data": str(args.data)}
    if ok:
        summary.update(exp.summarize(ok, args, args.out))
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
        "options": _jsonable({k: v for k, v in vars(args).items() if k not in ("func", "handler")}),
    })
    tmp = args.out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, allow_nan=True))
    tmp.replace(args.out / "summary.json")
    return summary


# -- experiment base ---------------------------------------------------------------------------------
@dataclasses.dataclass
class Experiment:
    """One metric: which maps it needs (``targets``), how it scores an image, how it summarises."""

    name: str = ""
    help: str = ""
    default_method: str = "gfi"
    needs_model: bool = False  # scoring itself runs the model (deletion, adversarial, sanity)
    datasets: tuple[str, ...] = ("imagenet", "voc", "sod")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        return None

    def record_options(self, args) -> dict:
        return {}

    def check(self, args, dataset) -> None:
        if dataset.kind not in self.datasets:
            raise EvalError(f"{self.name} needs a dataset of kind {' or '.join(self.datasets)}; "
                            f"{args.data} is {dataset.kind}")

    def check_sample(self, sample: Sample, image: Tensor) -> None:
        return None

    def targets(self, sample: Sample, args) -> list[int] | None:
        """Classes to map (None: the model's top-1)."""
        return sample.classes[:1] or None

    def batch_extras(self, ctx: Context, samples, images, x, targets) -> tuple[Any, float]:
        return None, 0.0

    def score(self, ctx: Context, sample: Sample, image: Tensor, maps: dict[int, Tensor], j: int, extra) -> dict:
        raise NotImplementedError

    def summarize(self, records: list[dict], args, out: Path) -> dict:
        raise NotImplementedError
