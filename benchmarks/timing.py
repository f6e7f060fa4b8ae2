"""Seconds per image of GFI (both stages) at 224x224 on this machine, per model.

    python benchmarks/timing.py [--models efficientnet_lite0,vgg19,resnet18,alexnet] [--preset paper] [--repeats 3]

Random weights cost the same as trained ones, so VGG-19/ResNet-18/AlexNet run without their
ImageNet weights. Prints a markdown table and writes benchmarks/results/timing.json. The median
of ``--repeats`` runs is reported (this machine is noisy).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from gfi.methods.gfi import GFIConfig, GuidedFeatureInversion
from gfi.models.presets import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="efficientnet_lite0,vgg19,resnet18,alexnet")
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "timing.json"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for name in args.models.split(","):
        clf, _ = load_model(name, weights="default" if name.startswith("efficientnet") else "random")
        gfi = GuidedFeatureInversion(clf, GFIConfig.preset(args.preset))
        x = torch.rand(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        GuidedFeatureInversion(clf, GFIConfig.preset(args.preset, iters1=1, iters2=1)).explain(x[:1], 0)  # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            gfi.explain(x, 0)
            times.append((time.perf_counter() - t0) / args.batch)
        rows.append({"model": name, "seconds_per_image": round(statistics.median(times), 2),
                     "all": [round(t, 2) for t in times], "batch": args.batch})
        print(f"| {name} | {rows[-1]['seconds_per_image']:.2f} | {rows[-1]['all']} |", flush=True)
    out = {"preset": args.preset, "config": GFIConfig.preset(args.preset).to_dict(), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
