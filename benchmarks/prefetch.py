"""Prefetch gain: Grad-CAM pointing over the dev images with and without reading ahead, in one process.

    python benchmarks/prefetch.py [--data ../shared/data/imagenet-val-dev] [--rounds 2] [--threads 0]

Each round runs ``gfi eval pointing --method gradcam`` over every image twice, once with the
default prefetch and once with ``--no-prefetch`` (the order alternates between rounds), each into
a fresh folder with a fresh map store, so every map is computed. Prints images per second of each
and the ratio; ``--json FILE`` keeps them (benchmarks/results/prefetch.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from gfi.evaluation.experiment import EvalRun
from gfi.evaluation.loop import run_models
from gfi.evaluation.registry import EXPERIMENTS
from gfi.models.presets import load_model


def one(data: Path, out: Path, clf, info, prefetch: bool, batch_size: int) -> tuple[float, int]:
    exp = EXPERIMENTS["pointing"]
    run = EvalRun(data=data, out=out, method="gradcam", quiet=True, prefetch=prefetch, batch_size=batch_size)
    t0 = time.perf_counter()
    summaries = run_models(exp, run, exp.options(), classifier=clf, info=info)
    seconds = time.perf_counter() - t0
    n = next(iter(summaries.values()))["n_images"]
    return seconds, n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data/imagenet-val-dev"))
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    clf, info = load_model("efficientnet_lite0")
    rates: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            for prefetch in ((True, False) if r % 2 == 0 else (False, True)):
                seconds, n = one(a.data, Path(tmp) / f"r{r}-{prefetch}", clf, info, prefetch, a.batch_size)
                rates[prefetch].append(n / seconds)
                print(f"round {r + 1}: prefetch={prefetch}: {n} images in {seconds:.1f} s = {n / seconds:.2f} img/s",
                      flush=True)
    on, off = statistics.mean(rates[True]), statistics.mean(rates[False])
    result = {"images_per_second_prefetch": round(on, 3), "images_per_second_no_prefetch": round(off, 3),
              "ratio": round(on / off, 3), "rounds": a.rounds, "batch_size": a.batch_size,
              "threads": torch.get_num_threads(), "per_round": {str(k): [round(v, 3) for v in vs]
                                                                 for k, vs in rates.items()}}
    print(json.dumps(result, indent=1))
    if a.json:
        a.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
