"""A markdown table of `gfi eval` runs: one row per method, from the runs' ``summary.json``.

    python benchmarks/eval_table.py runs/eval --copy benchmarks/results/eval

Run folders are named ``<experiment>-<name>`` (``loc-``, ``pt-``, ``del-``, ``sod-``, ``adv-``,
``sanity-``), as in the commands of docs/RESULTS.md; adversarial and sanity runs get a second
table. ``--copy`` keeps each run's ``summary.json`` and per-image ``records*.jsonl`` (small) so
the tables can be rebuilt without the maps.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections import defaultdict
from pathlib import Path

PREFIX = {"loc": "localization", "pt": "pointing", "del": "deletion", "sod": "saliency",
          "adv": "adversarial", "sanity": "sanity"}


def load(root: Path) -> dict[str, dict[str, dict]]:
    runs: dict[str, dict[str, dict]] = defaultdict(dict)
    for summary in sorted(root.glob("*/summary.json")):
        prefix, _, name = summary.parent.name.partition("-")
        if prefix in PREFIX:
            runs[name][PREFIX[prefix]] = json.loads(summary.read_text())
    return runs


def pct(v: float | None, ci: float | None = None) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.1f}%" + (f" ± {100 * ci:.1f}" if ci else "")


def row(name: str, r: dict[str, dict]) -> str:
    loc, pt, dl, sod = (r.get(k, {}) for k in ("localization", "pointing", "deletion", "saliency"))
    n_loc = loc.get("n_report") or loc.get("n_images")
    alpha = loc.get("alpha")
    alpha_s = "-" if alpha is None else f"{alpha:g}" + (" (fixed)" if loc.get("alpha_chosen_on") == "fixed" else "")
    seconds = next((x["seconds_per_image"] for x in (loc, sod, pt) if x.get("seconds_per_image")), None)
    cells = [
        name, str(n_loc or "-"), alpha_s, pct(loc.get("error"), loc.get("error_ci95")),
        str(pt.get("n_images", "-")), pct(pt.get("accuracy_per_image")), pct(pt.get("accuracy")),
        str(dl.get("n_images", "-")),
        "-" if "deletion_auc" not in dl else f"{dl['deletion_auc']:.3f} / {dl['insertion_auc']:.3f}",
        "-" if "f_beta" not in sod else f"{sod['f_beta']:.3f} / {sod['mae']:.3f}",
        "-" if seconds is None else f"{seconds:.2f}",
    ]
    return "| " + " | ".join(cells) + " |"


def robustness_row(name: str, r: dict[str, dict]) -> str | None:
    adv, san = r.get("adversarial", {}), r.get("sanity", {})
    if not adv and not san:
        return None
    cells = [
        name, str(adv.get("n_images", "-")), pct(adv.get("accuracy_clean")), pct(adv.get("accuracy")),
        pct(adv.get("prediction_changed")), str(san.get("n_images", "-")),
        "-" if "spearman" not in san else f"{san['spearman']:.3f} / {san['ssim']:.3f}",
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path, help="folder holding the run folders")
    ap.add_argument("--copy", type=Path, help="copy summaries and per-image records here")
    args = ap.parse_args()
    runs = load(args.root)
    print("| method | loc. images | alpha | loc. error | pointing images | pointing (per image) "
          "| pointing (class mean) | del. images | deletion / insertion AUC | SOD F-beta / MAE | s/img |")
    print("|" + " --- |" * 11)
    for name in sorted(runs):
        if any(k in runs[name] for k in ("localization", "pointing", "deletion", "saliency")):
            print(row(name, runs[name]))
    rows = [r for r in (robustness_row(n, runs[n]) for n in sorted(runs)) if r]
    if rows:
        print("\n| method | adv. images | pointing, clean | pointing, FGSM | prediction changed "
              "| sanity images | sanity Spearman / SSIM (trained vs randomised) |")
        print("|" + " --- |" * 7)
        print("\n".join(rows))
    if args.copy:
        for run in sorted(args.root.glob("*/summary.json")):
            dest = args.copy / run.parent.name
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy(run, dest / "summary.json")
            for records in run.parent.glob("records*.jsonl"):
                shutil.copy(records, dest / records.name)


if __name__ == "__main__":
    main()
