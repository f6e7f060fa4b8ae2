"""Draw docs/figures/<photo>.png: the input with the hand-drawn boxes, the stage-1 inversion map,
and the class map of the most probable class of each boxed object (default settings).

    python scripts/demo_figure.py ../shared/data/demo/dog_bike_truck.jpg ../shared/data/demo/boxes.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from gfi import GuidedFeatureInversion, load_image, load_model
from gfi.viz.overlay import overlay, to_original_size
from gfi.viz.report import format_prob


def main(image: str, boxes_file: str, out_dir: str = "docs/figures") -> None:
    clf, _ = load_model()
    img = load_image(image)
    objects = json.loads(Path(boxes_file).read_text())[Path(image).name]
    x = clf.prepare(img)
    with torch.no_grad():
        probs = clf.scores(clf(x))[0]
    targets = [o["classes"][0] + int(probs[o["classes"][0]:o["classes"][1] + 1].argmax()) for o in objects]
    e = GuidedFeatureInversion(clf).explain(x, [targets])
    size = tuple(img.shape[-2:])
    maps = to_original_size(e.maps[0], size)
    stage1 = to_original_size(e.stage1_map[0], size)
    pic = img.permute(1, 2, 0).numpy()
    fig, axes = plt.subplots(1, 2 + len(objects), figsize=(3.2 * (2 + len(objects)), 3.2 * size[0] / size[1] + 0.6))
    axes[0].imshow(pic)
    axes[0].set_title("input + boxes", fontsize=9)
    axes[1].imshow(overlay(pic, stage1.numpy()))
    axes[1].set_title("stage 1 (class-agnostic)", fontsize=9)
    report = []
    for k, (o, c) in enumerate(zip(objects, targets, strict=True)):
        b = o["box"]
        axes[0].add_patch(plt.Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, color="w", lw=1.5))
        ax = axes[2 + k]
        ax.imshow(overlay(pic, maps[k].numpy()))
        y, xx = divmod(int(maps[k].argmax()), size[1])
        ax.plot([xx], [y], "w+", ms=12, mew=2)
        ax.add_patch(plt.Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, color="w", lw=1, ls="--"))
        hit = b[0] <= xx <= b[2] and b[1] <= y <= b[3]
        name = clf.class_name(c).split(",")[0]
        ax.set_title(f"{o['object']}: {name} p={format_prob(float(probs[c]))}", fontsize=9)
        report.append(f"{o['object']}: class {c} ({name}), p={format_prob(float(probs[c]))}, maximum at ({xx}, {y}), "
                      f"{'inside' if hit else 'outside'} its box")
    for ax in axes:
        ax.axis("off")
    out = Path(out_dir) / (Path(image).stem + ".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80, bbox_inches="tight")
    print(out)
    print("\n".join(report))


if __name__ == "__main__":
    main(*sys.argv[1:])
