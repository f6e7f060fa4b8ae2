"""The grid pointing game in blocks of equal information, paired against Grad-CAM in each block.

    python benchmarks/grid_blocks.py SPEC.json OUT.json

SPEC: {"blocks": {BLOCK: {"information": TEXT, "base": NAME, "runs": {KIND: {NAME: FOLDER}}}}}, every
FOLDER a `gfi eval grid` output (records.jsonl or part files, summary.json). Each run is summarised
(mass share and pointing with 95% intervals over grids, seconds per grid) and paired with the
block's base on the same (grid, class) targets (gfi.evaluation.grid.paired). KIND may be e.g.
"dogs-2" with "first": N in the run's entry to keep only the first N grids of a run ("dogs-2": the
two plain dog grids, the first round of --reuse 4). Prints a markdown table per block.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gfi.evaluation.grid import ci95, paired


def records(folder: Path, first: int | None = None) -> list[dict]:
    files = sorted(folder.glob("records.jsonl")) or sorted(folder.glob("records.part*.jsonl"))
    out = [json.loads(x) for f in files for x in f.read_text().splitlines() if x.strip()]
    out = [r for r in out if "error" not in r]
    if first is not None:
        out = [r for r in out if int(r["key"][4:8]) < first]
    return sorted(out, key=lambda r: r["key"])


def summarise(recs: list[dict]) -> dict:
    per_grid_mass = [sum(t["mass"] for t in r["targets"]) / len(r["targets"]) for r in recs]
    per_grid_hit = [sum(t["hit"] for t in r["targets"]) / len(r["targets"]) for r in recs]
    pts = [t for r in recs for t in r["targets"]]
    secs = [r["seconds"] for r in recs if r.get("seconds")]
    return {"mass_share": sum(t["mass"] for t in pts) / len(pts), "mass_share_ci95": ci95(per_grid_mass),
            "pointing": sum(t["hit"] for t in pts) / len(pts), "pointing_ci95": ci95(per_grid_hit),
            "n_grids": len(recs), "n_targets": len(pts),
            "seconds_per_grid": sum(secs) / len(secs) if secs else None}


def entry(spec: str | dict) -> tuple[Path, int | None]:
    if isinstance(spec, str):
        return Path(spec), None
    return Path(spec["folder"]), spec.get("first")


def main(spec_file: str, out_file: str) -> None:
    spec = json.loads(Path(spec_file).read_text())
    out: dict = {"note": "mass share / pointing: means over (grid, class) targets, 95% intervals (1.96 standard "
                         "errors) over grids; minus_base: paired on the same targets, intervals over grids",
                 "blocks": {}}
    fmt = lambda v, s=".3f": "-" if v is None else format(v, s)  # noqa: E731
    for block, b in spec["blocks"].items():
        out["blocks"][block] = {"information": b["information"], "base": b["base"], "runs": {}}
        print(f"\n### {block}: {b['information']}\n")
        print("| grids | method | grids (targets) | mass share | pointing | s/grid | minus " + b["base"]
              + ": mass share | pointing |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for kind, runs in b["runs"].items():
            base_folder, base_first = entry(runs[b["base"]])
            base = records(base_folder, base_first)
            rows = out["blocks"][block]["runs"].setdefault(kind, {})
            for name, where in runs.items():
                folder, first = entry(where)
                recs = records(folder, first)
                if not recs:  # not run (yet): said, not scored
                    print(f"| {kind} | {name} | not run | | | | | |")
                    continue
                s = summarise(recs)
                s["folder"] = str(folder)
                if name != b["base"]:
                    s["minus_base"] = paired(recs, base)
                rows[name] = s
                d = s.get("minus_base") if s.get("minus_base", {}).get("n_targets") else None
                dm = f"{d['mass_share']['difference']:+.3f} ± {fmt(d['mass_share']['ci95'])}" if d else "-"
                dp = f"{d['pointing']['difference']:+.3f} ± {fmt(d['pointing']['ci95'])}" if d else "-"
                print(f"| {kind} | {name} | {s['n_grids']} ({s['n_targets']}) | {s['mass_share']:.3f} ± "
                      f"{fmt(s['mass_share_ci95'])} | {s['pointing']:.3f} ± {fmt(s['pointing_ci95'])} | "
                      f"{fmt(s['seconds_per_grid'], '.3g')} | {dm} | {dp} |")
    Path(out_file).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:3])
