"""``gfi eval``: the paper's experiments (and two later checks) over datasets, and their metrics.

* :mod:`gfi.evaluation.experiment`: the plug-in API (:class:`EvalRun`, :class:`Experiment`);
* :mod:`gfi.evaluation.registry`: :data:`EXPERIMENTS` by name, and :data:`VOC_HEAD`;
* :mod:`gfi.evaluation.loop`: :func:`run_models` / :func:`run_experiment`, the batch loop, summaries;
* :mod:`gfi.evaluation.records`, :mod:`~gfi.evaluation.sharding`, :mod:`~gfi.evaluation.mapstore`:
  per-image lines, ``torchrun`` shards, cached maps;
* :mod:`gfi.evaluation.metrics`: the pure metric functions (no model, no files).

The names below are imported on first use, so ``import gfi.evaluation.metrics`` stays light.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "EXPERIMENTS": "gfi.evaluation.registry",
    "VOC_HEAD": "gfi.evaluation.registry",
    "EvalError": "gfi.evaluation.experiment",
    "EvalRun": "gfi.evaluation.experiment",
    "Experiment": "gfi.evaluation.experiment",
    "run_experiment": "gfi.evaluation.loop",
    "run_models": "gfi.evaluation.loop",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'gfi.evaluation' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)
