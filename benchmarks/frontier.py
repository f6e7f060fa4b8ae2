"""Quality per second: every method's localization error, pointing and insertion against its seconds
per image, with the Pareto front (docs/figures/frontier.png, the table in docs/PERFORMANCE.md).

    python benchmarks/frontier.py benchmarks/results/eval [--timing benchmarks/results/frontier_timing.json] \
        [--figure docs/figures/frontier.png] [--json benchmarks/results/frontier.json]
    python benchmarks/frontier.py --measure-timing N --names gradcam,gfi-default,... --out FILE

Quality comes from `gfi eval` runs on the same images (the dev reporting half), one folder per
metric and name: ``loc-<name>`` (localization error), ``pt-<name>`` (pointing, per image),
``del-<name>`` (insertion AUC). Seconds per image come from ``--timing`` when it has the name: a
measurement in ONE process that explains the same N images with every name in turn, alternating
(``--measure-timing``), so every cost is read under the same conditions (a name's seconds are the
fastest of its rounds' means, as ``timeit`` advises: on a shared machine a round is only ever
slowed down by other load, never sped up; every round's mean is kept in the file); otherwise from the run's
own ``seconds_per_image`` (its map store's timing, taken when that run was made), marked ``*``.
A point is on the Pareto front when no other point is both at most as slow and at least as good on
that metric (strictly better on one of the two). Only names scored on all 150 reporting images
take part in the front; the slow methods measured on a few of them (their runs cost minutes per
image here) are drawn hollow, with their image count, and are not on any front.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

#: how each name of the eval folder runs, for --measure-timing (method, settings); None: not timed
RECIPES: dict[str, tuple[str, dict]] = {
    "gradcam": ("gradcam", {}), "cam": ("cam", {}), "center": ("center", {}), "gradient": ("gradient", {}),
    "guided-backprop": ("guided-backprop", {}), "smoothgrad": ("smoothgrad", {"samples": 10}),
    "integrated-gradients": ("integrated-gradients", {"steps": 20}), "gfi-default": ("gfi", {}),
    "gfi-stage1": ("gfi-stage1", {}), "gfi-paper": ("gfi", "paper"),
    "mask": ("mask", {"iterations": 100}), "rise": ("rise", {"n_masks": 500}),
    "extremal": ("extremal", {"iterations": 300, "areas": (0.1,)}), "pixel-mask": ("pixel-mask", {}),
    "gfi-fast": ("gfi", "fast"),
    # the two earlier defaults of docs/RESULTS.md (second round, first round) and stage 1 of the first
    "gfi-default-r2": ("gfi", {"blur_kernel2": 11, "blur_sigma2": 5.0}),
    "gfi-default-r1": ("gfi", {"area1": 0.0, "lr2": 0.01, "area2": 0.5, "blur_kernel2": 11, "blur_sigma2": 5.0}),
    "gfi-stage1-r1": ("gfi-stage1", {"area1": 0.0}),
    # budgets beside the fast preset (4 + 8): iters1 + iters2
    "gfi-b4x4": ("gfi", {"iters1": 4, "iters2": 4}), "gfi-b4x16": ("gfi", {"iters1": 4, "iters2": 16}),
}
#: the budget grid of GFI, iters1 x iters2 (the default's other settings): gfi-b<iters1>x<iters2>
BUDGET_ITERS1, BUDGET_ITERS2 = (0, 4, 10), (4, 8, 16, 30, 70)
RECIPES.update({f"gfi-b{i1}x{i2}": ("gfi", {"iters1": i1, "iters2": i2})
                for i1 in BUDGET_ITERS1 for i2 in BUDGET_ITERS2})
#: iters2 of the names whose maps are the default's but for the iteration counts. Stage 2 starts from
#: Grad-CAM's weights with a fresh optimiser, so iters1 changes the stage-1 map and nothing of the
#: class maps (tests/methods/test_gfi_mechanics.py::test_iters1_changes_only_the_stage1_map_...):
#: every budget with the same iters2 has the same quality, and one quality run per iters2 serves all.
SAME_CLASS_MAPS_AS_ITERS2 = {"gfi-default": 30, "gfi-fast": 8, "gfi-b4x4": 4, "gfi-b4x16": 16}
#: budgets that are a named setting (same recipe): their seconds are that name's
BUDGET_ALIASES = {"gfi-b4x8": "gfi-fast", "gfi-b10x30": "gfi-default"}
METRICS = [("loc", "error", "localization error (lower is better)", False),
           ("pt", "accuracy_per_image", "pointing (higher is better)", True),
           ("del", "insertion_auc", "insertion AUC (higher is better)", True)]


def summaries(root: Path) -> dict[str, dict[str, dict]]:
    """{name: {"loc"/"pt"/"del": summary}} of the runs under ``root``."""
    out: dict[str, dict[str, dict]] = {}
    for f in sorted(root.glob("*-*/summary.json")):
        kind, _, name = f.parent.name.partition("-")
        if kind in ("loc", "pt", "del"):
            out.setdefault(name, {})[kind] = json.loads(f.read_text())
    return out


def borrow_budget_quality(runs: dict[str, dict[str, dict]], timing: dict[str, float]) -> dict[str, str]:
    """Give every budget name gfi-b<i1>x<i2> that has no runs of its own the runs of a name with the
    same iters2 (its class maps are identical, see SAME_CLASS_MAPS_AS_ITERS2); returns {name: source}."""
    by_iters2: dict[int, str] = {}
    for name in runs:
        i2 = SAME_CLASS_MAPS_AS_ITERS2.get(name)
        if i2 is None and name.startswith("gfi-b") and "x" in name:
            i2 = int(name.rsplit("x", 1)[1])
        if i2 is not None and "loc" in runs[name]:
            by_iters2.setdefault(i2, name)
    borrowed = {}
    for i1 in (0,):  # the figure's budget line: iters1 = 0 (the cheapest budget of each iters2)
        for i2, source in sorted(by_iters2.items()):
            name = f"gfi-b{i1}x{i2}"
            if name not in runs and name in timing:  # its seconds must be its own
                runs[name] = runs[source]
                borrowed[name] = source
    return borrowed


def budget_table(runs: dict[str, dict[str, dict]], timing: dict[str, float], borrowed: dict[str, str]) -> str:
    """The iters1 x iters2 grid: seconds per image of each budget (timed), quality per iters2."""
    head = " | ".join(f"s/image, iters1 = {i1}" for i1 in BUDGET_ITERS1)
    lines = [f"| iters2 | {head} | quality from | loc. error | pointing | insertion AUC |",
             "|---" * (5 + len(BUDGET_ITERS1)) + "|"]
    for i2 in BUDGET_ITERS2:
        names = [f"gfi-b{i1}x{i2}" for i1 in BUDGET_ITERS1]
        names = [n if n in timing else BUDGET_ALIASES.get(n, n) for n in names]
        secs = " | ".join(f"{timing[n]:.2f}" if n in timing else "-" for n in names)
        q = runs.get(f"gfi-b0x{i2}", {})
        src = borrowed.get(f"gfi-b0x{i2}", f"gfi-b0x{i2}" if q else "-")
        vals = [q.get(k, {}).get(key) for k, key, _, _ in METRICS]
        fmt = ["-" if v is None else (f"{100 * v:.1f}%" if j < 2 else f"{v:.3f}") for j, v in enumerate(vals)]
        lines.append(f"| {i2} | {secs} | {src} | {' | '.join(fmt)} |")
    return "\n".join(lines)


def pareto(points: list[tuple[float, float]], higher: bool) -> list[int]:
    """Indices of the points (seconds, value) no other point dominates."""
    front = []
    for i, (s, v) in enumerate(points):
        better = [(s2 <= s and (v2 >= v if higher else v2 <= v)) and (s2 < s or v2 != v)
                  for j, (s2, v2) in enumerate(points) if j != i]
        if not any(better):
            front.append(i)
    return front


def table(runs: dict, timing: dict) -> tuple[list[dict], str]:
    rows = []
    for name, by in sorted(runs.items()):
        if "loc" not in by:
            continue
        n = by["loc"].get("n_report") or by["loc"].get("n_images")
        if name in timing:
            seconds, source = timing[name], "timed"
        else:
            seconds, source = by["loc"].get("seconds_per_image"), "run"
        row = {"name": name, "seconds_per_image": seconds, "seconds_source": source, "n_images": n}
        for kind, key, _, _ in METRICS:
            row[key] = by.get(kind, {}).get(key)
        rows.append(row)
    for kind, key, _, higher in METRICS:
        idx = [r for r in rows if r[key] is not None and r["n_images"] == 150]  # the same images only
        pts = [(r["seconds_per_image"], r[key]) for r in idx]
        for i in pareto(pts, higher):
            idx[i].setdefault("front", []).append(kind)
    lines = ["| method | images | s/image | loc. error | pointing | insertion AUC | on the front of |",
             "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r["seconds_per_image"] or 0):
        mark = "" if r["seconds_source"] == "timed" else "*"
        fmt = lambda v, pct: "-" if v is None else (f"{100 * v:.1f}%" if pct else f"{v:.3f}")  # noqa: E731
        lines.append(f"| {r['name']} | {r['n_images']} | {r['seconds_per_image']:.2f}{mark} | "
                     f"{fmt(r['error'], True)} | {fmt(r['accuracy_per_image'], True)} | "
                     f"{fmt(r['insertion_auc'], False)} | {', '.join(r.get('front', [])) or '-'} |")
    return rows, "\n".join(lines)


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    for ax, (kind, key, label, _higher) in zip(axes, METRICS, strict=True):
        have = [r for r in rows if r[key] is not None]
        xs, ys = [r["seconds_per_image"] for r in have], [r[key] for r in have]
        full = [r["n_images"] == 150 for r in have]
        ax.scatter([x for x, f in zip(xs, full, strict=True) if f], [y for y, f in zip(ys, full, strict=True) if f],
                   s=18, color="tab:blue", label="150 reporting images")
        ax.scatter([x for x, f in zip(xs, full, strict=True) if not f],
                   [y for y, f in zip(ys, full, strict=True) if not f], s=18, facecolors="none",
                   edgecolors="tab:gray", label="a few of them (n shown)")
        for r, x, y in zip(have, xs, ys, strict=True):
            text = r["name"] + ("" if r["seconds_source"] == "timed" else "*")
            text += "" if r["n_images"] == 150 else f" (n={r['n_images']})"
            ax.annotate(text, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        front = sorted((r["seconds_per_image"], r[key]) for r in have if kind in r.get("front", []))
        if front:
            ax.step([f[0] for f in front], [f[1] for f in front], where="post", color="tab:red", lw=1,
                    label="Pareto front")
        ax.legend(fontsize=7, loc="best")
        ax.set_xscale("log")
        ax.set_xlabel("seconds per image (log; * = the run's own timing)")
        ax.set_title(label, fontsize=9)
    fig.suptitle("quality against cost, ImageNet dev reporting half (150 images), efficientnet_lite0, CPU",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def measure(names: list[str], n: int, data: Path, rounds: int) -> dict[str, list[float]]:
    """Seconds per image of each name on the first ``n`` reporting images, alternating, one process:
    each round's mean, per name."""
    from gfi.data.imagenet import ImageNetVal
    from gfi.data.images import load_image
    from gfi.methods.registry import get_method
    from gfi.models.presets import load_model

    clf, _ = load_model("efficientnet_lite0")
    ds = ImageNetVal(data)
    x = clf.prepare([load_image(ds.paths[i]) for i in range(150, 150 + n)])
    targets = [[int(c)] for c in clf(x).argmax(-1)]
    explainers = {}
    for name in names:
        method, settings = RECIPES[name]
        explainers[name] = (get_method(method, clf, settings) if isinstance(settings, str)
                            else get_method(method, clf, **settings))
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            for i in range(n):
                t0 = time.perf_counter()
                explainers[name].explain(x[i:i + 1], [targets[i]])
                times[name].append(time.perf_counter() - t0)
            print(f"round {r + 1}: {name}: {sum(times[name][-n:]) / n:.3f} s/image", flush=True)
    return {name: [round(sum(v[r * n:(r + 1) * n]) / n, 4) for r in range(rounds)] for name, v in times.items()}


def timing_file(images: int, per_round: dict[str, list[float]]) -> dict:
    """The --measure-timing file: each name's fastest round (``seconds_per_image``) and all rounds."""
    return {"images": images, "rounds": len(next(iter(per_round.values()), [])), "estimate": "fastest round",
            "seconds_per_image": {k: min(v) for k, v in per_round.items()}, "rounds_seconds_per_image": per_round}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path, nargs="?", default=Path("benchmarks/results/eval"))
    p.add_argument("--timing", type=Path, help="a JSON file of --measure-timing")
    p.add_argument("--figure", type=Path)
    p.add_argument("--json", type=Path)
    p.add_argument("--measure-timing", type=int, metavar="N", help="time N images per name, write --out")
    p.add_argument("--names", default=",".join(RECIPES))
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--data", type=Path, default=Path("../shared/data/imagenet-val-dev"))
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    if a.measure_timing:
        result = measure([n.strip() for n in a.names.split(",") if n.strip()], a.measure_timing, a.data, a.rounds)
        text = json.dumps(timing_file(a.measure_timing, result), indent=1)
        print(text)
        if a.out:
            a.out.write_text(text + "\n")
        return
    timing = json.loads(a.timing.read_text())["seconds_per_image"] if a.timing else {}
    runs = summaries(a.root)
    borrowed = borrow_budget_quality(runs, timing)
    rows, md = table(runs, timing)
    for r in rows:
        if r["name"] in borrowed:
            r["quality_from"] = borrowed[r["name"]]
    print(md)
    if borrowed:
        print("\nquality borrowed (same iters2, identical class maps): "
              + ", ".join(f"{k} <- {v}" for k, v in borrowed.items()))
    print("\n" + budget_table(runs, timing, borrowed))
    if a.figure:
        figure(rows, a.figure)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
