"""Plots of ``gfi eval`` summaries (matplotlib figures on their own Agg canvas, PNG; the global
backend is left alone)."""

from __future__ import annotations

from pathlib import Path

from gfi.persist import atomic_write


def line_plot(path: Path, xs, curves: dict[str, list[float]], *, xlabel: str, ylabel: str, title: str,
              mark_x: float | None = None) -> str:
    from gfi.viz.overlay import new_figure

    fig = new_figure(figsize=(5, 3.6), dpi=120)
    ax = fig.subplots()
    for label, ys in curves.items():
        ax.plot(xs, ys, marker="o", markersize=3, label=label)
    if mark_x is not None:
        ax.axvline(mark_x, color="gray", linestyle="--", linewidth=1, label=f"chosen {mark_x:g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=path.suffix.lstrip(".") or "png"))
    return str(path)


def mean(xs) -> float | None:
    xs = [x for x in xs if x is not None and x == x]  # drop None and NaN
    return sum(xs) / len(xs) if xs else None
