r"""Extremal Perturbation (Fong, Patrick & Vedaldi, ICCV 2019), preservation game, on gfi's machinery.

For each area fraction a, find the smooth mask m of area a whose preserved region keeps the class
logit y_c largest::

    m_a = argmax_{m = S(mbar), mbar in [0,1]^{h x w}}  y_c(Phi(x, m)) - lambda_t ||vecsort(m) - r_a||^2 / n

* Smooth parametrisation S (Sec. 3.3, "smooth max-convolution"): the parameters mbar sit on a grid
  of stride ``step`` pixels; a pixel u takes the smooth maximum over its (2R+1)^2 nearest
  parameters v of ``k(||u - step * v|| / sigma) * mbar_v`` with the kernel
  ``k(z) = exp(-2 max(z - 1/2, 0)^2)`` and ``smoothmax(t) = sum_j t_j softmax(20 t)_j``
  (R = 1 + ceil(sigma / step)), then m is clipped to [0, 1].
* Area constraint (Sec. 3.2): ``r_a`` is the sorted template with n(1 - a) zeros followed by n a
  ones (n = H W); the ranking loss pulls the sorted mask values towards it. Its weight starts at
  lambda = 300 and grows by 0.35% per iteration (turning the penalty into a constraint).
* Perturbation Phi (Sec. 3.1, blur): a pyramid of L = 8 blurs of x with sigma_l = 20 (1 - l / 7),
  level 7 being x itself; pixel u takes the linear interpolation of the pyramid at level
  ``m(u) (L - 1)`` (m = 1 keeps the pixel, m = 0 is the strongest blur).
* Reward: the logit y_c (TorchRay's ``simple_reward``; a :mod:`gfi.targets` target: its own score);
  jitter: the perturbed image is flipped horizontally every other iteration.

Settings: the authors' reference code (TorchRay ``extremal_perturbation``, read for the maths,
not copied): 800 iterations, SGD with momentum 0.9 (dampening 0.9) and learning rate 0.01,
step 7, sigma 21, mbar starting at 1. Areas: 0.05, 0.1 and 0.2 (the range the paper reports);
the map is the mean of the areas' masks, min-max normalised (so the core kept at every area
scores highest). Differences from TorchRay: the area is measured on the image (TorchRay's mask
has a margin of sigma pixels around it). Cheaper documented setting (``cheaper``): one area,
0.1, and 300 iterations.
"""

from __future__ import annotations

import itertools
import math
import operator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from gfi.errors import SettingsError
from gfi.masks.backgrounds import gaussian_blur, kernel_for_sigma
from gfi.masks.channel_mask import min_max
from gfi.masks.optimizer import MaskOptimizer
from gfi.methods.base import Explainer, Explanation, MaskExplanation, TargetsLike
from gfi.models.layers import frozen
from gfi.settings import Settings, setting


@dataclass(frozen=True)
class ExtremalSettings(Settings):
    """What decides an Extremal Perturbation map (values of the authors' reference code, TorchRay)."""

    areas: tuple[float, ...] = setting((0.05, 0.1, 0.2), "area fractions in (0, 1); the map averages their masks")
    iterations: int = setting(800, "SGD iterations", paper=800, low=1)
    lr: float = setting(0.01, "SGD learning rate", paper=0.01, low=0, low_open=True)
    momentum: float = setting(0.9, "SGD momentum (and dampening)", paper=0.9, low=0)
    step: int = setting(7, "stride in pixels of the mask's parameter grid", paper=7, low=1)
    sigma: float = setting(21.0, "width of the smooth max-convolution kernel", paper=21.0, low=0, low_open=True)
    levels: int = setting(8, "levels of the blur pyramid", paper=8, low=2)
    max_blur: float = setting(20.0, "sigma of the strongest blur of the pyramid", paper=20.0, low=0, low_open=True)
    area_weight: float = setting(300.0, "initial weight lambda of the area constraint", paper=300.0, low=0)
    area_growth: float = setting(1.0035, "factor by which the area weight grows each iteration", paper=1.0035, low=0)
    jitter: bool = setting(True, "flip the perturbed image horizontally every other iteration", paper=True)

    def __post_init__(self) -> None:
        areas = self.areas
        values = areas if isinstance(areas, tuple | list) else (areas,)
        if not values or not all(isinstance(a, int | float) and 0 < a < 1 for a in values):
            raise SettingsError(f"ExtremalSettings.areas must be fractions in (0, 1), got {areas}")
        super().__post_init__()


class SmoothMaskGenerator:
    """S: (N, h, w) parameters on a stride-``step`` grid -> (N, H, W) smooth masks."""

    def __init__(self, size: tuple[int, int], step: int, sigma: float, coldness: float = 20.0,
                 device: torch.device | str = "cpu") -> None:
        self.size, self.step, self.sigma, self.coldness = size, step, sigma, coldness
        self.shape_in = (math.ceil(size[0] / step), math.ceil(size[1] / step))
        self.radius = 1 + math.ceil(sigma / step)
        r = self.radius
        off = torch.arange(-r, r + 1, device=device)
        y = torch.arange(size[0], device=device)
        x = torch.arange(size[1], device=device)
        self.iy, self.ix = y // step, x // step
        # distance of pixel u to the neighbour parameter (iy + dy, ix + dx): (2r+1, 2r+1, H, W)
        ddy = (y[None, :] - step * (self.iy[None, :] + off[:, None])).float()  # (2r+1, H)
        ddx = (x[None, :] - step * (self.ix[None, :] + off[:, None])).float()  # (2r+1, W)
        dist = (ddy[:, None, :, None] ** 2 + ddx[None, :, None, :] ** 2).sqrt()
        self.weight = torch.exp(-2 * ((dist / sigma - 0.5).clamp(min=0) ** 2)).flatten(0, 1)  # (K, H, W)

    def __call__(self, mbar: Tensor) -> Tensor:
        r = self.radius
        k = 2 * r + 1
        n = mbar.shape[0]
        neigh = F.unfold(mbar.unsqueeze(1), k, padding=r).view(n, k * k, *self.shape_in)
        vals = neigh[:, :, self.iy][:, :, :, self.ix] * self.weight  # (N, K, H, W)
        smooth = (vals * torch.softmax(self.coldness * vals, dim=1)).sum(1)
        return smooth.clamp(0, 1)


def blur_pyramid(x: Tensor, levels: int, max_blur: float) -> Tensor:
    """(B, L, C, H, W): level l is x blurred with sigma = max_blur (1 - l / (L - 1)); the last is x."""
    out = []
    for level in range(levels):
        s = max_blur * (1 - level / (levels - 1))
        out.append(gaussian_blur(x, kernel_for_sigma(s), s) if s > 0 else x)
    return torch.stack(out, 1)


def perturb(pyramid: Tensor, m: Tensor) -> Tensor:
    """Phi(x, m): pyramid (N, L, C, H, W), mask (N, H, W) -> (N, C, H, W), linear in the level m (L - 1)."""
    levels = pyramid.shape[1]
    pos = m.unsqueeze(1) * (levels - 1)  # (N, 1, H, W)
    lv = torch.arange(levels, device=m.device, dtype=m.dtype).view(1, -1, 1, 1)
    w = (1 - (pos - lv).abs()).clamp(min=0)  # (N, L, H, W), sums to 1 over L
    return (w.unsqueeze(2) * pyramid).sum(1)


def area_loss(m: Tensor, areas: Tensor) -> Tensor:
    """||vecsort(m) - r_a||^2 / n per row: ``m`` (N, H, W), ``areas`` (N,) fractions."""
    flat = m.flatten(1)
    n = flat.shape[1]
    ranks = torch.arange(n, device=m.device)
    ref = (ranks[None, :] >= (n - (areas * n).long())[:, None]).to(m.dtype)
    return (flat.sort(1)[0] - ref).pow(2).mean(1)


class ExtremalPerturbation(Explainer):
    name = "extremal"
    target_objects = True  # any gfi.targets target, through the target grid
    needs_module = False
    summary = "Extremal Perturbation (Fong et al. 2019): smooth masks of fixed area that preserve the class"
    settings_class = ExtremalSettings
    cheaper: ClassVar[dict[str, Any]] = {"areas": (0.1,), "iterations": 300}
    # no flip jitter in tests: the region test's model looks at one quadrant, so it is not flip-invariant
    test_settings: ClassVar[dict[str, Any]] = {"iterations": 30, "step": 2, "sigma": 3.0, "areas": (0.1, 0.2),
                                                 "jitter": False}
    config: ExtremalSettings

    def _explain(self, images: Tensor, targets: TargetsLike) -> Explanation:
        cfg, clf = self.config, self.classifier
        grid, probs = self._target_grid(images, targets)
        b, k = grid.shape
        a = len(cfg.areas)
        size = tuple(images.shape[-2:])
        gen = SmoothMaskGenerator(size, cfg.step, cfg.sigma, device=images.device)
        pyr = blur_pyramid(images, cfg.levels, cfg.max_blur).repeat_interleave(k * a, 0)  # rows: (b, k, a)
        rows = torch.arange(b * k).repeat_interleave(a)  # each mask's target number
        areas = torch.tensor(cfg.areas, device=images.device).repeat(b * k)
        # lambda_t = lambda growth^t, multiplied up one iteration at a time
        weights = list(itertools.accumulate([cfg.area_growth] * (cfg.iterations - 1), operator.mul,
                                            initial=cfg.area_weight))

        def preservation_game(mbar: Tensor, it: int) -> Tensor:
            """Per row: -y_c(Phi(x, S(mbar))) + lambda_t ||vecsort(S(mbar)) - r_a||^2 / n."""
            m = gen(mbar)
            x = perturb(pyr, m)
            if cfg.jitter and it % 2 == 0:
                x = x.flip(-1)
            reward = grid.score(clf(x), "logit", clf.multilabel, rows=rows).float()
            return -reward + weights[it] * area_loss(m, areas)

        with frozen(clf.model):
            start = torch.ones(b * k * a, *gen.shape_in, device=images.device)
            res = MaskOptimizer(cfg.lr, kind="sgd", momentum=cfg.momentum, project=(0, 1),
                                progress=self._progress(cfg.iterations)).run(start, preservation_game, cfg.iterations)
            with torch.no_grad():
                masks = gen(res.param).view(b, k, a, *size)
        maps, collapsed = min_max(masks.mean(2))
        return MaskExplanation(maps=maps, method=self.name, collapsed=collapsed,
                           loss_history={"extremal": res.losses.view(-1, b, k, a)}, **self._fields(grid, probs))
