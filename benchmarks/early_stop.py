"""Validate GFI's stage-2 early stop on the tuning half of the ImageNet dev data.

    OMP_NUM_THREADS=1 python benchmarks/early_stop.py [--limit 150] [--tol 0.05] [--measure 150]
    python benchmarks/early_stop.py --summarize
    python benchmarks/early_stop.py --batch 8 --rule loss --tol 0.05 --threads 2   # phase 3

Phase 1 runs the full schedule (default preset) once per image and records the weights after
every ``early_stop_every`` stage-2 iterations (10, 15, ..., 30). Early stop never changes an
iteration, it only ends the loop, so the early-stopped result for any tolerance is one of these
checkpoints: the one at which :func:`gfi.masks.optimizer.plateaued` first fires on the recorded
losses. For every checkpoint the record keeps the map's maximum (pixels of the original image)
and the localization decision (paper rule, alpha = 1.0). ``--summarize`` then gives, per
tolerance, the share of images whose maximum lies within 15 px of the full schedule's, the
share with the same localization decision, and the stage-2 iterations saved.

Early stop is a GFI setting (``GFIConfig.early_stop*``): it ends stage 2 early and so changes the
map; this script measures by how much.

Phase 2 (``--measure N``) runs the explainer with ``early_stop=True`` at ``--tol`` on the first N
images for real: it times it against the full schedule's time from phase 1 and checks that its
map is the phase-1 checkpoint it should be (so phase 1's reading is the real early stop).

Phase 3 (``--batch N``) times the first N images as one batch, full schedule against early stop,
alternating in one process: since settled images leave stage 2's batch, what a batch saves.

Records are written after every image to ``--out`` (default
benchmarks/results/early_stop.json); a rerun resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gfi.data.imagenet import ImageNetVal
from gfi.data.images import load_image
from gfi.evaluation.metrics import localization_hits
from gfi.masks.channel_mask import channel_mask
from gfi.masks.optimizer import plateaued
from gfi.methods.gfi import GFIConfig, GuidedFeatureInversion
from gfi.models.presets import load_model

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GFI_DATA", ROOT.parent / "shared" / "data"))
TOLS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2)


def save(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)


def peak_and_hit(m: torch.Tensor, size, boxes) -> tuple[list[int], bool]:
    sal = F.interpolate(m.view(1, 1, *m.shape[-2:]).float(), size=size, mode="bilinear", align_corners=False)[0, 0]
    idx = int(sal.flatten().argmax())
    return [idx // sal.shape[1], idx % sal.shape[1]], bool(localization_hits(sal, boxes, alphas=(1.0,))[0])


class Recorder(GuidedFeatureInversion):
    """GFI whose stage 2 keeps a copy of w after every ``every``-th step (through Adam.step)."""

    every = GFIConfig().early_stop_every

    def stage2(self, x, p, f_channel, w_init, targets, **kwargs):
        snaps, every, orig = {}, self.every, torch.optim.Adam.step
        count = [0]

        def step(opt, *a, **k):
            out = orig(opt, *a, **k)
            count[0] += 1
            if count[0] % every == 0:
                snaps[count[0]] = opt.param_groups[0]["params"][0].detach().clone()
            return out

        torch.optim.Adam.step = step
        try:
            w, hist = super().stage2(x, p, f_channel, w_init, targets, **kwargs)
        finally:
            torch.optim.Adam.step = orig
        self.snapshots, self.f_channel = snaps, f_channel
        return w, hist


def stop_iteration(losses: list[float], every: int, tol: float) -> int:
    """The iteration count at which early stop with ``tol`` ends stage 2 (on recorded losses)."""
    h = torch.tensor(losses)
    for n in range(every, len(losses), every):
        if bool(plateaued(h[:n], every, tol)):
            return n
    return len(losses)


def phase1(args, clf, ds, rec: dict) -> None:
    cfg = GFIConfig.preset(args.preset)
    gfi = Recorder(clf, cfg)
    nonneg = cfg.nonnegative
    for i in range(args.limit):
        s = ds[i]
        if s.path.name in rec["images"]:
            continue
        img = load_image(s.path)
        x = clf.prepare([img])
        t0 = time.perf_counter()
        e = gfi.explain(x, [s.label])
        dt = time.perf_counter() - t0
        ck = {}
        for n, w in sorted(gfi.snapshots.items()):
            if cfg.nonnegative:
                w = w.clamp(min=0)
            m, _ = channel_mask(w, gfi.f_channel, x.shape[-2:], rectify=not nonneg)
            peak, hit = peak_and_hit(m[0, 0], img.shape[-2:], s.boxes)
            ck[str(n)] = {"peak": peak, "hit": hit}
        peak, hit = peak_and_hit(e.maps[0, 0], img.shape[-2:], s.boxes)
        assert ck[str(cfg.iters2)] == {"peak": peak, "hit": hit}, "the last snapshot must be the result"
        rec["images"][s.path.name] = {"label": s.label, "seconds_full": dt,
                                      "loss": e.loss_history["stage2"][:, 0, 0].tolist(), "checkpoints": ck}
        save(args.out, rec)
        print(f"[full] {i + 1}/{args.limit} {s.path.name} {dt:.1f}s", file=sys.stderr, flush=True)


def phase2(args, clf, ds, rec: dict) -> None:
    cfg = GFIConfig.preset(args.preset, early_stop=True, early_stop_tol=args.tol)
    gfi = GuidedFeatureInversion(clf, cfg)
    key = f"measured_tol_{args.tol}"
    out = rec.setdefault(key, {})
    for i in range(args.measure):
        s = ds[i]
        if s.path.name in out or s.path.name not in rec["images"]:
            continue
        img = load_image(s.path)
        x = clf.prepare([img])
        t0 = time.perf_counter()
        e = gfi.explain(x, [s.label])
        dt = time.perf_counter() - t0
        full = rec["images"][s.path.name]
        n = int(e.loss_history["stage2"].shape[0])
        peak, hit = peak_and_hit(e.maps[0, 0], img.shape[-2:], s.boxes)
        expected = stop_iteration(full["loss"], cfg.early_stop_every, args.tol)
        same = n == expected and full["checkpoints"][str(n)] == {"peak": peak, "hit": hit}
        out[s.path.name] = {"seconds": dt, "iters2": n, "peak": peak, "hit": hit, "matches_checkpoint": same}
        save(args.out, rec)
        print(f"[early] {i + 1}/{args.measure} {s.path.name} {dt:.1f}s stop {n}", file=sys.stderr, flush=True)


def stop_by_peak(checkpoints: dict, every: int, iters2: int, need: int, px: float = 15.0) -> int:
    """The stage-2 iteration count at which a row would stop under the decision rule "the map's
    maximum moved at most ``px`` pixels over the last ``need`` windows of ``every`` iterations"
    (a rule an explainer can apply per row without ground truth; checkpoints from phase 1)."""
    def peak(n: int) -> list[int]:
        return checkpoints[str(n)]["peak"]

    for n in range(every * (need + 1), iters2, every):
        ref = peak(n)
        if all(((peak(n - j * every)[0] - ref[0]) ** 2 + (peak(n - j * every)[1] - ref[1]) ** 2) ** 0.5 <= px
               for j in range(1, need + 1)):
            return n
    return iters2


def summarize(rec: dict) -> dict:
    imgs = rec["images"]
    # where the window was recorded: in the config (before early stop was a run option, and since it is a
    # setting again) or in the run options (while it was one)
    every = rec["config"].get("early_stop_every") or rec["options"]["early_stop_every"]
    iters2 = rec["config"]["iters2"]
    def kept(stop) -> dict:
        """What stopping each image at ``stop(record)`` iterations keeps of the full schedule's result."""
        near = same = saved = 0
        for r in imgs.values():
            n = stop(r)
            a, b = r["checkpoints"][str(n)], r["checkpoints"][str(iters2)]
            near += ((a["peak"][0] - b["peak"][0]) ** 2 + (a["peak"][1] - b["peak"][1]) ** 2) ** 0.5 <= 15
            same += a["hit"] == b["hit"]
            saved += iters2 - n
        k = max(len(imgs), 1)
        return {"images": len(imgs), "peak_within_15px": near / k, "same_decision": same / k,
                "mean_stage2_iters": iters2 - saved / k, "stage2_saved": saved / k / iters2}

    rows = [{"tol": tol, **kept(lambda r, tol=tol: stop_iteration(r["loss"], every, tol))} for tol in TOLS]
    by_peak = [{"stable_windows": need, **kept(lambda r, need=need: stop_by_peak(r["checkpoints"], every, iters2,
                                                                                need))} for need in (1, 2, 3)]
    summary = {"per_tol": rows, "per_peak_rule": by_peak, "hit_rate_full": statistics.mean(
        r["checkpoints"][str(iters2)]["hit"] for r in imgs.values()) if imgs else None}
    for key, out in rec.items():
        if key.startswith("measured_tol_") and out:
            full = [imgs[f]["seconds_full"] for f in out]
            early = [o["seconds"] for o in out.values()]
            summary[key] = {"images": len(out), "median_seconds_full": statistics.median(full),
                            "median_seconds_early": statistics.median(early),
                            "total_seconds_full": sum(full), "total_seconds_early": sum(early),
                            "time_saved": 1 - sum(early) / sum(full),
                            "all_match_checkpoint": all(o["matches_checkpoint"] for o in out.values()),
                            "peak_within_15px": statistics.mean(
                                ((o["peak"][0] - imgs[f]["checkpoints"][str(iters2)]["peak"][0]) ** 2
                                 + (o["peak"][1] - imgs[f]["checkpoints"][str(iters2)]["peak"][1]) ** 2) ** 0.5 <= 15
                                for f, o in out.items()),
                            "same_decision": statistics.mean(
                                o["hit"] == imgs[f]["checkpoints"][str(iters2)]["hit"] for f, o in out.items())}
    return summary


def batch_timing(args, clf, ds) -> dict:
    """Phase 3 (``--batch N``): the first N tuning images as ONE batch, the full schedule against
    early stop (``--rule``, ``--tol``), alternating over ``--rounds`` in one process: the time a
    batch saves now that settled images leave it."""
    cfg = GFIConfig.preset(args.preset)
    x = clf.prepare([load_image(ds[i].path) for i in range(args.batch)])
    targets = [[ds[i].label] for i in range(args.batch)]
    runs = {"full": GuidedFeatureInversion(clf, cfg),
            "early": GuidedFeatureInversion(clf, cfg.with_overrides(
                {"early_stop": True, "early_stop_rule": args.rule,
                 **({"early_stop_tol": args.tol} if args.rule == "loss" else {})}))}
    times: dict[str, list[float]] = {k: [] for k in runs}
    iters = {}
    for r in range(args.rounds):
        for name in (("full", "early") if r % 2 == 0 else ("early", "full")):
            t0 = time.perf_counter()
            e = runs[name].explain(x, targets)
            times[name].append(time.perf_counter() - t0)
            iters[name] = torch.isfinite(e.loss_history["stage2"][:, :, 0]).sum(0).tolist()
    full, early = statistics.mean(times["full"]), statistics.mean(times["early"])
    return {"images": args.batch, "rule": args.rule, "tol": args.tol, "rounds": args.rounds,
            "seconds_full": round(full, 2), "seconds_early": round(early, 2), "time_saved": round(1 - early / full, 3),
            "stage2_iters_per_image_early": iters["early"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--limit", type=int, default=150, help="first N sorted images of the tuning half (<= 150)")
    ap.add_argument("--tol", type=float, default=GFIConfig().early_stop_tol)
    ap.add_argument("--measure", type=int, default=0, help="phase 2 on the first N images")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--summarize", action="store_true")
    ap.add_argument("--batch", type=int, default=0, help="phase 3: time the first N images as one batch")
    ap.add_argument("--rule", default="loss", choices=("loss", "peak"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "early_stop.json")
    args = ap.parse_args()
    if not 0 < args.limit <= 150:
        ap.error("--limit must be in 1..150 (the tuning half)")
    rec = json.loads(args.out.read_text()) if args.out.is_file() else {}
    if args.summarize:
        print(json.dumps(summarize(rec), indent=1))
        return
    torch.set_num_threads(args.threads)
    clf, _ = load_model("efficientnet_lite0")
    ds = ImageNetVal(DATA / "imagenet-val-dev")
    cfg = GFIConfig.preset(args.preset)
    rec.setdefault("config", cfg.to_dict())
    rec.setdefault("preset", args.preset)
    rec.setdefault("images", {})
    GuidedFeatureInversion(clf, GFIConfig.preset(args.preset, iters1=1, iters2=1)).explain(
        clf.prepare([load_image(ds[0].path)]), 0)  # warm-up, untimed
    if args.batch:
        rec.setdefault("batch_timing", []).append(batch_timing(args, clf, ds))
        save(args.out, rec)
        print(json.dumps(rec["batch_timing"][-1], indent=1))
        return
    phase1(args, clf, ds, rec)
    if args.measure:
        phase2(args, clf, ds, rec)
    rec["summary"] = summarize(rec)
    save(args.out, rec)
    print(json.dumps(rec["summary"], indent=1))


if __name__ == "__main__":
    main()
