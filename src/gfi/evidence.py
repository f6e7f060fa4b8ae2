r"""The evidence check: does a map hold its class's evidence?

A map m of target c on image x marks a region. The check splits the image in two by the map's own
ranking: the **upper half** u = 1[m > median(m)] (the pixels the map ranks above its median; where
a plateau at the top holds more than half of them, the plateau) and the rest. The kept image
:math:`\Phi(x, u) = x \odot u + p \odot (1 - u)` (Eq. 2) shows only the upper half, the removed
image :math:`\Phi_{bg}(x, u) = x \odot (1 - u) + p \odot u` (Eq. 4) only the rest; both go through
the model in one batched forward of 2 * B * K images (:class:`gfi.masks.KeptAndRemoved`). The map
**holds the class's evidence** when the model scores the class at least as high on the half the map
ranks higher, f_c(kept) >= f_c(removed). It fails in two ways:

* ``"kept_below_removed"``: f_c(kept) < f_c(removed): the half of the image the map ranks lower
  holds more of the class than the half it ranks higher (e.g. a map on the grass beside the dog);
* ``"empty"``: the map is flat, all zeros (GFI's collapsed map, every channel weight zero) or one
  value everywhere: it marks no region, so it holds none of the evidence.

A score that is NaN or inf is ``"nonfinite"``.

Why the halves and not the map itself as the mask: the check must judge every method by one rule.
With the map as a soft mask (Eq. 2, 4 with m), it measured how mask-like a map is, which is GFI's
own stage-2 objective, not where the map lies: on the reporting half of the ImageNet dev set it
failed 148 of 150 gradient maps (sparse: the kept image is almost all blur) and 55 of 150 Grad-CAM
maps, whose object the removed image only half blurs. The halves depend only on the map's ranking
(any monotone rescaling gives the same verdict) and keep and remove equal areas, so neither image is
favoured by its size: 7 of 150 Grad-CAM maps fail then, and the failures are maps ranked off the
object. GFI's own ``prob_kept``/``prob_removed`` (its soft mask under its stage-2 background) stay
in its :class:`~gfi.methods.base.Explanation`; the check does not reuse them, since they answer the
other question.

**One background for every method**, so two methods' verdicts on one image compare: p is a Gaussian
blur of the image with kernel :data:`BLUR_KERNEL` and sigma :data:`BLUR_SIGMA` (81, 20: GFI's default
stage-2 background, blurred enough that an object's shape and texture are gone from the half that
hides it; a light blur, such as the paper's kernel 11 and sigma 5, leaves an object recognisable).

Cost: one forward of 2 * B * K images without gradients, next to the method's own work
(docs/RELIABILITY.md, "Maps without their class's evidence").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from gfi.masks.backgrounds import make_background
from gfi.masks.channel_mask import KeptAndRemoved
from gfi.models.layers import frozen
from gfi.targets import TargetGrid

__all__ = ["BLUR_KERNEL", "BLUR_SIGMA", "PROBLEMS", "EmptyMapWarning", "Evidence", "advice", "background",
           "check_evidence", "description", "empty_maps", "evidence_of", "flat_maps", "upper_half", "warn_empty"]

#: the check's background p: a blur of the image with this kernel size and sigma, for every method
BLUR_KERNEL = 81
BLUR_SIGMA = 20.0

#: what each problem means, in one phrase (the record's ``problem`` field takes the keys)
PROBLEMS = {
    "kept_below_removed": "the map does not hold the class's evidence",
    "empty": "the map is flat (all zeros, or one value everywhere): it marks no region, so it holds none of the "
             "class's evidence",
    "nonfinite": "the model's score of the kept or removed image is NaN or inf",
}


@dataclass(frozen=True)
class Evidence:
    """The check of B x K maps: f_c of the kept and removed images and which maps are flat.

    Attributes:
        prob_kept: (B, K) f_c(Phi(x, u)): the map's upper half kept, the rest blurred (Eq. 2).
        prob_removed: (B, K) f_c(Phi_bg(x, u)): the upper half blurred away (Eq. 4).
        empty: (B, K) True where the map is flat (all zeros, or one value everywhere).
    """

    prob_kept: Tensor
    prob_removed: Tensor
    empty: Tensor

    @property
    def holds(self) -> Tensor:
        """(B, K) True where the map holds its class's evidence: not empty, finite scores, and
        f_c(kept) >= f_c(removed)."""
        finite = torch.isfinite(self.prob_kept) & torch.isfinite(self.prob_removed)
        return ~self.empty & finite & (self.prob_kept >= self.prob_removed)

    def problem(self, row: int, k: int) -> str | None:
        """None where map (row, k) holds the evidence, else a key of :data:`PROBLEMS`."""
        if bool(self.empty[row, k]):
            return "empty"
        kept, removed = float(self.prob_kept[row, k]), float(self.prob_removed[row, k])
        if not (math.isfinite(kept) and math.isfinite(removed)):
            return "nonfinite"
        return "kept_below_removed" if kept < removed else None

    def record(self, row: int, k: int) -> dict[str, Any]:
        """Map (row, k)'s check as JSON values: ``holds``, ``problem`` (None or a key of
        :data:`PROBLEMS`), ``prob_kept`` and ``prob_removed`` (None where not finite)."""
        def num(v: Tensor) -> float | None:
            f = float(v)
            return round(f, 6) if math.isfinite(f) else None

        problem = self.problem(row, k)
        return {"holds": problem is None, "problem": problem, "prob_kept": num(self.prob_kept[row, k]),
                "prob_removed": num(self.prob_removed[row, k])}

    def __len__(self) -> int:
        return self.prob_kept.shape[0]

    def to(self, device: torch.device | str) -> Evidence:
        return Evidence(self.prob_kept.to(device), self.prob_removed.to(device), self.empty.to(device))

    def cpu(self) -> Evidence:
        return self.to("cpu")


#: below this score of the class on the whole image, the advice says how little the model sees of it
LOW_SCORE = 0.1


def advice(explainer, problem: str, prob: float | None = None) -> str:
    """What to try for a map that fails the check (``problem``, a key of :data:`PROBLEMS`; ``prob``:
    f_c on the whole image), as ``"try ..."``. Read from what the method is (its settings' fields),
    never from its name; measured on the dev data (docs/RELIABILITY.md, "Maps without their class's
    evidence")."""
    cfg = getattr(explainer, "config", None)
    fields = set(type(cfg).names()) if cfg is not None and hasattr(type(cfg), "names") else set()
    gfi = {"iters2", "joint"} <= fields  # GFI's stage 2
    other = "gradcam" if gfi else "gfi"
    low = (f"the model gives this class only p={prob:.2g} on the whole image, so there is little of it to "
           "find; " if prob is not None and prob < LOW_SCORE else "")
    if problem == "nonfinite":
        return "check the model's weights (--weights): its scores of the masked images are not finite"
    if problem == "empty":
        return (f"{low}try {other} on this image, and check the weights (--weights): random or untrained weights "
                "give such maps")
    if gfi:
        return (f"{low}try {other} on this image to compare, a longer stage 2 (iters2=90), or, with another object "
                "in the photo, both classes as targets with joint=contrastive")
    return f"{low}try {other} on this image"


class EmptyMapWarning(UserWarning):
    """Some maps of a call are all zeros: the method found none of the class's evidence (a GFI map
    whose channel weights all went to zero, typically on random or untrained weights). The maps are
    returned as zeros, their meaning; what a caller's library does with such a map is its own (the
    front ends say it in the message). Silence it with ``warnings.simplefilter("ignore",
    EmptyMapWarning)``."""


def warn_empty(maps: Tensor, who: str, downstream: str = "") -> Tensor:
    """Warn once (:class:`EmptyMapWarning`) when some of ``maps`` (N, H, W) are all zeros, naming the
    inputs and ``downstream`` (what the caller's library does with them); returns the (N,) mask of
    empty maps. The maps themselves are left as they are: zeros mean "no evidence found"."""
    import warnings

    empty = empty_maps(maps.reshape(maps.shape[0], -1, *maps.shape[-2:])).any(-1)
    if bool(empty.any()):
        rows = [int(i) for i in empty.nonzero().flatten()]
        shown = ", ".join(map(str, rows[:10])) + (f" and {len(rows) - 10} more" if len(rows) > 10 else "")
        warnings.warn(f"{who}: the map of input(s) {shown} (of {maps.shape[0]}) is all zeros: the method found none "
                      "of the class's evidence there (random or untrained weights give such maps); it is returned as "
                      f"zeros{'. ' + downstream if downstream else ''}", EmptyMapWarning, stacklevel=3)
    return empty


def description() -> dict[str, Any]:
    """The check as ``results.json`` states it: the rule, the two images and the background."""
    return {"rule": "a map holds its class's evidence when it is not flat and f_c(kept) >= f_c(removed)",
            "upper_half": "u = 1[m > median(m)] (the map's plateau at the top where it holds more than half)",
            "kept": "x * u + p * (1 - u) (Eq. 2)", "removed": "x * (1 - u) + p * u (Eq. 4)",
            "background": {"kind": "blur", "kernel": BLUR_KERNEL, "sigma": BLUR_SIGMA},
            "same_for_every_method": True}


def background(images: Tensor) -> Tensor:
    """The check's p for (B, C, H, W) images in [0, 1]: a blur of kernel :data:`BLUR_KERNEL`, sigma
    :data:`BLUR_SIGMA` (any channel count; a small image is padded by replication)."""
    return make_background(images, "blur", blur_kernel=BLUR_KERNEL, blur_sigma=BLUR_SIGMA)


def empty_maps(maps: Tensor) -> Tensor:
    """(...,) True where a (..., H, W) map is all zeros (holds no positive value)."""
    return ~(maps.flatten(-2) > 0).any(-1)


def flat_maps(maps: Tensor) -> Tensor:
    """(...,) True where a (..., H, W) map is flat: one value everywhere (all zeros included)."""
    flat = maps.flatten(-2)
    return flat.amax(-1) <= flat.amin(-1)


def upper_half(maps: Tensor) -> Tensor:
    """The (..., H, W) 0/1 masks u of the pixels each map ranks above its median (the lower median for
    an even count); where nothing lies above it (a plateau at the top holds more than half the
    pixels), the plateau. A flat map gives all ones (it is :func:`flat_maps`' empty)."""
    flat = maps.flatten(-2)
    median = flat.median(-1, keepdim=True).values
    above = flat > median
    u = torch.where(above.any(-1, keepdim=True), above, flat >= median)
    return u.to(maps.dtype).view(maps.shape)


def check_evidence(classifier, images: Tensor, maps: Tensor, targets: Tensor | TargetGrid) -> Evidence:
    """The evidence check of ``maps`` (B, K, H, W) at the images' size, for ``targets`` (B, K) class
    indices or a :class:`~gfi.targets.TargetGrid`, on ``images`` (B, C, H, W) in [0, 1]: the kept
    and removed images of every map's :func:`upper_half` (Eq. 2, 4, the check's :func:`background`)
    through ``classifier`` in one forward of 2 * B * K images, without gradients, the model in eval
    mode (:func:`gfi.models.layers.frozen`). The scores are the classifier's f_c (softmax, or sigmoid
    for a multi-label model) for a class index, a target's own score for a target object (a logit, a
    contrastive difference: kept >= removed reads the same)."""
    grid = targets if isinstance(targets, TargetGrid) and targets.indices is None else None
    if grid is not None:
        targets = grid.classes()
    elif isinstance(targets, TargetGrid):
        targets = targets.indices
    if maps.ndim != 4 or targets.shape != maps.shape[:2] or images.shape[0] != maps.shape[0] \
            or images.shape[-2:] != maps.shape[-2:]:
        raise ValueError(f"check_evidence: maps (B, K, H, W) {tuple(maps.shape)}, targets (B, K) "
                         f"{tuple(targets.shape)} and images (B, C, H, W) {tuple(images.shape)} do not agree")
    device = classifier.device
    images, targets = images.to(device=device, dtype=torch.float32), targets.to(device)
    maps = maps.to(device=device, dtype=torch.float32)
    b, k = targets.shape
    if b * k == 0:
        none = maps.new_zeros(b, k)
        return Evidence(none, none, torch.zeros(b, k, dtype=torch.bool, device=device))
    with torch.no_grad(), frozen(classifier.model):
        both = KeptAndRemoved(images, background(images))(upper_half(maps)).flatten(0, 2)  # (2*B*K, C, H, W)
        if grid is not None:
            out = classifier(both)
            s = grid.score(out, "prob", bool(classifier.multilabel), rows=torch.arange(b * k).repeat(2)).float()
            return Evidence(*s.to(device).view(2, b, k), flat_maps(maps))
        scores = classifier.scores(classifier(both).float()).view(2, b, k, -1)
    s = scores.gather(-1, targets.view(1, b, k, 1).expand(2, b, k, 1)).squeeze(-1)
    return Evidence(s[0], s[1], flat_maps(maps))


def evidence_of(explainer, images: Tensor, explanation, targets: Any = None) -> Evidence:
    """The evidence check of ``explanation`` = ``explainer.explain(images, targets)`` (its maps, on
    ``explainer``'s classifier): :func:`check_evidence`, of the targets given (any form
    ``explain`` takes) or else of the explanation's class indices."""
    if targets is not None:
        from gfi.methods.base import as_targets

        targets = as_targets(targets, images.shape[0], explainer.classifier.device,
                             num_classes=explainer.classifier.num_classes)
    return check_evidence(explainer.classifier, images, explanation.maps,
                          explanation.targets if targets is None else targets)
