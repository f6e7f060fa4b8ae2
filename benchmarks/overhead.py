"""Per-iteration cost of what GFI adds to its network passes, measured piece by piece.

    python benchmarks/overhead.py [--model efficientnet_lite0] [--batch 1] [--repeats 50]

Times (median of ``--repeats``) one stage-1 and one stage-2 iteration's network pass (the floor's
unit), and separately the parts around it: registering and removing the l0 hook
(``capture``), the mask arithmetic forward and backward (Eq. 6, 7, upsampling, Eq. 2, 4), and
the optimiser step (Adam, clipping, the learning-rate schedule). Each part is small next to the
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

from bench import load

from gfi.masks.backgrounds import make_background
from gfi.masks.channel_mask import blend, blend_kept_and_removed, channel_mask
from gfi.models.layers import capture, frozen


def median_ms(f, repeats: int) -> float:
    f()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=50)
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

        def mask1():
            m, _ = channel_mask(w, f_l1, x.shape[-2:])
            blend(x, p, m)[:, 0].sum().backward()

        def mask2():
            m, _ = channel_mask(w, f_l1, x.shape[-2:])
            blend_kept_and_removed(x, p, m).sum().backward()

        opt = torch.optim.Adam([w], lr=1e-2)
        sched = torch.optim.lr_scheduler.StepLR(opt, 10, 0.5)

        def step():
            w.grad = torch.ones_like(w)
            opt.step()
            sched.step()
            with torch.no_grad():
                w.clamp_(min=0)
            opt.zero_grad(set_to_none=True)

        out["ms"] = {"net_stage1": median_ms(net1, args.net_repeats), "net_stage2": median_ms(net2, args.net_repeats),
                     "hooks": median_ms(hooks, args.repeats), "mask_stage1": median_ms(mask1, args.repeats),
                     "mask_stage2": median_ms(mask2, args.repeats), "optimizer": median_ms(step, args.repeats)}
    ms = out["ms"]
    out["overhead_share_stage1"] = (ms["hooks"] + ms["mask_stage1"] + ms["optimizer"]) / ms["net_stage1"]
    out["overhead_share_stage2"] = (ms["mask_stage2"] + ms["optimizer"]) / ms["net_stage2"]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
