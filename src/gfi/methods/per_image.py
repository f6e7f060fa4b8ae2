"""Explaining a batch one image at a time, and joining the explanations.

A call whose extra forward arguments hold one row per image (:mod:`gfi.models.forward_args`) cannot
be batched the way the methods batch their images: each lays its rows out in its own way (GFI's
stage 2 sends (2, B, K) kept and removed images, RISE B x N masked copies, SmoothGrad B x N noisy
samples), and an argument would have to follow each image into every one. So such a call is cut
into B calls of one image, each with its own row of the arguments, and their explanations are
concatenated: the result is the one a batch would give, at the cost of B calls instead of one.
"""

from __future__ import annotations

from dataclasses import fields

import torch
from torch import Tensor

from gfi.methods.base import Explainer, Explanation, TargetsLike, as_targets, check_images
from gfi.models.forward_args import ForwardArgs


def explain_one_at_a_time(explainer: Explainer, images: Tensor, targets: TargetsLike,
                          extra: ForwardArgs) -> Explanation:
    """``explainer.explain(images, targets)`` with ``extra`` as one call per image: targets are checked
    for the whole batch first (:func:`~gfi.methods.base.as_targets`; None stays each image's top-1)."""
    clf = explainer.classifier
    images = check_images(images, clf.channels)
    b = images.shape[0]
    rows = None if targets is None else as_targets(targets, b, images.device, num_classes=clf.num_classes)
    parts = []
    for i in range(b):
        one = extra.image(i, b)
        parts.append(explainer.explain(images[i:i + 1], None if rows is None else rows[i:i + 1],
                                       forward_args=one.args, forward_kwargs=dict(one.kwargs)))
    return cat_explanations(parts)


def cat_explanations(parts: list[Explanation]) -> Explanation:
    """The explanations of consecutive batches as one: every tensor field (batch first) concatenated
    along the batch, None where a part has none; loss histories ((T, B, ...)) along their batch
    dimension, a shorter one (an early stop) padded with NaN; other fields (the method) the first's."""
    out = {}
    for f in fields(Explanation):
        values = [getattr(p, f.name) for p in parts]
        if f.name == "loss_history":
            out[f.name] = {key: _cat_history([v[key] for v in values]) for key in values[0]}
        elif isinstance(values[0], Tensor):
            out[f.name] = None if any(v is None for v in values) else torch.cat(values)
        else:
            out[f.name] = values[0]
    return Explanation(**out)


def _cat_history(hs: list[Tensor]) -> Tensor:
    t = max(h.shape[0] for h in hs)
    return torch.cat([torch.cat([h, h.new_full((t - h.shape[0], *h.shape[1:]), float("nan"))]) for h in hs], 1)
