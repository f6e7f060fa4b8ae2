"""A spy for the prefetch tests: which thread reads each image."""

from __future__ import annotations

import threading


def reader_threads(monkeypatch, module, name: str = "load_image") -> list[str]:
    """Wrap ``module.name`` so that every call records the name of the thread it runs in; returns
    the list the calls append to (clear it between runs)."""
    threads: list[str] = []
    real = getattr(module, name)

    def spy(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return threads
