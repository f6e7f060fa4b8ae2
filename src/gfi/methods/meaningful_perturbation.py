r"""Meaningful Perturbation (Fong & Vedaldi, ICCV 2017), "mask", on gfi's mask machinery.

The deletion game of the paper's Eq. (3)-(4): find the smallest, smoothest region whose blurring
destroys the class score::

    m*   = argmin_{m in [0,1]^{28x28}}  lambda1 ||1 - m||_1 + lambda2 sum_u ||grad m(u)||_beta^beta
                                       + E_tau[ f_c(Phi(x(. - tau), M(m))) ]
    Phi(x, M) = x * M + p * (1 - M),    p = GaussianBlur_{sigma0}(x)
    M(m)      = GaussianBlur_{sigma_m}(Upsample_bilinear(m))          (m = 1 keeps a pixel)

and the saliency is ``1 - M(m*)`` (what had to be deleted), min-max normalised.

Settings (the paper's Sec. 4 "implementation details", also TorchRay/authors' values):
Adam, learning rate 0.1, 300 iterations, lambda1 = 1e-4, lambda2 = 1e-2, beta = 3, a 28 x 28
mask upsampled by 8 (to 224), the upsampled mask blurred with sigma_m = 5, blur perturbation
sigma0 = 10, and jitter tau drawn uniformly from {0, ..., 3} pixels in each axis at every
iteration. f_c is the softmax probability (a :mod:`gfi.targets` target: its own score, which the
game then lowers). The mask starts at 1 (nothing deleted) and is clipped to
[0, 1] after every step. The regularisers are sums over the 28 x 28 parameter (the paper writes
them over the mask; these are the entries that are optimised). The paper's blur perturbation is a
spatially varying blur of width ``sigma0 (1 - m(u))``; like the authors' released code this
implementation blends x with one blur of width sigma0 (the two agree at m = 0 and m = 1).

Where it differs from GFI (exactly where the papers differ): a free low-resolution pixel mask
(GFI: a combination of l1's channels, Eq. 6), only the deletion term (GFI Eq. 9 also rewards the
kept image), an L1 + total-variation prior (GFI: ||w||_1), blur sigma 10 (GFI: 11/5), jitter, and
300 Adam steps at lr 0.1 (GFI: 10 + 70 steps at 1e-2 with decay). ``iterations=100`` (the
``cheaper`` settings) is the documented cheaper setting. ``l1`` is the weight lambda1 of the L1 term.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from gfi.masks.backgrounds import gaussian_blur, kernel_for_sigma
from gfi.masks.channel_mask import KeptAndRemoved, Upsampler, min_max
from gfi.masks.optimizer import MaskOptimizer
from gfi.methods.base import Explainer, Explanation, MaskExplanation, TargetsLike
from gfi.models.layers import frozen
from gfi.objectives import target_scores, total_variation
from gfi.settings import Settings, setting


@dataclass(frozen=True)
class MeaningfulPerturbationSettings(Settings):
    """What decides a Meaningful Perturbation map (published values: Fong & Vedaldi 2017, Sec. 4)."""

    iterations: int = setting(300, "Adam iterations", paper=300, low=1)
    lr: float = setting(0.1, "Adam learning rate", paper=0.1, low=0, low_open=True)
    l1: float = setting(1e-4, "lambda1, weight of the L1 norm ||1 - m||_1 of the deleted area", paper=1e-4, low=0)
    tv: float = setting(1e-2, "lambda2, weight of the total variation of the mask", paper=1e-2, low=0)
    tv_beta: float = setting(3.0, "exponent beta of the total variation", paper=3.0, low=1)
    mask_size: int = setting(28, "side of the mask, upsampled to the input size", paper=28, low=2)
    blur_sigma: float = setting(10.0, "sigma0 of the blurred image that replaces deleted pixels", paper=10.0, low=0,
                                low_open=True)
    mask_blur_sigma: float = setting(5.0, "sigma_m of the blur of the upsampled mask (0: none)", paper=5.0, low=0)
    jitter: int = setting(4, "the image is shifted by 0 .. jitter - 1 pixels per axis each iteration (1: none)",
                          paper=4, low=1)
    seed: int = setting(0, "seed of the jitter")


def shift(x: Tensor, dy: int, dx: int) -> Tensor:
    """``x(. - tau)``: the (..., H, W) batch moved by (dy, dx) >= 0 pixels, edges replicated."""
    if dy == 0 and dx == 0:
        return x
    h, w = x.shape[-2:]
    lead = x.shape[:-2]
    flat = x.reshape(-1, 1, h, w)
    padded = F.pad(flat, (dx, 0, dy, 0), mode="replicate")
    return padded[..., :h, :w].reshape(*lead, h, w)


class MeaningfulPerturbation(Explainer):
    name = "mask"
    target_objects = True  # any gfi.targets target, through the target grid
    needs_module = False
    summary = "Meaningful Perturbation (Fong & Vedaldi 2017): smallest blurred 28x28 mask that deletes the class"
    settings_class = MeaningfulPerturbationSettings
    cheaper: ClassVar[dict[str, Any]] = {"iterations": 100}
    test_settings: ClassVar[dict[str, Any]] = {"iterations": 30, "mask_size": 8, "mask_blur_sigma": 1.0,
                                                 "blur_sigma": 3.0}
    config: MeaningfulPerturbationSettings

    def upsampled(self, m: Tensor, size: tuple[int, int], up: Upsampler | None = None) -> Tensor:
        """M(m): bilinear upsampling of (B, K, s, s) to ``size`` and a blur of width sigma_m."""
        up = up or Upsampler(m.shape[-2:], size, device=m.device, dtype=m.dtype)
        big = up(m)
        s = self.config.mask_blur_sigma
        if s > 0:
            big = gaussian_blur(big.flatten(0, 1).unsqueeze(1), kernel_for_sigma(s), s).view_as(big)
        return big

    def _explain(self, images: Tensor, targets: TargetsLike) -> Explanation:
        cfg, clf = self.config, self.classifier
        grid, probs = self._target_grid(images, targets)
        b, k = grid.shape
        size = tuple(images.shape[-2:])
        p = gaussian_blur(images, kernel_for_sigma(cfg.blur_sigma), cfg.blur_sigma)
        gen = torch.Generator().manual_seed(cfg.seed)
        start = torch.ones(b, k, cfg.mask_size, cfg.mask_size, device=images.device)  # m = 1: nothing deleted
        up = Upsampler(start.shape[-2:], size, device=images.device, dtype=start.dtype)

        def deletion_game(m: Tensor, _it: int) -> Tensor:
            """Eq. (3)-(4) per row at one jitter tau: lambda1 ||1 - m||_1 + lambda2 TV_beta(m) + f_c."""
            dy, dx = torch.randint(0, cfg.jitter, (2,), generator=gen).tolist()
            big = self.upsampled(m, size, up)
            phi = KeptAndRemoved(shift(images, dy, dx), shift(p, dy, dx)).kept(big).flatten(0, 1)
            out = clf(phi)
            score = target_scores(out, grid.indices.reshape(-1), clf.multilabel).view(b, k) \
                if grid.indices is not None and isinstance(out, Tensor) and out.ndim == 2 else \
                grid.score(out, "prob", clf.multilabel).float().view(b, k)
            return cfg.l1 * (1 - m).abs().sum((-2, -1)) + cfg.tv * total_variation(m, cfg.tv_beta) + score

        with frozen(clf.model):
            res = MaskOptimizer(cfg.lr, project=(0, 1), progress=self._progress(cfg.iterations)).run(
                start, deletion_game, cfg.iterations)
            with torch.no_grad():
                sal, collapsed = min_max(1 - self.upsampled(res.param, size, up))
        return MaskExplanation(maps=sal, method=self.name, collapsed=collapsed, loss_history={"mask": res.losses},
                           **self._fields(grid, probs))
