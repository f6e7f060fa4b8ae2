"""Whole-command speed: start-up, one image and a folder per command, on a quiet machine and with
a second process busy, under each thread policy; ratios taken in the same run.

    python benchmarks/command_speed.py --before REF [--folder DIR] [--repeats 3] \
        [--json benchmarks/results/command_speed.json]

Every figure is one whole process timed from outside (wall clock from its start to its exit,
start-up included), the median of the repeats. Within each repeat the commands take turns, so a
ratio is taken repeat by repeat (paired) and its median reported; the same is done for ``import
gfi`` and ``gfi --help`` with the code of ``--before REF`` (a git commit, exported to a temporary
folder) against the working tree's.

Thread policies (the same code, the working tree's, except ``before``):

* ``old``: torch imported before gfi can choose, so OpenMP keeps its default wait (spin, then
  sleep) at torch's default thread count: what ``gfi`` did before its thread policy;
* ``passive``: ``OMP_WAIT_POLICY=PASSIVE`` at torch's default count, one thread per core
  (``OMP_NUM_THREADS`` set to the usable cores: a count the user sets is kept);
* ``auto``: the ``gfi`` program as it is (passive waiting; one thread per core less the cores other
  processes kept busy while it started, ``gfi.threads``);
* ``one``: ``--threads 1``;
* ``before``: the command of ``--before REF`` (its start-up and its thread handling), quiet only.

Conditions: ``quiet`` (nothing else started by this script), ``loaded`` (a Python busy loop on
one core, started two seconds before the block and stopped after it). ``OMP_NUM_THREADS`` and
``OMP_WAIT_POLICY`` are removed from every command's environment. The 1-minute load average is
recorded before and after each block. Methods: ``gradcam``, ``--preset fast``, the default (GFI);
one image (``dog_cat.jpg``, bundled) and a folder (``--folder``, default the first four images of
``../shared/data/imagenet-val-dev/val``, in name order). Per-image seconds in-process come from each run's
``results.json`` (``seconds_per_image``: the method, the check and the writing of one image).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO / "src" / "gfi" / "assets" / "dog_cat.jpg"
METHODS = {"gradcam": ["--method", "gradcam"], "fast": ["--preset", "fast"], "default": []}
OLD = ("import sys, torch; from gfi.cli import end_without_teardown, main; "
       "sys.exit(end_without_teardown(main(sys.argv[1:])))")  # torch first: OpenMP's own wait


def others() -> int:
    """How many other heavy processes run now (a pytest, a gfi eval): a run beside one is marked."""
    n = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state in ("T", "t", "Z"):  # stopped (SIGSTOP) or finished: not running
            continue
        n += ("pytest" in cmd and "python" in cmd) or "gfi eval" in cmd
    return n


def environment(src: Path, policy: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "PYTHONPATH")}
    env["PYTHONPATH"] = str(src)
    if policy == "passive":  # torch's default count, kept: the program leaves a user's OMP_NUM_THREADS alone
        env["OMP_NUM_THREADS"] = str(len(os.sched_getaffinity(0)))
    return env


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds


def gfi_command(policy: str) -> tuple[list[str], str]:
    """(the command's prefix, whose code: "after" or "before")."""
    if policy == "old":
        return [sys.executable, "-c", OLD], "after"
    if policy == "before":
        return [sys.executable, "-m", "gfi"], "before"
    return [sys.executable, "-m", "gfi"], "after"


def explain_args(policy: str, method: str, inputs: list[str], out: Path) -> list[str]:
    args = ["explain", *inputs, *METHODS[method], "--out", str(out), "--quiet"]
    return args + (["--threads", "1"] if policy == "one" else [])


def per_image(out: Path) -> float:
    results = json.loads((out / "results.json").read_text())
    return statistics.median(r["seconds_per_image"] for r in results["images"] if r.get("status") == "ok")


def summary(runs: list[float]) -> dict:
    return {"median": round(statistics.median(runs), 3), "min": round(min(runs), 3), "max": round(max(runs), 3),
            "runs": [round(r, 3) for r in runs]}


def paired(a: list[float], b: list[float]) -> float:
    return round(statistics.median(x / y for x, y in zip(a, b, strict=True)), 3)


def startup(srcs: dict[str, Path], repeats: int) -> dict:
    cmds = {"import gfi": [sys.executable, "-c", "import gfi"], "gfi --help": [sys.executable, "-m", "gfi", "--help"]}
    runs: dict[str, dict[str, list[float]]] = {c: {w: [] for w in srcs} for c in cmds}
    for _ in range(repeats + 1):  # the first round warms the file cache and is not counted
        for c, cmd in cmds.items():
            for who, src in srcs.items():
                runs[c][who].append(timed(cmd, environment(src)))
    out = {}
    for c in cmds:
        r = {w: runs[c][w][1:] for w in srcs}
        out[c] = {**{w: summary(r[w]) for w in srcs}, "after/before": paired(r["after"], r["before"])}
    return out


def block(condition: str, srcs: dict[str, Path], tmp: Path, folder: list[str], repeats: int,
          folder_repeats: int, methods: list[str]) -> dict:
    """Every (workload, method, policy) of one condition, the commands taking turns in each repeat."""
    busy = None
    load_before = os.getloadavg()[0]
    if condition == "loaded":
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(2)
    policies = ["old", "passive", "auto", "one"] + (["before"] if condition == "quiet" else [])
    cells: dict[str, dict] = {}
    try:
        plan = [("one image", m, [str(IMAGE)], repeats) for m in methods] + \
               [("folder", m, folder, folder_repeats) for m in ("gradcam", "fast") if m in methods]
        for workload, method, inputs, n in plan:
            for rep in range(n):
                for policy in policies:
                    key = f"{workload} | {method} | {policy}"
                    cell = cells.setdefault(key, {"wall": [], "per_image": [], "others": [], "load": []})
                    cell["others"].append(others())
                    cell["load"].append(round(os.getloadavg()[0], 2))
                    prefix, who = gfi_command(policy)
                    out = tmp / condition / key.replace(" | ", "_").replace(" ", "-") / str(rep)
                    shutil.rmtree(out, ignore_errors=True)
                    cmd = prefix + explain_args(policy, method, inputs, out)
                    cell["wall"].append(timed(cmd, environment(srcs[who], policy)))
                    cell["per_image"].append(per_image(out))
                    print(f"{condition} | {key} | {cell['wall'][-1]:.2f} s", file=sys.stderr, flush=True)
    finally:
        if busy is not None:
            busy.terminate()
            busy.wait()
    result = {"load_1min_before": load_before, "load_1min_after": os.getloadavg()[0], "cells": {},
              "cells_beside_another_heavy_process": sum(sum(c["others"]) > 0 for c in cells.values())}
    for key, cell in cells.items():
        result["cells"][key] = {"wall": summary(cell["wall"]), "per_image": summary(cell["per_image"]),
                                "other_heavy_processes": cell["others"], "load_1min": cell["load"]}
    ratios = {}
    for workload, method, _, _ in plan:
        c = {p: cells[f"{workload} | {method} | {p}"]["wall"] for p in policies}
        ratios[f"{workload} | {method} | auto/one"] = paired(c["auto"], c["one"])
        ratios[f"{workload} | {method} | passive/one"] = paired(c["passive"], c["one"])
        ratios[f"{workload} | {method} | old/one"] = paired(c["old"], c["one"])
        ratios[f"{workload} | {method} | old/auto"] = paired(c["old"], c["auto"])
        if "before" in c:
            ratios[f"{workload} | {method} | before/auto"] = paired(c["before"], c["auto"])
    for p in policies if {"default", "fast"} <= set(methods) else ():
        d, f = (cells[f"one image | {m} | {p}"]["wall"] for m in ("default", "fast"))
        ratios[f"one image | default/fast | {p}"] = paired(d, f)
    result["ratios"] = ratios
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", required=True, help="the git commit to compare with (start-up, and quiet 'before')")
    p.add_argument("--folder", type=Path, default=REPO.parent / "shared" / "data" / "imagenet-val-dev" / "val")
    p.add_argument("--folder-images", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--folder-repeats", type=int, default=2)
    p.add_argument("--startup-repeats", type=int, default=7)
    p.add_argument("--conditions", default="quiet,loaded")
    p.add_argument("--methods", default=",".join(METHODS), help=f"of {', '.join(METHODS)}")
    p.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "command_speed.json")
    a = p.parse_args()
    images = sorted(x for x in a.folder.iterdir() if x.suffix.lower() in (".jpg", ".jpeg", ".png"))
    with tempfile.TemporaryDirectory(prefix="gfi-speed-") as t:
        tmp = Path(t)
        before = tmp / "before"
        before.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", a.before], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive.stdout, check=True)
        folder = tmp / "folder"
        folder.mkdir()
        for x in images[:a.folder_images]:
            shutil.copy(x, folder / x.name)
        srcs = {"after": REPO / "src", "before": before / "src"}
        result = {
            "before": a.before,
            "after": subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                    text=True).stdout.strip(),
            "cpus": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
            "python": sys.version.split()[0], "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "load_1min_start": os.getloadavg()[0],
            "startup": startup(srcs, a.startup_repeats),
            "folder_images": a.folder_images,
        }
        for condition in a.conditions.split(","):
            result[condition] = block(condition, srcs, tmp, [str(folder)], a.repeats, a.folder_repeats,
                                      a.methods.split(","))
        result["load_1min_end"] = os.getloadavg()[0]
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k in ("startup",)}, indent=1))
    for condition in a.conditions.split(","):
        print(f"\n{condition}: load {result[condition]['load_1min_before']:.2f} -> "
              f"{result[condition]['load_1min_after']:.2f}")
        for key, cell in result[condition]["cells"].items():
            print(f"  {key:40s} wall {cell['wall']['median']:7.2f} s   per image {cell['per_image']['median']:6.2f} s")
        for key, r in result[condition]["ratios"].items():
            print(f"  {key:40s} {r:.3f}")


if __name__ == "__main__":
    main()
