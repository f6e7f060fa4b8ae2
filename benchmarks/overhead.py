"""Per-iteration cost of what GFI adds to its network passes, measured piece by piece.

    python benchmarks/overhead.py [--model efficientnet_lite0] [--batch 1] [--repeats 50]

Times (median and minimum of ``--repeats``) one stage-1 and one stage-2 iteration's network pass (the floor's
unit), and separately the parts around it: registering and removing the l0 hook
(``capture``), the mask arithmetic forward and backward (Eq. 6, 7, upsampling, Eq. 2, 4), and
the optimiser step (Adam, clipping, the learning-rate schedule); the mask arithmetic both as
it was (``channel_mask`` with ``F.interpolate``, ``blend_kept_and_removed``) and as GFI's loops
now do it (``gfi.masks.channel_mask``'s ``Upsampler``/``KeptAndRemoved``; "before" is the
reference pipeline kept in ``tests/masks/reference.py``). Each part is small next to the
network, so it is timed alone, many times, which a busy machine perturbs less than the
difference of two long runs. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import load

from gfi.masks.backgrounds import make_background
from gfi.masks.channel_mask import KeptAndRemoved, Upsampler, channel_mask
from gfi.models.layers import capture, frozen
from tests.masks.reference import blend, blend_kept_and_removed
from tests.masks.reference import channel_mask as channel_mask_reference


def timed_ms(fns: dict, repeats: int) -> dict:
    """{name: {"median": ms, "min": ms}}; the functions take turns in every repeat."""
    ts: dict = {k: [] for k in fns}
    for f in fns.values():
        f()
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            ts[k].append(time.perf_counter() - t0)
    return {k: {"median": 1e3 * statistics.median(v), "min": 1e3 * min(v)} for k, v in ts.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--net-repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clf = load(args.model, "cpu")
    l0, l1 = clf.inversion_layer, clf.channel_layer
    x = torch.rand(args.batch, 3, *clf.input_size, generator=torch.Generator().manual_seed(0))
    p = make_background(x, "blur")
    out = {"model": args.model, "batch": args.batch, "threads": torch.get_num_threads()}
    with frozen(clf.model):
        with torch.no_grad():
            feats, _ = clf.activations(x, [l0, l1], stop=False)
        f_l1 = feats[l1]
        both = torch.cat([x, x])

        def net1():
            leaf = x.detach().requires_grad_(True)
            clf.activations(leaf, [l0], stop=True, clone=False)[0][l0].sum().backward()

        def net2():
            leaf = both.detach().requires_grad_(True)
            clf(leaf).sum().backward()

        def hooks():
            with capture(clf.model, [l0], stop=True, clone=False):
                pass

        w = torch.full((args.batch, 1, f_l1.shape[1]), 0.1, requires_grad=True)
        size = x.shape[-2:]
        up = Upsampler(f_l1.shape[-2:], size)
        kr = KeptAndRemoved(x, p)
        g1 = torch.randn(args.batch, 1, 3, *size)
        g2 = torch.randn(2, args.batch, 1, 3, *size)  # dense gradients, as the network returns

        def mask1_before():  # channel_mask + blend, as before this change
            m, _ = channel_mask_reference(w, f_l1, size)
            blend(x, p, m).backward(g1)

        def mask1_after():
            m, _ = channel_mask(w, f_l1, up)
            kr.kept(m).backward(g1)

        def mask2_before():
            m, _ = channel_mask_reference(w, f_l1, size)
            blend_kept_and_removed(x, p, m).backward(g2)

        def mask2_after():
            m, _ = channel_mask(w, f_l1, up)
            kr(m).backward(g2)

        opt = torch.optim.Adam([w], lr=1e-2)
        sched = torch.optim.lr_scheduler.StepLR(opt, 10, 0.5)

        def step():
            w.grad = torch.ones_like(w)
            opt.step()
            sched.step()
            with torch.no_grad():
                w.clamp_(min=0)
            opt.zero_grad(set_to_none=True)

        out["ms"] = {**timed_ms({"net_stage1": net1, "net_stage2": net2}, args.net_repeats),
                     **timed_ms({"hooks_per_iteration_before": hooks, "mask_stage1_before": mask1_before,
                                 "mask_stage1_after": mask1_after, "mask_stage2_before": mask2_before,
                                 "mask_stage2_after": mask2_after, "optimizer": step}, args.repeats)}
    ms = {k: v["min"] for k, v in out["ms"].items()}
    out["overhead_share_min"] = {
        "stage1_before": (ms["hooks_per_iteration_before"] + ms["mask_stage1_before"] + ms["optimizer"])
        / ms["net_stage1"],
        "stage1_after": (ms["mask_stage1_after"] + ms["optimizer"]) / ms["net_stage1"],
        "stage2_before": (ms["mask_stage2_before"] + ms["optimizer"]) / ms["net_stage2"],
        "stage2_after": (ms["mask_stage2_after"] + ms["optimizer"]) / ms["net_stage2"]}
    print(json.dumps(out, indent=1))
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
