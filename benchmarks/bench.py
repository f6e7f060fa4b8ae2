"""GFI's speed against its floor, Meaningful Perturbation and a line-by-line implementation.

    python benchmarks/bench.py                                   # paper settings, all four models
    python benchmarks/bench.py --iter-scale 0.1 --repeats 3      # quick: 1 + 7 GFI iterations, 30 MP
    python benchmarks/bench.py --share 5 --models efficientnet_lite0   # stage 1 shared by 5 classes

For each model (the offline EfficientNet-Lite0 and VGG-19 / ResNet-18 / AlexNet with random
weights, which cost the same as trained ones) and each batch size, in one process:

* **gfi**: ``GuidedFeatureInversion(clf, GFIConfig.paper())`` on B random 224x224 images.
* **floor**: exactly the passes GFI as specified costs and nothing else: ``iters1`` times a
  forward to l0 and a backward to an input-sized tensor that requires grad, plus ``iters2``
  times a forward of 2B images (kept and removed) through the whole network and a backward; no
  optimiser, no mask arithmetic, parameters frozen. ``floor_ratio`` = gfi / floor.
* **mask**: Meaningful Perturbation at its published setting (300 Adam iterations of one forward
  and backward of B images), ``get_method("mask", clf)``.
* **naive**: ``benchmarks/naive_gfi.py``, the paper's pseudo-code line by line (batch size 1,
  separate kept and removed forwards, whole forward in stage 1); timed on one image.

Seconds per image are medians over ``--repeats`` (the methods take turns inside each repeat, so
load on a shared machine hits them alike). Peak memory is measured in a fresh subprocess per
method, model and batch (CPU: the peak resident set size, VmHWM, reset once the model and inputs
are in memory, minus the resident size at that moment; CUDA: ``torch.cuda.max_memory_allocated``
minus the memory allocated before the call), with 2 iterations since the
peak does not grow with the iteration count.

The time of all three optimisation methods is the number of iterations times the time of one
iteration, plus a few passes outside the loops (GFI: one forward of x, one of the final masks).
``--iter-scale s`` multiplies every iteration count (GFI's 10 + 70 and MP's 300) by s, which keeps
their ratio; the ratios then shift only by those few fixed passes (their share grows as 1/s).

``--run-options eager,compile,channels_last,compile+channels_last,bf16`` times GFI instead under
each combination of run options (``+`` joins them; ``eager`` = none), per model and batch, in one
process: a first call per combination (its time, which holds the compilation, is reported as
``first_call_s``), then ``--repeats`` rounds in which the combinations take turns; the ratio of each
to eager is the figure (``benchmarks/results/run_options_<device>.json``).

Writes ``--json`` (default benchmarks/results/bench_<device>.json) and ``--md`` (the same
name with .md): per model ``floor_ratio``, ``speedup_vs_mask`` and ``speedup_vs_naive`` at batch
size 1, and a row per batch size.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from naive_gfi import naive_gfi  # noqa: E402

from gfi.methods.gfi import GFIConfig, GuidedFeatureInversion  # noqa: E402
from gfi.methods.registry import get_method  # noqa: E402
from gfi.models.layers import frozen  # noqa: E402
from gfi.models.presets import load_model  # noqa: E402

MODELS = ("efficientnet_lite0", "vgg19", "resnet18", "alexnet")
MASK_ITERS = 300  # Fong & Vedaldi 2017


# ---------------------------------------------------------------------------------------------
def load(name: str, device: str):
    clf, _ = load_model(name, weights="default" if name.startswith("efficientnet") else "random")
    return clf.to(device)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def floor_passes(clf, x, iters1: int, iters2: int, autocast: str = "none", channels_last: bool = False) -> None:
    """The passes GFI costs, nothing else (see the module docstring); ``autocast`` and
    ``channels_last`` as the run options (``RunOptions``), so the floor of those options is measured alike."""
    l0 = clf.inversion_layer
    both = torch.cat([x, x])
    if channels_last:
        x, both = (t.contiguous(memory_format=torch.channels_last) for t in (x, both))
    amp = (torch.autocast(x.device.type, dtype=torch.bfloat16) if autocast == "bf16"
           else contextlib.nullcontext())
    with frozen(clf.model), amp:
        for _ in range(iters1):
            leaf = x.detach().requires_grad_(True)
            f = clf.activations(leaf, [l0], stop=True, clone=False)[0][l0]
            f.float().sum().backward()
        for _ in range(iters2):
            leaf = both.detach().requires_grad_(True)
            clf(leaf).float().sum().backward()


def runners(clf, x, args, scale_iters: dict):
    """name -> callable running one measurement on the batch x."""
    i1, i2, im = scale_iters["iters1"], scale_iters["iters2"], scale_iters["mask"]
    targets = list(range(x.shape[0]))
    gfi = GuidedFeatureInversion(clf, GFIConfig.preset(args.preset, iters1=i1, iters2=i2))
    out = {"gfi": lambda: gfi.explain(x, targets), "floor": lambda: floor_passes(clf, x, i1, i2)}
    if not args.no_mask:
        mp = get_method("mask", clf, iterations=im)
        out["mask"] = lambda: mp.explain(x, targets)
    if not args.no_naive:
        out["naive"] = lambda: naive_gfi(clf, x[:1], 0, iters1=i1, iters2=i2)
    return out


def iteration_counts(args) -> dict:
    paper = GFIConfig.preset(args.preset)
    s = args.iter_scale
    return {"iters1": max(1, round(paper.iters1 * s)), "iters2": max(1, round(paper.iters2 * s)),
            "mask": max(1, round(MASK_ITERS * s))}


def time_model(name: str, args) -> dict:
    clf = load(name, args.device)
    iters = iteration_counts(args)
    rows = []
    for batch in args.batches:
        x = torch.rand(batch, 3, *clf.input_size, generator=torch.Generator().manual_seed(0)).to(args.device)
        run = runners(clf, x, args, iters)
        if batch != args.batches[0]:
            run.pop("naive", None)  # one image at a time whatever the batch: timed once
        warm = runners(clf, x, args, {"iters1": 1, "iters2": 1, "mask": 1})
        for k in run:
            warm[k]()
        times: dict[str, list[float]] = {k: [] for k in run}
        for _ in range(args.repeats):
            for k, f in run.items():
                sync(args.device)
                t0 = time.perf_counter()
                f()
                sync(args.device)
                times[k].append((time.perf_counter() - t0) / (1 if k == "naive" else batch))
        med = {k: statistics.median(v) for k, v in times.items()}
        row = {"batch": batch, "iter_scale": args.iter_scale, "iterations": iters, "repeats": args.repeats,
               "seconds_per_image": med, "images_per_second": 1 / med["gfi"],
               "floor_ratio": med["gfi"] / med["floor"], "all_seconds_per_image": times}
        if "mask" in med:
            row["speedup_vs_mask"] = med["mask"] / med["gfi"]
        naive = med.get("naive", rows[0]["seconds_per_image"].get("naive") if rows else None)
        if naive is not None:
            row["speedup_vs_naive"] = naive / med["gfi"]
        if not args.no_memory:
            row["peak_memory_mb"] = {k: peak_memory(name, batch, k, args) for k in run}
        rows.append(row)
        print(f"  {name} B={batch}: " + ", ".join(f"{k} {v:.3f} s/img" for k, v in med.items())
              + f"; floor ratio {row['floor_ratio']:.3f}", flush=True)
    return rows


def run_options(spec: str) -> dict:
    """``"compile+channels_last"`` -> RunOptions fields; ``"eager"`` -> none."""
    fields = {"compile": ("compile", True), "channels_last": ("channels_last", True), "bf16": ("autocast", "bf16")}
    out = {}
    for part in spec.split("+"):
        if part == "eager":
            continue
        if part not in fields:
            raise SystemExit(f"--run-options: unknown {part!r}; use eager, {', '.join(fields)} joined by +")
        out.update([fields[part]])
    return out


def time_run_options(name: str, args) -> list[dict]:
    """GFI under each combination of ``args.run_options``, alternating in one process (ratios to eager)."""
    clf = load(name, args.device)
    iters = iteration_counts(args)
    cfg = GFIConfig.preset(args.preset, iters1=iters["iters1"], iters2=iters["iters2"])
    rows = []
    for batch in args.batches:
        x = torch.rand(batch, 3, *clf.input_size, generator=torch.Generator().manual_seed(0)).to(args.device)
        targets = list(range(batch))
        run = {spec: GuidedFeatureInversion(clf, cfg, **run_options(spec)) for spec in args.run_options}
        first, maps = {}, {}
        for spec, e in run.items():
            sync(args.device)
            t0 = time.perf_counter()
            maps[spec] = e.explain(x, targets).maps.float()
            sync(args.device)
            first[spec] = time.perf_counter() - t0
        times: dict[str, list[float]] = {k: [] for k in run}
        for _ in range(args.repeats):
            for spec, e in run.items():
                sync(args.device)
                t0 = time.perf_counter()
                e.explain(x, targets)
                sync(args.device)
                times[spec].append((time.perf_counter() - t0) / batch)
        med = {k: statistics.median(v) for k, v in times.items()}
        base = med.get("eager", next(iter(med.values())))
        ref = maps.get("eager", next(iter(maps.values())))
        row = {"batch": batch, "iterations": iters, "repeats": args.repeats, "seconds_per_image": med,
               "ratio_to_eager": {k: base / v for k, v in med.items()}, "first_call_s": first,
               "max_map_difference": {k: float((m - ref).abs().max()) for k, m in maps.items()},
               "fastest": min(med, key=med.get), "all_seconds_per_image": times}
        rows.append(row)
        print(f"  {name} B={batch}: " + ", ".join(f"{k} {v:.3f} s/img ({base / v:.2f}x)" for k, v in med.items())
              + "; first calls " + ", ".join(f"{k} {v:.0f} s" for k, v in first.items()), flush=True)
    return rows


def run_options_markdown(result: dict) -> str:
    lines = [f"GFI ({result['preset']} preset, iterations x {result['iter_scale']}) under run options, "
             f"{result['machine'].get('device', '')}; median of {result['repeats']} alternating rounds; "
             "ratio = eager's time / the option's (above 1: faster)", "",
             "| model | batch | " + " | ".join(result["run_options"]) + " | fastest |",
             "| --- | --- | " + " | ".join("---" for _ in result["run_options"]) + " | --- |"]
    for name, rows in result["models"].items():
        for r in rows:
            cells = [f"{r['seconds_per_image'][k]:.3f} s ({r['ratio_to_eager'][k]:.2f}x)"
                     for k in result["run_options"]]
            lines.append(f"| {name} | {r['batch']} | " + " | ".join(cells) + f" | {r['fastest']} |")
    return "\n".join(lines) + "\n"


def summary(rows: list[dict]) -> dict:
    """Per model: the batch-1 (else smallest batch) figures, and every batch's row."""
    rows = sorted(rows, key=lambda r: r["batch"])
    first = rows[0]
    return {"floor_ratio": first["floor_ratio"], "speedup_vs_mask": first.get("speedup_vs_mask"),
            "speedup_vs_naive": first.get("speedup_vs_naive"), "by_batch": rows}


# ---------------------------------------------------------------------------------------------
def peak_memory(name: str, batch: int, method: str, args) -> float:
    """Peak memory (MiB) of one method in a fresh subprocess (see the module docstring)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", f"{name},{batch},{method}",
           "--device", args.device, "--preset", args.preset, "--threads", str(args.threads)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"memory measurement {name} B={batch} {method} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["extra_mb"]


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} missing from /proc/self/status (Linux only)")


def child(spec: str, args) -> None:
    name, batch, method = spec.split(",")
    clf = load(name, args.device)
    x = torch.rand(int(batch), 3, *clf.input_size, generator=torch.Generator().manual_seed(0)).to(args.device)
    f = runners(clf, x, args, {"iters1": 2, "iters2": 2, "mask": 2})[method]
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        f()
        torch.cuda.synchronize()
        peak, extra = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_allocated() - base
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        base = _status_kb("VmRSS") * 1024
        f()
        peak = _status_kb("VmHWM") * 1024
        extra = peak - base
    print(json.dumps({"peak_mb": round(peak / 2**20, 1), "extra_mb": round(extra / 2**20, 1)}))


# ---------------------------------------------------------------------------------------------
def share_classes(name: str, k: int, args) -> dict:
    """Explaining k classes of one image in one call (stage 1 once, stage 2 batched) vs k calls."""
    clf = load(name, args.device)
    iters = iteration_counts(args)
    x = torch.rand(1, 3, *clf.input_size, generator=torch.Generator().manual_seed(0)).to(args.device)
    gfi = GuidedFeatureInversion(clf, GFIConfig.preset(args.preset, iters1=iters["iters1"], iters2=iters["iters2"]))
    chunked = GuidedFeatureInversion(clf, GFIConfig.preset(args.preset, iters1=iters["iters1"],
                                                           iters2=iters["iters2"]), chunk=1)
    classes = list(range(1, k + 1))
    GuidedFeatureInversion(clf, GFIConfig.preset(args.preset, iters1=1, iters2=1)).explain(x, [classes])
    one, separate, chunk1 = [], [], []
    for _ in range(args.repeats):
        sync(args.device)
        t0 = time.perf_counter()
        gfi.explain(x, [classes])
        sync(args.device)
        one.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for c in classes:
            gfi.explain(x, c)
        sync(args.device)
        separate.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        chunked.explain(x, [classes])
        sync(args.device)
        chunk1.append(time.perf_counter() - t0)
    a, b, c1 = statistics.median(one), statistics.median(separate), statistics.median(chunk1)
    print(f"  {name}: {k} classes in one call {a:.2f} s (stage 2 one target at a time: {c1:.2f} s), "
          f"in {k} calls {b:.2f} s: saving {1 - a / b:.1%} ({1 - c1 / b:.1%})", flush=True)
    return {"model": name, "classes": k, "iterations": iters, "seconds_one_call": a, "seconds_separate_calls": b,
            "seconds_one_call_stage2_chunk1": c1, "saving": 1 - a / b, "saving_stage2_chunk1": 1 - c1 / b,
            "speedup": b / a, "all_one_call": one, "all_separate": separate, "all_one_call_stage2_chunk1": chunk1}


# ---------------------------------------------------------------------------------------------
def machine(args) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "device": args.device, "cpu_count": os.cpu_count(), "load_average_start": os.getloadavg()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Model name")),
                           platform.processor())
    except OSError:
        info["cpu"] = platform.processor()
    if args.device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(args.device)
    return info


def markdown(result: dict) -> str:
    lines = [f"# GFI benchmark ({result['machine'].get('gpu') or result['machine']['cpu']}, "
             f"{result['machine']['threads']} threads, torch {result['machine']['torch']})", "",
             f"Preset `{result['preset']}`. Seconds per image (median of the repeats); ratio = GFI / floor; "
             "speed-ups = other method's time / GFI's; iteration scale and repeats per row. Peak memory: "
             "the increase over the loaded model and inputs.", ""]
    if result.get("models"):
        lines += ["| model | batch | scale | repeats | GFI s/img | img/s | floor s/img | ratio to floor | MP s/img "
                  "| speed-up vs MP | naive s/img | speed-up vs naive | peak memory GFI / floor / MP / naive (MiB) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, m in result["models"].items():
            for r in m["by_batch"]:
                s = r["seconds_per_image"]
                mem = r.get("peak_memory_mb", {})
                fmt = lambda v, f="{:.3f}": f.format(v) if v is not None else "-"  # noqa: E731
                lines.append(
                    f"| {name} | {r['batch']} | {r['iter_scale']} | {r['repeats']} | {s['gfi']:.3f} "
                    f"| {r['images_per_second']:.2f} | {s['floor']:.3f} "
                    f"| {r['floor_ratio']:.3f} | {fmt(s.get('mask'))} | {fmt(r.get('speedup_vs_mask'), '{:.2f}x')} "
                    f"| {fmt(s.get('naive'))} | {fmt(r.get('speedup_vs_naive'), '{:.2f}x')} "
                    f"| {' / '.join(str(mem.get(k, '-')) for k in ('gfi', 'floor', 'mask', 'naive'))} |")
    if result.get("share"):
        lines += ["", "| model | classes | one call (s) | one call, stage2_chunk=1 (s) | separate calls (s) "
                  "| saving | saving, chunk 1 |", "|---|---|---|---|---|---|---|"]
        for r in result["share"]:
            c1 = r.get("seconds_one_call_stage2_chunk1")
            lines.append(f"| {r['model']} | {r['classes']} | {r['seconds_one_call']:.2f} | "
                         f"{c1 if c1 is None else f'{c1:.2f}'} | {r['seconds_separate_calls']:.2f} | {r['saving']:.1%} "
                         f"| {r.get('saving_stage2_chunk1', float('nan')):.1%} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batches", default="1,8", help="comma-separated batch sizes (the first gives the summary)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--iter-scale", type=float, default=1.0, help="multiply every iteration count (keeps ratios)")
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--no-mask", action="store_true")
    ap.add_argument("--no-naive", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--share", type=int, default=0, help="only measure K classes in one call vs K calls")
    ap.add_argument("--run-options", default=None,
                    help="only time GFI under these run-option combinations, e.g. eager,compile,channels_last")
    ap.add_argument("--update", action="store_true",
                    help="merge into an existing --json: replace only the rows (model, batch) measured now")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--md", type=Path, default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.batches = [int(b) for b in args.batches.split(",")]
    if args.child:
        child(args.child, args)
        return
    kind = "gpu" if args.device.startswith("cuda") else "cpu"
    if args.run_options:
        args.run_options = [o for o in args.run_options.split(",") if o]
        args.json = args.json or HERE / "results" / f"run_options_{kind}.json"
        result = {"preset": args.preset, "iter_scale": args.iter_scale, "repeats": args.repeats,
                  "run_options": args.run_options, "command": " ".join(sys.argv), "machine": machine(args),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "models": {}}
        for n in [n for n in args.models.split(",") if n]:
            result["models"][n] = time_run_options(n, args)
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=1))
        result["machine"]["load_average_end"] = os.getloadavg()
        args.json.write_text(json.dumps(result, indent=1))
        (args.md or args.json.with_suffix(".md")).write_text(run_options_markdown(result))
        print(run_options_markdown(result))
        return
    stem = f"share_{kind}" if args.share else f"bench_{kind}"
    args.json = args.json or HERE / "results" / f"{stem}.json"
    args.md = args.md or args.json.with_suffix(".md")
    result = {"preset": args.preset, "iter_scale": args.iter_scale, "repeats": args.repeats,
              "command": " ".join(sys.argv), "machine": machine(args),
              "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    old = json.loads(args.json.read_text()) if args.update and args.json.is_file() else {}
    if old:
        keys = ("command", "machine", "started", "preset", "iter_scale", "repeats")
        result["earlier_runs"] = [*old.get("earlier_runs", []), {k: old.get(k) for k in keys}]
    names = [n for n in args.models.split(",") if n]
    if args.share:
        result["share"] = [share_classes(n, args.share, args) for n in names]
    else:
        result["models"] = old.get("models", {})
        for n in names:
            rows = time_model(n, args)
            kept = [r for r in result["models"].get(n, {}).get("by_batch", []) if r["batch"] not in args.batches]
            result["models"][n] = summary(kept + rows)
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=1))
    result["machine"]["load_average_end"] = os.getloadavg()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    args.md.write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
