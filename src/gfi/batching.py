"""Explaining a batch whose images have different numbers of targets.

An :class:`~gfi.methods.base.Explainer` takes (B, K) targets: every image of one call has the
same number K of classes. ``gfi explain`` (a class list per image) and ``gfi eval`` (every class
present in a VOC image) have batches where K varies, so the images with equally many targets share
one call: GFI's stage 1 still runs once per image, for all of its classes. This module is that
rule, once; it knows nothing of files, the CLI or the evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

    from gfi.methods.base import Explainer, Explanation


def group_by_target_count(targets: Sequence[Sequence[int]]) -> list[list[int]]:
    """Indices into ``targets`` grouped by how many targets each has, groups in the order their
    first member appears, indices ascending within a group; entries with no target are left out.

    >>> group_by_target_count([[1], [2, 3], [], [4]])
    [[0, 3], [1]]
    """
    groups: dict[int, list[int]] = {}
    for j, t in enumerate(targets):
        if len(t):
            groups.setdefault(len(t), []).append(j)
    return list(groups.values())


def explain_grouped(explainer: Explainer, images: Tensor,
                    targets: Sequence[Sequence[int]]) -> list[tuple[list[int], Explanation]]:
    """Explain ``images`` (B, C, H, W) for ``targets`` (B lists of classes, of any lengths): one
    ``explainer.explain`` call per group of :func:`group_by_target_count`.

    Returns ``(rows, explanation)`` per call: row ``r`` of ``explanation`` is image ``rows[r]`` of
    ``images``, its maps in the order of ``targets[rows[r]]``. Images with no target are not
    explained (they appear in no group)."""
    out = []
    for rows in group_by_target_count(targets):
        out.append((rows, explainer.explain(images[rows], [list(targets[j]) for j in rows])))
    return out
