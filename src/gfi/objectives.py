r"""The objectives the mask methods minimise, in one place (Du et al. KDD 2018; Fong & Vedaldi 2017).

* :func:`inversion_error`: Eq. (8)'s (and Eq. 3's) first term,
  :math:`\|f^{l_0}(\Phi) - f^{l_0}(x)\|^2`, optionally relative to :math:`\|f^{l_0}(x)\|^2`.
* :func:`l1_norm`: :math:`\|w\|_1` of Eq. (8) and Eq. (9), with its two readings (sum or mean over the
  channels; subgradient 1 or 0 at :math:`w_i = 0`).
* :func:`class_scores`, :func:`target_scores`: the class score :math:`f_c`, the softmax probability of
  class c (the sigmoid of its logit for a multi-label model), or the logit; ``Classifier.scores``
  is :func:`class_scores`.
* :func:`target_terms`: Eq. (9)'s class terms of the kept and the removed image, in the probability
  or the log form.
* :func:`score_term`: beyond the paper, one of Eq. (9)'s class terms for any target's own score s
  (:mod:`gfi.targets`), which need not be a probability.
* :func:`contrast_term`, :func:`others_removed_term`: beyond the paper, the image's other targets'
  scores on target c's kept and removed images (several targets explained against each other: GFI's
  ``joint="contrastive"`` or ``"separate"``).
* :func:`mask_overlap`: beyond the paper, the overlap of the masks of several targets of one image
  (targets that are different objects: GFI's ``joint="separate"``).
* :func:`total_variation`: the anisotropic total variation of a mask: GFI's perimeter-scaled TV
  (``per_side=True``, beyond the paper) and Meaningful Perturbation's beta-TV (Fong & Vedaldi 2017,
  Eq. 4).

Pure tensor functions: nothing here knows about models, methods or settings objects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor


def inversion_error(f_phi: Tensor, f_x: Tensor, relative: bool) -> Tensor:
    r"""Eq. (8)'s first term per image: :math:`\|f^{l_0}(\Phi) - f^{l_0}(x)\|^2` summed over every
    feature of each row, divided by :math:`\|f^{l_0}(x)\|^2` when ``relative`` (1 = everything lost)."""
    err = (f_phi - f_x).pow(2).flatten(1).sum(1)
    if relative:
        err = err / f_x.pow(2).flatten(1).sum(1).clamp_min(torch.finfo(f_x.dtype).tiny)
    return err


def l1_norm(w: Tensor, *, mean: bool = False, grad_at_zero: Literal["one", "zero"] = "one",
            nonnegative: bool = True) -> Tensor:
    r""":math:`\|w\|_1` over the last dim (Eq. 8 and 9), divided by the number of channels when ``mean``.

    With ``nonnegative`` weights and ``grad_at_zero="one"`` the norm is written :math:`\sum_i w_i` (its
    value on the feasible set :math:`w \ge 0`), so the subgradient at :math:`w_i = 0` is 1 and the term
    keeps pressing a zero weight down; otherwise :math:`\sum_i |w_i|` (torch's abs: subgradient 0 at 0).
    """
    norm = w.sum(-1) if grad_at_zero == "one" and nonnegative else w.abs().sum(-1)
    return norm / w.shape[-1] if mean else norm


def class_scores(logits: Tensor, multilabel: bool) -> Tensor:
    """f_c of every class: softmax probabilities over the last dim, or sigmoids for a multi-label model."""
    return torch.sigmoid(logits) if multilabel else logits.softmax(-1)


def target_scores(logits: Tensor, targets: Tensor, multilabel: bool,
                  kind: Literal["prob", "logit"] = "prob") -> Tensor:
    """f_c for every row: ``logits`` (N, classes), ``targets`` (N,); ``kind`` ``"prob"``
    (:func:`class_scores`) or ``"logit"``. Computed in float32 at least."""
    z = logits.float()
    if kind == "logit":
        return z.gather(1, targets.view(-1, 1)).squeeze(1)
    return class_scores(z, multilabel).gather(1, targets.view(-1, 1)).squeeze(1)


def target_terms(logits: Tensor, targets: Tensor, multilabel: bool,
                 score: Literal["prob", "log"]) -> tuple[Tensor, Tensor]:
    r"""The class terms of Eq. (9) (and Eq. 5) for the kept and the removed images.

    ``logits`` is (2, B, K, n_classes) (kept, removed), ``targets`` (B, K). Returns ``(gain, loss)``
    with Eq. (9) = -gain + lambda * loss + delta :math:`\|w\|_1`: for ``"prob"``, gain =
    :math:`f_c(\Phi)` and loss = :math:`f_c(\Phi_{bg})`; for ``"log"``, gain = :math:`\log f_c(\Phi)`
    and loss = :math:`-\log(1 - f_c(\Phi_{bg}))`, computed from the logits without forming f_c, so
    they keep a gradient where f_c is near 0 or 1.
    """
    idx = targets.unsqueeze(0).unsqueeze(-1).expand(2, *targets.shape, 1)
    z = logits.gather(-1, idx).squeeze(-1)  # (2, B, K)
    if multilabel:
        if score == "prob":
            s = torch.sigmoid(z)
            return s[0], s[1]
        return F.logsigmoid(z[0]), -F.logsigmoid(-z[1])
    lse = logits.logsumexp(-1)
    if score == "prob":
        s = (z - lse).exp()
        return s[0], s[1]
    others = logits[1].scatter(-1, targets.unsqueeze(-1), float("-inf")).logsumexp(-1)
    return z[0] - lse[0], -(others - lse[1])


def score_term(target: Callable, output: Any, log: bool, *, removed: bool) -> Tensor:
    r"""Beyond the paper: one of Eq. (9)'s class terms for a target's own score s (a
    :mod:`gfi.targets` target: any differentiable score of the model's output in place of f_c), on
    the model's ``output`` for the kept images (the gain) or, with ``removed``, for the removed images
    (the loss), with Eq. (9) = -gain + lambda * loss + delta :math:`\|w\|_1`:

    * a probability (``target.probability``: a softmax or sigmoid class score) in the log form
      (``log``): gain = :math:`\log s(\Phi)`, loss = :math:`-\log(1 - s(\Phi_{bg}))`, from the target's own
      ``log`` and ``log1m`` (computed from the logits for a class score), as :func:`target_terms`;
    * otherwise (the probability form, or a score that is not a probability: a logit, a contrastive
      difference, a sum of segmentation logits, a regression output, a detection score read
      linearly): gain = :math:`s(\Phi)`, loss = :math:`s(\Phi_{bg})`. The log form needs s in [0, 1]; an
      unbounded score is read linearly, and weighs against :math:`\delta \|w\|_1` on its own scale.

    ``target`` is called on ``output`` (N rows) and returns (N,)."""
    if log and getattr(target, "probability", False):
        return -target.log1m(output) if removed else target.log(output)
    return target(output)


def other_targets(targets: Tensor) -> Tensor:
    """(B, K, K - 1): for each row k of ``targets`` (B, K), the image's other K - 1 targets, in order."""
    b, k = targets.shape
    if k < 2:
        return targets.new_zeros(b, k, 0)
    idx = torch.tensor([[j for j in range(k) if j != i] for i in range(k)], device=targets.device)
    return targets[:, idx]


def contrast_term(kept_logits: Tensor, others: Tensor, multilabel: bool) -> Tensor:
    r"""Beyond the paper: how much the kept image of target c still shows the image's *other*
    targets (contrastive targets: GFI's ``joint`` contrastive or separate), to add to Eq. (9) with
    weight ``contrast``:

    :math:`\frac{1}{K-1} \sum_{c' \ne c} -\log(1 - f_{c'}(\Phi(x, m_c)))`, over the other targets c'
    of the same image, so that the kept region of c is pushed to hold none of their evidence.

    ``kept_logits`` is (B, k, n_classes) (row k: the kept image of one target), ``others`` (B, k, K - 1)
    the image's other targets for each row (:func:`other_targets`; a chunk of rows sees all K);
    returns (B, k), zeros when K = 1. Computed from the logits (``log1p(-exp(log f))``, clamped
    below 0) so that it keeps a gradient where f_{c'} is near 0.
    """
    if others.shape[-1] == 0:
        return kept_logits.new_zeros(kept_logits.shape[:-1])
    if multilabel:
        log_not = F.logsigmoid(-kept_logits.gather(-1, others))  # log(1 - sigmoid)
    else:
        log_f = kept_logits.log_softmax(-1).gather(-1, others).clamp(max=-1e-7)
        log_not = torch.log1p(-log_f.exp())
    return -log_not.mean(-1)


def others_removed_term(removed_logits: Tensor, others: Tensor, multilabel: bool) -> Tensor:
    r"""Beyond the paper: how much removing target c's region costs the image's *other* targets
    (GFI's ``joint`` contrastive or separate), to add to Eq. (9) with weight ``keep_others``:

    :math:`\frac{1}{K-1} \sum_{c' \ne c} -\log f_{c'}(\Phi_{bg}(x, m_c))`, over the other targets c'
    of the same image. Where m_c spills onto another target's object, removing it lowers that
    target's score, so the term pushes m_c off the other objects (Eq. 9's own removed term pushes
    m_c onto everything that looks like c, which in a picture of several dogs is the other dogs).

    ``removed_logits`` is (B, k, n_classes) (row k: the removed image of one target), ``others``
    (B, k, K - 1) as for :func:`contrast_term`; returns (B, k), zeros when K = 1 (a single target is
    explained exactly as Eq. 9).
    """
    if others.shape[-1] == 0:
        return removed_logits.new_zeros(removed_logits.shape[:-1])
    log_f = F.logsigmoid(removed_logits.gather(-1, others)) if multilabel else \
        removed_logits.log_softmax(-1).gather(-1, others)
    return -log_f.mean(-1)


def mask_overlap(m: Tensor) -> Tensor:
    r"""Beyond the paper: for the K masks of one image, (B, K, H, W), how much mask k shares its
    pixels with the other targets' masks, :math:`\frac{1}{K-1} \sum_{j \ne k} \mathrm{mean}(m_k \odot m_j)`;
    (B, K), zeros when K = 1. One pass: :math:`m_k \odot (\sum_j m_j - m_k)`. Added to Eq. (9) with
    weight ``exclusion`` by GFI's ``joint="separate"``: it assumes the targets are different objects,
    which do not share pixels (two names of one object do)."""
    b, k = m.shape[:2]
    if k < 2:
        return m.new_zeros(b, k)
    return (m * (m.sum(1, keepdim=True) - m)).mean((-2, -1)) / (k - 1)


def total_variation(m: Tensor, beta: float = 1.0, *, per_side: bool = False) -> Tensor:
    r"""Anisotropic total variation of (..., H, W) masks, a tensor over the leading dims:

    :math:`TV_\beta(m) = \sum_{u,v} |m_{u+1,v} - m_{u,v}|^\beta + |m_{u,v+1} - m_{u,v}|^\beta`.

    * Meaningful Perturbation (Fong & Vedaldi 2017, Eq. 4): ``beta = 3`` on the mask's parameters.
    * GFI's ``tv1``/``tv2`` terms (beyond the paper): ``beta = 1`` and ``per_side=True``, which divides
      by :math:`\sqrt{HW}`: a mask that is 1 on a square of side s (as a fraction of a square
      image's side) and 0 elsewhere then has TV = 4 s, its perimeter, at any resolution.
    """
    dy = (m[..., 1:, :] - m[..., :-1, :]).abs()
    dx = (m[..., :, 1:] - m[..., :, :-1]).abs()
    if beta != 1:
        dy, dx = dy.pow(beta), dx.pow(beta)
    tv = dy.sum((-2, -1)) + dx.sum((-2, -1))
    if per_side:
        h, w = m.shape[-2:]
        tv = tv / float(h * w) ** 0.5
    return tv
