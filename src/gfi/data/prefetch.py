"""Reading the next batch while the current one is explained (one background thread).

JPEG/PNG decoding and resizing release the GIL, so a thread overlaps them with the model's passes;
``gfi explain`` and ``gfi eval`` read their images through :func:`prefetched` (``--no-prefetch``
turns it off).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

THREAD_NAME = "gfi-prefetch"


def prefetched(read: Callable[[T], R], items: Sequence[T], enabled: bool = True) -> Iterator[R]:
    """``read(item)`` for each item, in order. With ``enabled`` item k+1 is read in a background
    thread while the caller works on item k's result; an error of ``read`` is raised in the
    caller's thread when it reaches that item, and a read still running when the caller stops is
    waited for (no thread outlives the loop). ``read`` must not touch state the caller changes."""
    if not enabled:
        for item in items:
            yield read(item)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_NAME) as pool:
        ahead = pool.submit(read, items[0]) if items else None
        for k in range(len(items)):
            current = ahead.result()
            ahead = pool.submit(read, items[k + 1]) if k + 1 < len(items) else None
            yield current
