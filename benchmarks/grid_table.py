"""The grid pointing game's table from `gfi eval grid` runs, with paired differences.

    python benchmarks/grid_table.py runs/grid --base gradcam --json benchmarks/results/grid/summary.json

Run folders are ``ROOT/grid-<classes>-<method>``; for every classes value, each method's mass share
and pointing (95% intervals over grids), then every method minus ``--base`` on the (grid, class)
targets both runs have (:func:`gfi.evaluation.grid.paired`; intervals over grids).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gfi.evaluation.grid import paired


def records(folder: Path) -> list[dict]:
    out = []
    for f in sorted(folder.glob("records*.jsonl")):
        out += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    return out


def fmt(v: float | None, ci: float | None = None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" + (f" ± {ci:.3f}" if ci is not None else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", type=Path, help="folder holding the grid-<classes>-<method> run folders")
    ap.add_argument("--base", default="gradcam", help="the method the others are compared with (default: gradcam)")
    ap.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    args = ap.parse_args()
    runs: dict[str, dict[str, Path]] = {}
    for f in sorted(args.root.glob("grid-*-*/summary.json")):
        classes, _, method = f.parent.name.removeprefix("grid-").partition("-")
        runs.setdefault(classes, {})[method] = f.parent
    table: dict = {}
    print("| grids | method | grids (targets) | mass share | pointing | s/grid | minus " + args.base
          + ": mass share | pointing |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for classes, methods in runs.items():
        base = records(methods[args.base]) if args.base in methods else None
        for method, folder in methods.items():
            s = json.loads((folder / "summary.json").read_text())
            row = {k: s.get(k) for k in ("mass_share", "mass_share_ci95", "pointing", "pointing_ci95", "n_grids",
                                         "n_targets", "seconds_per_image", "images", "seed", "min_prob")}
            d = paired(records(folder), base) if base is not None and method != args.base else None
            row["paired_minus_base"] = d
            table.setdefault(classes, {})[method] = row
            dm = fmt(d["mass_share"]["difference"], d["mass_share"]["ci95"]) if d else "-"
            dp = fmt(d["pointing"]["difference"], d["pointing"]["ci95"]) if d else "-"
            sec = s.get("seconds_per_image")
            secs = f"{sec:.3g}" if sec is not None else "-"
            print(f"| {classes} | {method} | {row['n_grids']} ({row['n_targets']}) | "
                  f"{fmt(row['mass_share'], row['mass_share_ci95'])} | {fmt(row['pointing'], row['pointing_ci95'])} | "
                  f"{secs} | {dm} | {dp} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"base": args.base, "runs": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
