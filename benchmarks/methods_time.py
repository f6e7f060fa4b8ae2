"""Seconds per image of every method on EfficientNet-Lite0 (224x224, CPU), top-1 target.

    python benchmarks/methods_time.py [--methods all|a,b] [--settings published,fast] [--repeats 1] [--threads 2]

Each method runs on the bundled photo (dog_cat.jpg) after a one-image warm-up of the network;
``published`` is each method's default (its paper's setting), ``fast`` its documented cheaper
setting (only for methods that have one). The median of ``--repeats`` runs is reported. Writes
benchmarks/results/methods_time.json (after every row) and prints a markdown table. Methods that cannot run on the
model (e.g. LRP on EfficientNet) are recorded with the reason.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from gfi.data import load_image
from gfi.errors import NotApplicable
from gfi.methods.registry import METHODS, get_method
from gfi.models.presets import load_model

PHOTO = Path(__file__).resolve().parents[1] / "src" / "gfi" / "assets" / "dog_cat.jpg"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="all")
    ap.add_argument("--settings", default="published,fast")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--note", default="", help="free text stored with the results (e.g. 'machine shared')")
    ap.add_argument("--append", action="store_true", help="add the rows to an existing --out file")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "methods_time.json"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = list(METHODS) if args.methods == "all" else args.methods.split(",")
    clf, _ = load_model("efficientnet_lite0")
    x = clf.prepare(load_image(PHOTO))
    with torch.no_grad():
        clf(x)  # warm-up
    rows: list[dict] = []
    out_path = Path(args.out)
    old = json.loads(out_path.read_text())["rows"] if args.append and out_path.exists() else []

    def save() -> None:
        done = {(r["method"], r["settings"]) for r in rows}
        out = {"model": "efficientnet_lite0", "image": PHOTO.name, "torch": torch.__version__,
               "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
               "note": args.note, "rows": [r for r in old if (r["method"], r["settings"]) not in done] + rows}
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(out, indent=1))

    print("| method | settings | options | s / image |\n| --- | --- | --- | --- |")
    for name in names:
        for setting in args.settings.split(","):
            opts = dict(METHODS[name].cheaper) if setting == "fast" else {}
            if setting == "fast" and not opts:
                continue
            row = {"method": name, "settings": setting, "options": {k: list(v) if isinstance(v, tuple) else v
                                                                     for k, v in opts.items()}}
            explainer = get_method(name, clf, **opts)
            times = []
            try:
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    explainer.explain(x)
                    times.append(time.perf_counter() - t0)
            except NotApplicable as exc:  # the method cannot run on this model: recorded, not hidden
                row["error"] = str(exc)
                print(f"| {name} | {setting} | - | cannot run: {str(exc)[:60]}... |", flush=True)
                rows.append(row)
                save()
                continue
            row["seconds_per_image"] = round(statistics.median(times), 3)
            row["all"] = [round(t, 3) for t in times]
            rows.append(row)
            save()
            print(f"| {name} | {setting} | {row['options'] or ''} | {row['seconds_per_image']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
