"""Explanation quality on the dev data: localization error and pointing accuracy (ImageNet dev
split), salient-object F-beta and MAE (SOD dev set). Paired: every method sees the same images.

    python benchmarks/quality.py --split tune --limit 40 --method gfi --set score=log --out runs/x.json
    python benchmarks/quality.py --dataset sod --method gfi-stage1 --out runs/sod.json

The ImageNet dev folder's first 150 sorted files are the tuning half, the last 150 the
reporting half (never tune on it). Per-image records are written, so summaries with confidence
intervals and alpha chosen on the tuning half can be made afterwards (``--summarize``).

``gfi eval`` (docs/EVALUATION.md) runs the same metrics (the same library functions) on any
ImageNet/VOC/salient-object folder, resumable and sharded; this script stays for its paired
comparisons of the runs behind docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gfi.data.imagenet import ImageNetVal
from gfi.data.images import load_image
from gfi.evaluation.metrics import PAPER_ALPHAS, localization_hits, pointing_hit, saliency_scores
from gfi.methods.registry import get_method, method_class
from gfi.methods.spec import resolve
from gfi.models.presets import load_model

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def make_explainer(args, clf):
    """The method with ``--preset`` and ``--set`` (strings parsed by each field's type) for a method
    with presets (GFI, pixel-mask), the method's defaults otherwise; and the settings to record."""
    if not method_class(args.method).presets:
        return get_method(args.method, clf), {}
    explainer = resolve(args.method, args.preset, dict(kv.split("=", 1) for kv in args.set)).explainer(clf)
    return explainer, explainer.config.to_dict()


def run(args) -> None:
    torch.set_num_threads(args.threads)
    clf, _ = load_model(args.model)
    if args.l0 or args.l1:
        clf = clf.with_layers(args.l0 or None, args.l1 or None)
    explainer, cfg = make_explainer(args, clf)
    records = []
    t0 = time.time()
    if args.dataset == "imagenet":
        ds = ImageNetVal(DATA / "imagenet-val-dev")
        idx = list(range(150)) if args.split == "tune" else list(range(150, 300))
        idx = idx[args.start:args.start + args.limit] if args.limit else idx[args.start:]
        for i0 in range(0, len(idx), args.batch):
            samples = [ds[i] for i in idx[i0:i0 + args.batch]]
            imgs = [load_image(s.path) for s in samples]
            x = clf.prepare(imgs)
            e = explainer.explain(x, [s.label for s in samples])
            for j, (s, img) in enumerate(zip(samples, imgs, strict=True)):
                sal = F.interpolate(e.maps[j:j + 1, :1].float(), size=img.shape[-2:], mode="bilinear",
                                    align_corners=False)[0, 0]
                records.append({
                    "file": s.path.name,
                    "loc": localization_hits(sal, s.boxes).int().tolist(),
                    "point": int(pointing_hit(sal, s.boxes)),
                    "prob": float(e.probs[j, 0]),
                    "collapsed": bool(e.collapsed[j, 0]) if e.collapsed is not None else False,
                })
            print(f"{len(records)}/{len(idx)} {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    else:
        root = DATA / "sod-dev"
        paths = sorted((root / "images").glob("*.jpg"))
        paths = paths[args.start:args.start + args.limit] if args.limit else paths[args.start:]
        for i0 in range(0, len(paths), args.batch):
            chunk = paths[i0:i0 + args.batch]
            imgs = [load_image(p) for p in chunk]
            e = explainer.explain(clf.prepare(imgs))
            for j, (p, img) in enumerate(zip(chunk, imgs, strict=True)):
                smap = e.stage1_map[j:j + 1, None] if e.stage1_map is not None else e.maps[j:j + 1, :1]
                sal = F.interpolate(smap.float(), size=img.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
                gt = load_image(root / "masks" / f"{p.stem}.png")[0] > 0.5
                records.append({"file": p.name, **saliency_scores(sal, gt)})
            print(f"{len(records)}/{len(paths)} {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    out = {"method": args.method, "model": args.model, "preset": args.preset, "set": args.set, "config": cfg,
           "l0": str(clf.inversion_layer), "l1": str(clf.channel_layer), "dataset": args.dataset,
           "split": args.split, "seconds_per_image": (time.time() - t0) / max(1, len(records)),
           "records": records}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out))
    print(json.dumps(summarize(out)))


def mean_ci(xs: list[float]) -> tuple[float, float]:
    n = len(xs)
    m = sum(xs) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / max(1, n - 1))
    return m, 1.96 * sd / math.sqrt(n)


def summarize(run: dict, alpha: float | None = None) -> dict:
    recs = run["records"]
    s = {"method": run["method"], "set": run.get("set"), "l1": run.get("l1"), "n": len(recs),
         "sec/img": round(run["seconds_per_image"], 2)}
    if run["dataset"] == "imagenet":
        per_alpha = [sum(r["loc"][a] for r in recs) / len(recs) for a in range(len(PAPER_ALPHAS))]
        best = max(range(len(per_alpha)), key=lambda a: per_alpha[a]) if alpha is None else PAPER_ALPHAS.index(alpha)
        err, ci = mean_ci([1 - r["loc"][best] for r in recs])
        pt, pci = mean_ci([r["point"] for r in recs])
        s.update(alpha=PAPER_ALPHAS[best], loc_error=round(100 * err, 1), loc_ci=round(100 * ci, 1),
                 pointing=round(100 * pt, 1), point_ci=round(100 * pci, 1),
                 collapsed=sum(r["collapsed"] for r in recs))
    else:
        for k in ("f_beta", "precision", "recall", "mae"):
            s[k] = round(sum(r[k] for r in recs) / len(recs), 3)
    return s


def paired(a: dict, b: dict, alpha: float | None) -> dict:
    """Mean difference a - b over the images both runs have, with a 95% interval (paired)."""
    rb = {r["file"]: r for r in b["records"]}
    common = [r for r in a["records"] if r["file"] in rb]
    out = {"n": len(common)}
    if a["dataset"] == "imagenet":
        ia = PAPER_ALPHAS.index(alpha if alpha is not None else summarize(a)["alpha"])
        ib = PAPER_ALPHAS.index(summarize(b)["alpha"])
        m, ci = mean_ci([(1 - r["loc"][ia]) - (1 - rb[r["file"]]["loc"][ib]) for r in common])
        out.update(loc_error_diff=round(100 * m, 1), loc_ci=round(100 * ci, 1))
        m, ci = mean_ci([r["point"] - rb[r["file"]]["point"] for r in common])
        out.update(pointing_diff=round(100 * m, 1), point_ci=round(100 * ci, 1))
    else:
        for k in ("f_beta", "mae"):
            m, ci = mean_ci([r[k] - rb[r["file"]][k] for r in common])
            out[k + "_diff"] = round(m, 3)
            out[k + "_ci"] = round(ci, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=["imagenet", "sod"], default="imagenet")
    ap.add_argument("--split", choices=["tune", "report"], default="tune")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--method", default="gfi")
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--set", action="append", default=[], help="GFIConfig override KEY=VALUE")
    ap.add_argument("--l0", default="")
    ap.add_argument("--l1", default="")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="")
    ap.add_argument("--summarize", nargs="*", help="print summaries of saved runs")
    ap.add_argument("--alpha-from", nargs="*", default=[],
                    help="with --summarize: tuning-split runs (same order) whose best alpha is applied")
    ap.add_argument("--paired", help="with --summarize: a run to compare every run with, image by image")
    args = ap.parse_args()
    if args.summarize is not None:
        base = json.loads(Path(args.paired).read_text()) if args.paired else None
        for i, path in enumerate(args.summarize):
            run_ = json.loads(Path(path).read_text())
            alpha = summarize(json.loads(Path(args.alpha_from[i]).read_text()))["alpha"] if args.alpha_from else None
            s = summarize(run_, alpha)
            if base is not None:
                s["vs_" + base["method"]] = paired(run_, base, s.get("alpha"))
            print(json.dumps(s))
        return
    run(args)


if __name__ == "__main__":
    main()
