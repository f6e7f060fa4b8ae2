"""Paired differences between `gfi eval` runs on the same images, with 95% intervals.

    python benchmarks/paired.py runs/eval gfi-default gradcam center

For each run name after the first, compares it with the first, image by image, on whatever both
have: localization (``loc-<name>``: success at each run's own alpha, reporting images only),
pointing (``pt-<name>``: per-image hit), saliency (``sod-<name>``: F-beta and MAE per image),
deletion (``del-<name>``: both areas). The interval is 1.96 standard errors of the per-image
differences (images are the unit; the same images on both sides).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from quality import mean_ci  # the same 95% interval as quality.py's paired summaries


def records(folder: Path) -> dict[str, dict]:
    out = {}
    for f in sorted(folder.glob("records*.jsonl")):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            if "error" not in r:
                out[r["key"]] = r
    return out


def per_image(root: Path, prefix: str, name: str) -> dict[str, dict[str, float]] | None:
    folder = root / f"{prefix}-{name}"
    if not (folder / "summary.json").is_file():
        return None
    summary = json.loads((folder / "summary.json").read_text())
    recs = records(folder)
    if prefix == "loc":
        alphas = summary.get("alphas") or json.loads((folder / "options.json").read_text()).get("alphas")
        a = alphas.index(summary["alpha"]) if alphas else 0
        n_tune = summary.get("n_tune") or 0
        keep = sorted(recs, key=lambda k: recs[k]["index"])[n_tune:] if n_tune else list(recs)
        return {k: {"loc. error": 1.0 - recs[k]["hits"][a]} for k in keep}
    if prefix == "pt":
        return {k: {"pointing": float(r["points"][0]["hit"])} for k, r in recs.items() if r.get("points")}
    if prefix == "sod":
        return {k: {"F-beta": r["f_beta"], "MAE": r["mae"]} for k, r in recs.items() if "f_beta" in r}
    return {k: {"deletion": r["deletion_auc"], "insertion": r["insertion_auc"]}
            for k, r in recs.items() if "deletion_auc" in r}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path, help="folder holding the run folders")
    ap.add_argument("base", help="the run name the others are compared with")
    ap.add_argument("others", nargs="+")
    args = ap.parse_args()
    print(f"| {args.base} minus | metric | images | {args.base} | other | difference (95% interval) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for prefix in ("loc", "pt", "del", "sod"):
        base = per_image(args.root, prefix, args.base)
        if base is None:
            continue
        for other in args.others:
            theirs = per_image(args.root, prefix, other)
            if theirs is None:
                continue
            common = sorted(set(base) & set(theirs))
            if not common:
                continue
            for metric in base[common[0]]:
                a = [base[k][metric] for k in common]
                b = [theirs[k][metric] for k in common]
                d, ci = mean_ci([x - y for x, y in zip(a, b, strict=True)])
                scale = 100 if prefix in ("loc", "pt") else 1
                fmt = ".1f" if scale == 100 else ".3f"
                print(f"| {other} | {metric} | {len(common)} | {scale * sum(a) / len(a):{fmt}} "
                      f"| {scale * sum(b) / len(b):{fmt}} | {scale * d:+{fmt}} ± {scale * ci:{fmt}} |")


if __name__ == "__main__":
    main()
