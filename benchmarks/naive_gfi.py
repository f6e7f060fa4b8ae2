"""GFI written as the paper's pseudo-code reads (Alg. 1 and Alg. 2), line by line: the benchmark's
"straightforward implementation", against which ``gfi``'s batched one is timed.

What makes it straightforward (and slower), on purpose:

* one image and one target at a time (batch size 1);
* stage 1 runs the whole network on Phi and reads f^{l0}(Phi) with a hook (no early stop at l0);
* stage 2 runs the kept image Phi and the removed image Phi_bg through the network in two
  separate forward passes;
* stage 1 is repeated for every target class of an image.

What it shares with ``gfi`` so that the comparison is about the passes, not about waste that
nobody would write: the model's parameters do not require gradients and the features of x at
l0/l1 are computed once. The settings are those of ``GFIConfig.paper()`` (Sec. 4.1.1) and the
maps are the same as ``gfi``'s paper preset (``tests/test_naive_gfi.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gfi.masks.backgrounds import make_background
from gfi.models.classifier import Classifier


def _features(clf: Classifier, x: Tensor, name: str) -> tuple[Tensor, Tensor]:
    """The whole forward pass of x; returns (the activation of module ``name``, the logits)."""
    store = {}
    module = dict(clf.model.named_modules())[name]
    handle = module.register_forward_hook(lambda _m, _a, out: store.setdefault("f", out.clone()))
    try:
        logits = clf(x)
    finally:
        handle.remove()
    return store["f"], logits


def _mask(w: Tensor, f_l1: Tensor, size) -> Tensor:
    m = (w.view(1, -1, 1, 1) * f_l1).sum(1, keepdim=True)                  # Eq. (6)
    m = (m - m.min()) / (m.max() - m.min())                                  # Eq. (7)
    return F.interpolate(m, size=size, mode="bilinear", align_corners=False)  # upsample


def naive_gfi(clf: Classifier, x: Tensor, target: int, *, gamma: float = 10.0, delta: float = 1.0,
              lam: float = 1.0, w_init: float = 0.1, lr1: float = 1e-2, lr2: float = 1e-2, iters1: int = 10,
              iters2: int = 70, decay_every: int = 10, decay: float = 0.5, blur_kernel: int = 11,
              blur_sigma: float = 5.0, background: str = "blur") -> tuple[Tensor, Tensor]:
    """The class map of one image ``x`` (1, 3, H, W) for class ``target``: (H, W), and w (C,)."""
    l0, l1 = clf.inversion_layer.name, clf.channel_layer.name
    size = x.shape[-2:]
    for p_ in clf.model.parameters():
        p_.requires_grad_(False)
    clf.model.eval()
    p = make_background(x, background, blur_kernel=blur_kernel, blur_sigma=blur_sigma)
    with torch.no_grad():
        f_l0_x, _ = _features(clf, x, l0)
        f_l1_x, _ = _features(clf, x, l1)

    # Algorithm 1: guided feature inversion
    w = torch.full((f_l1_x.shape[1],), w_init, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.Adam([w], lr=lr1)
    for _ in range(iters1):
        m = _mask(w, f_l1_x, size)
        phi = x * m + p * (1 - m)                                              # Eq. (2)
        f_l0_phi, _ = _features(clf, phi, l0)
        loss = ((f_l0_phi - f_l0_x) ** 2).sum() + gamma * w.sum()              # Eq. (8), w >= 0
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            w.clamp_(min=0)

    # Algorithm 2: class-discriminative fine-tuning, from stage 1's w
    w = w.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr2)
    for it in range(iters2):
        if it > 0 and it % decay_every == 0:
            for g in opt.param_groups:
                g["lr"] *= decay
        m = _mask(w, f_l1_x, size)
        phi = x * m + p * (1 - m)                                              # Eq. (2)
        phi_bg = x * (1 - m) + p * m                                           # Eq. (4)
        kept = clf(phi).softmax(-1)[0, target]
        removed = clf(phi_bg).softmax(-1)[0, target]
        loss = -kept + lam * removed + delta * w.sum()                         # Eq. (9)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            w.clamp_(min=0)
    with torch.no_grad():
        return _mask(w, f_l1_x, size)[0, 0], w.detach()


def naive_gfi_batch(clf: Classifier, images: Tensor, targets: list[list[int]],
                    **settings) -> tuple[Tensor, Tensor]:
    """Maps (B, K, H, W) and weights (B, K, C) for every image and target, one at a time."""
    out = [[naive_gfi(clf, images[b:b + 1], c, **settings) for c in ts] for b, ts in enumerate(targets)]
    return (torch.stack([torch.stack([m for m, _ in row]) for row in out]),
            torch.stack([torch.stack([w for _, w in row]) for row in out]))
