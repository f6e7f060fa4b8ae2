"""The evidence check (:mod:`gfi.evidence`): what it costs, how often it fires, and what helps a
map that fails it.

    python benchmarks/evidence.py cost                      # seconds of the check against the method's
    python benchmarks/evidence.py rates --images 150:300    # share of maps that fail, per method
    python benchmarks/evidence.py two-dogs                  # greyhound beside another dog: what helps

* ``cost``: for each method and batch size, the method's explain call on B random images (one
  target each) and the check of its maps (:func:`gfi.evidence.evidence_of`), medians over
  ``--repeats`` (the two take turns).
* ``rates``: the dev images (``--data``, ImageNet layout; ``--images`` a range), each image's true
  class, every method of ``--methods``: the share of maps that fail the check and why, and the same
  maps judged as soft masks (Eq. 2, 4 with m itself, the rule the check does not use); then, on the
  maps of GFI's default that fail, which of :data:`HELPS` holds the evidence instead.
* ``two-dogs``: a photo of two dogs made from the dev data: the Italian greyhound of the reporting
  half (``ILSVRC2012_val_00046154``) beside each other dog of the reporting half (the greyhound on
  the left for half of them), squeezed to the model's input as any photo is. Target: Italian
  greyhound (171). For each variant (Grad-CAM, GFI's presets, more stage-2 iterations, the other
  dog's class as a second target with ``joint=contrastive`` or ``separate``): the check's verdict and
  the share of the map's mass on the greyhound's half.

Writes ``--json`` (default ``benchmarks/results/evidence_<part>.json``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

GREYHOUND = "ILSVRC2012_val_00046154"
GREYHOUND_CLASS = 171


def _model():
    from gfi.models.presets import load_model

    clf, _ = load_model("efficientnet_lite0")
    return clf


def cost(args) -> dict:
    from gfi.evidence import evidence_of
    from gfi.methods.registry import get_method

    clf = _model()
    g = torch.Generator().manual_seed(0)
    rows = []
    for method, preset in [("gradcam", None), ("gfi", "fast"), ("gfi", "default"), ("gfi", "paper")]:
        for b in args.batches:
            x = torch.rand(b, 3, *clf.input_size, generator=g)
            ex = get_method(method, clf, preset) if preset else get_method(method, clf)
            t_method, t_check = [], []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                e = ex.explain(x, None)
                t1 = time.perf_counter()
                evidence_of(ex, x, e)
                t2 = time.perf_counter()
                t_method.append(t1 - t0)
                t_check.append(t2 - t1)
            m, c = statistics.median(t_method), statistics.median(t_check)
            rows.append({"method": method, "preset": preset, "batch": b, "method_s": round(m, 4),
                         "check_s": round(c, 4), "check_share": round(c / m, 4)})
            print(f"{method:8s} {preset or '':8s} B={b}: method {m:.3f} s, check {c:.4f} s ({100 * c / m:.1f}%)",
                  flush=True)
    return {"rows": rows}


def _dev(args):
    from gfi.data.datasets import open_dataset

    return open_dataset(args.data)


#: what is tried on the maps of GFI's default that fail the check (``rates``): label, method, preset, settings,
#: and whether the image's most likely other class is given as a second target
HELPS = [
    ("gradcam", "gradcam", None, {}, False),
    ("gfi fast", "gfi", "fast", {}, False),
    ("gfi paper", "gfi", "paper", {}, False),
    ("gfi iters2=90", "gfi", None, {"iters2": 90}, False),
    ("gfi contrastive (+ the likeliest other class)", "gfi", None, {"joint": "contrastive"}, True),
]


def soft_mask_fails(clf, x, maps, targets) -> torch.Tensor:
    """(B, K) where the maps, read as soft masks (Eq. 2 and 4 with m itself, the check's blur), keep
    less of the class than they remove: the rule the check does not use (gfi.evidence says why)."""
    from gfi.evidence import background
    from gfi.masks import KeptAndRemoved

    b, k = targets.shape
    with torch.no_grad():
        both = KeptAndRemoved(x, background(x))(maps.clamp(0, 1)).flatten(0, 2)
        s = clf.scores(clf(both)).view(2, b, k, -1).gather(-1, targets.view(1, b, k, 1).expand(2, b, k, 1))
    return s[0, ..., 0] < s[1, ..., 0]


def rates(args) -> dict:
    """The share of maps that fail, per method; then, on the maps of GFI's default that fail, which of
    :data:`HELPS` holds the evidence instead."""
    from gfi.data.images import load_image
    from gfi.evidence import evidence_of
    from gfi.methods.registry import get_method

    clf = _model()
    ds = _dev(args)
    lo, hi = (int(v) for v in args.images.split(":"))
    samples = [ds[i] for i in range(lo, min(hi, len(ds)))]
    images = {s.path: clf.prepare(load_image(s.path)) for s in samples}
    out: dict = {"images": f"{lo}:{hi}", "methods": {}}
    failing = []
    for spec in args.methods.split(","):
        method, _, preset = spec.partition("@")
        ex = get_method(method, clf, preset) if preset else get_method(method, clf)
        counts = {"maps": 0, "kept_below_removed": 0, "empty": 0, "nonfinite": 0, "soft_mask_fails": 0}
        t0 = time.perf_counter()
        for i in range(0, len(samples), args.batch):
            chunk = samples[i:i + args.batch]
            x = torch.cat([images[s.path] for s in chunk])
            t = [[int(s.labels[0])] for s in chunk]
            e = ex.explain(x, t)
            ev = evidence_of(ex, x, e)
            counts["soft_mask_fails"] += int(soft_mask_fails(clf, x, e.maps, e.targets).sum())
            for r, s in enumerate(chunk):
                counts["maps"] += 1
                p = ev.problem(r, 0)
                if p:
                    counts[p] += 1
                    if spec == "gfi":
                        failing.append((s, float(e.probs[r, 0]), float(ev.prob_kept[r, 0]),
                                        float(ev.prob_removed[r, 0])))
        counts["seconds"] = round(time.perf_counter() - t0, 1)
        out["methods"][spec] = counts
        fails = counts["kept_below_removed"] + counts["empty"] + counts["nonfinite"]
        print(f"{spec:24s} {fails}/{counts['maps']} fail ({counts['kept_below_removed']} kept<removed, "
              f"{counts['empty']} empty; as soft masks {counts['soft_mask_fails']}) in {counts['seconds']} s",
              flush=True)
    if failing:
        out["gfi_failures"] = [{"image": Path(s.path).name, "class": int(s.labels[0]), "prob": p, "prob_kept": k,
                                "prob_removed": r} for s, p, k, r in failing]
        out["helps"] = {}
        for label, method, preset, settings, second in HELPS:
            ex = get_method(method, clf, preset, **settings) if preset else get_method(method, clf, **settings)
            held = 0
            for s, *_ in failing:
                x = images[s.path]
                c = int(s.labels[0])
                targets = [[c]]
                if second:
                    with torch.no_grad():
                        order = clf(x)[0].argsort(descending=True).tolist()
                    targets = [[c, next(o for o in order if o != c)]]
                e = ex.explain(x, targets)
                held += evidence_of(ex, x, e).problem(0, 0) is None
            out["helps"][label] = held
            print(f"  on GFI's {len(failing)} failing maps, {label}: holds on {held}", flush=True)
    return out


def _two_dog_images(args):
    """(image, the greyhound's side, the other dog's class, its file) for each other dog of the range."""
    from gfi.data.images import load_image

    ds = _dev(args)
    lo, hi = (int(v) for v in args.images.split(":"))
    grey = next(ds[i] for i in range(len(ds)) if Path(ds[i].path).stem == GREYHOUND)
    g = load_image(grey.path)
    out = []
    dogs = [ds[i] for i in range(lo, min(hi, len(ds))) if 151 <= int(ds[i].labels[0]) <= 268
            and int(ds[i].labels[0]) != GREYHOUND_CLASS]
    for n, s in enumerate(dogs):
        d = load_image(s.path)
        d = torch.nn.functional.interpolate(d[None], size=g.shape[-2:], mode="bilinear", antialias=True,
                                            align_corners=False)[0]
        left = n % 2 == 0
        out.append((torch.cat([g, d] if left else [d, g], -1), "left" if left else "right", int(s.labels[0]),
                    Path(s.path).name))
    return out


VARIANTS = [
    ("gradcam", "gradcam", None, {}, False),
    ("gfi default", "gfi", None, {}, False),
    ("gfi fast", "gfi", "fast", {}, False),
    ("gfi paper", "gfi", "paper", {}, False),
    ("gfi iters2=90", "gfi", None, {"iters2": 90}, False),
    ("gfi contrastive (+ other dog)", "gfi", None, {"joint": "contrastive"}, True),
    ("gfi separate (+ other dog)", "gfi", None, {"joint": "separate"}, True),
]


def two_dogs(args) -> dict:
    from gfi.evidence import evidence_of
    from gfi.methods.registry import get_method

    clf = _model()
    pairs = _two_dog_images(args)
    results = {}
    variants = [v for v in VARIANTS if not args.variants or v[0] in args.variants.split(",")]
    for label, method, preset, settings, second in variants:
        ex = get_method(method, clf, preset, **settings) if preset else get_method(method, clf, **settings)
        rows = []
        for img, side, other, name in pairs:
            x = clf.prepare(img)
            targets = [[GREYHOUND_CLASS, other]] if second else [[GREYHOUND_CLASS]]
            e = ex.explain(x, targets)
            ev = evidence_of(ex, x, e)
            m = e.maps[0, 0]
            w = m.shape[-1] // 2
            half = m[:, :w] if side == "left" else m[:, w:]
            share = float(half.sum() / m.sum()) if float(m.sum()) > 0 else float("nan")
            rows.append({"other": name, "side": side, "holds": ev.problem(0, 0) is None,
                         "problem": ev.problem(0, 0), "prob_kept": float(ev.prob_kept[0, 0]),
                         "prob_removed": float(ev.prob_removed[0, 0]), "share_on_greyhound": share,
                         "prob": float(e.probs[0, 0])})
        n_fail = sum(not r["holds"] for r in rows)
        shares = [r["share_on_greyhound"] for r in rows]
        results[label] = {"rows": rows, "fail": n_fail, "n": len(rows),
                          "mean_share_on_greyhound": statistics.fmean(shares),
                          "maps_mostly_on_greyhound": sum(s > 0.5 for s in shares)}
        print(f"{label:32s} fails {n_fail}/{len(rows)}; mass on the greyhound {statistics.fmean(shares):.2f} "
              f"(> half in {results[label]['maps_mostly_on_greyhound']})", flush=True)
    # the maps the default fails: what each variant does with them
    if "gfi default" not in results:
        return results
    failing = [i for i, r in enumerate(results["gfi default"]["rows"]) if not r["holds"]]
    results["default_failures"] = {label: sum(results[label]["rows"][i]["holds"] for i in failing)
                                   for label, *_ in variants}
    print(f"default fails on {len(failing)} pair(s); each variant holds on: {results['default_failures']}")
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("part", choices=["cost", "rates", "two-dogs"])
    p.add_argument("--data", default="/work/shared/data/imagenet-val-dev")
    p.add_argument("--images", default="150:300")
    p.add_argument("--methods", default="gradcam,gradient,integrated-gradients,gfi@fast,gfi")
    p.add_argument("--variants", help="two-dogs: only these variants (comma-separated labels; default all)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.set_num_threads(1)
    out = {"cost": cost, "rates": rates, "two-dogs": two_dogs}[args.part](args)
    path = args.json or Path(__file__).parent / "results" / f"evidence_{args.part.replace('-', '_')}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
