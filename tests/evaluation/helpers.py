"""Running an experiment the way ``gfi eval`` does, from typed settings (no command line)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gfi.evaluation.experiment import EvalRun
from gfi.evaluation.loop import run_models
from gfi.evaluation.registry import EXPERIMENTS

VOLATILE = ("seconds", "metric_seconds", "cached")


def evaluate(name: str, classifier, info: dict | None = None, **settings: Any) -> dict[str, dict]:
    """``gfi eval NAME`` with ``settings``: fields of :class:`EvalRun` and of the experiment's
    options (strings are parsed by the field's type, as the command line gives them); the
    summaries by model."""
    exp = EXPERIMENTS[name]
    own = set(exp.options_class.names())
    opts = exp.options({k: v for k, v in settings.items() if k in own})
    run = EvalRun(**{"quiet": True, **{k: v for k, v in settings.items() if k not in own}})
    return run_models(exp, run, opts, classifier=classifier, info=info)


def lines(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]


def stable(recs: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in recs]


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())
