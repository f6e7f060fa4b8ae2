"""The batch pipeline that ``gfi explain`` (:mod:`gfi.folder`) and ``gfi eval``
(:mod:`gfi.evaluation.loop`) share: the inputs cut into batches (:func:`chunked`), each batch's
images read one batch ahead in a background thread (:func:`gfi.data.prefetch.prefetched`), then
explained in calls of the images with equally many targets (:func:`explain_groups`), each call
handed on as soon as it ends so its images can be written, its steps and cost told to a
:class:`gfi.progress.Tracker`.

An :class:`~gfi.methods.base.Explainer` takes (B, K) targets: every image of one call has the
same number K of classes. ``gfi explain`` (a class list per image) and ``gfi eval`` (every class
present in a VOC image) have batches where K varies, so the images with equally many targets share
one call: GFI's stage 1 still runs once per image, for all of its classes. This module is that
rule, once; it knows nothing of files, the CLI or the evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from torch import Tensor

    from gfi.methods.base import Explainer, Explanation
    from gfi.progress import Tracker

T = TypeVar("T")


def chunked(items: Sequence[T], size: int) -> list[list[T]]:
    """``items`` in consecutive batches of ``size`` (the last one shorter).

    >>> chunked([1, 2, 3, 4, 5], 2)
    [[1, 2], [3, 4], [5]]
    """
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


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


def explain_groups(explainer: Explainer, images: Tensor, targets: Sequence[Sequence[int]],
                   progress: Tracker | None = None) -> Iterator[tuple[list[int], Explanation, float]]:
    """Explain ``images`` (B, C, H, W) for ``targets`` (B lists of classes, of any lengths): one
    ``explainer.explain`` call per group of :func:`group_by_target_count`, yielded as each ends.

    Yields ``(rows, explanation, seconds)``: row ``r`` of ``explanation`` is image ``rows[r]`` of
    ``images``, its maps in the order of ``targets[rows[r]]``; ``seconds`` is the call's time per
    image. ``progress`` hears of each call and its steps. Images with no target are not explained
    (they appear in no group)."""
    for rows in group_by_target_count(targets):
        if progress is not None:
            progress.begin_call(len(rows))
        t0 = time.perf_counter()
        if progress is not None:
            with progress.hooked(explainer):
                e = explainer.explain(images[rows], [list(targets[j]) for j in rows])
            progress.end_call()
        else:
            e = explainer.explain(images[rows], [list(targets[j]) for j in rows])
        yield rows, e, (time.perf_counter() - t0) / len(rows)


def explain_grouped(explainer: Explainer, images: Tensor,
                    targets: Sequence[Sequence[int]]) -> list[tuple[list[int], Explanation]]:
    """:func:`explain_groups` as a list of ``(rows, explanation)``."""
    return [(rows, e) for rows, e, _ in explain_groups(explainer, images, targets)]
