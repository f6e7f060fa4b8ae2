"""A few grids of the grid pointing game with each method's four class maps, in the layout of the
paper's Fig. 3 (input, then one map per class), from `gfi eval grid` runs that cached their maps.

    python benchmarks/grid_figure.py RUN_DIR [RUN_DIR ...] --grids 2 --out docs/figures/grid_maps.png

Every RUN_DIR is one method's run on the same grids (``grids/``, ``records.jsonl``, ``maps/``; the
first run's grids are drawn). Each map is titled with its class and the mass share that falls in
that class's cell (the dashed cell), as scored by the run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image


def records(folder: Path) -> dict[str, dict]:
    out = {}
    for f in sorted(folder.glob("records*.jsonl")):
        for line in f.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                out[r["key"]] = r
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path, nargs="+")
    p.add_argument("--grids", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("docs/figures/grid_maps.png"))
    a = p.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gfi.models.presets import imagenet_class_names
    from gfi.viz.overlay import overlay

    names = imagenet_class_names()
    recs = [records(r) for r in a.runs]
    methods = [json.loads((r / "options.json").read_text()).get("method", r.name) for r in a.runs]
    keys = [k for k in recs[0] if all(k in rr for rr in recs)][: a.grids]
    fig, axes = plt.subplots(len(keys) * len(a.runs), 5, figsize=(14, 2.9 * len(keys) * len(a.runs)), squeeze=False)
    for gi, key in enumerate(keys):
        pic = np.asarray(Image.open(a.runs[0] / "grids" / f"{key}.png").convert("RGB")).astype(np.float32) / 255
        h, w = pic.shape[:2]
        for mi, (run, rr, method) in enumerate(zip(a.runs, recs, methods, strict=True)):
            row = axes[gi * len(a.runs) + mi]
            row[0].imshow(pic)
            row[0].set_title(f"{key}\n{method}", fontsize=8)
            for ti, t in enumerate(rr[key]["targets"][:4]):
                m = np.load(run / "maps" / f"{key}_{t['class']}.npy").astype(np.float32)
                ax = row[1 + ti]
                ax.imshow(overlay(pic, m))
                cy, cx = divmod(t["cell"], 2)
                ax.add_patch(plt.Rectangle((cx * w / 2, cy * h / 2), w / 2, h / 2, fill=False, color="w", lw=1.2,
                                           ls="--"))
                ax.set_title(f"{names[t['class']].split(',')[0]}: {t['mass']:.2f} in its cell", fontsize=8)
            for ax in row:
                ax.axis("off")
    fig.tight_layout()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=50)
    print(a.out)


if __name__ == "__main__":
    main()
