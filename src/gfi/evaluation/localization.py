"""Weakly supervised localization (Sec. 4.2, Table 1, Table 2, Fig. 6).

For the map of the ground-truth class: binarize at ``alpha x mean(map)``, take the tightest box
around every kept pixel, succeed when IoU >= 0.5 with any ground-truth box of that class; error =
1 - success rate. Every image's success is recorded for every alpha of the sweep (0:0.5:10, or
``--alphas``), so alpha is chosen afterwards: on the tuning part (``--tune-split``: a fraction of
the images in sorted order, or a file listing names) with the error reported on the rest, or
fixed with ``--alpha``. Ties between alphas go to the smallest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gfi.evaluation.experiment import EvalError, EvalRun, Experiment
from gfi.evaluation.metrics import PAPER_ALPHAS, localization_hits
from gfi.evaluation.plots import line_plot
from gfi.settings import Settings, setting


def parse_alphas(spec: str | None) -> list[float]:
    """``start:step:stop`` (inclusive) or a comma list; None gives the paper's 0:0.5:10."""
    if not spec:
        return list(PAPER_ALPHAS)
    try:
        if ":" in spec:
            start, step, stop = (float(v) for v in spec.split(":"))
            if step <= 0 or stop < start:
                raise ValueError("need step > 0 and stop >= start")
            n = round((stop - start) / step)
            return [round(start + i * step, 10) for i in range(n + 1)]
        return sorted({float(v) for v in spec.split(",") if v.strip()})
    except ValueError as exc:
        raise EvalError(f"--alphas {spec!r}: {exc}; give start:step:stop (e.g. 0:0.25:10) or a comma list") from exc


def split_tune(records: list[dict], spec: str | None) -> tuple[list[dict], list[dict]]:
    """(tuning, reporting) records: the first ``round(f * n)`` in dataset order for a fraction
    ``f``, or the images named in a file (one name or stem per line) against the rest."""
    recs = sorted(records, key=lambda r: r["index"])
    try:
        frac = float(spec)
    except (TypeError, ValueError):
        frac = None
    if frac is not None:
        if not 0 < frac < 1:
            raise EvalError(f"--tune-split {spec}: a fraction must be in (0, 1)")
        n = round(frac * len(recs))
        return recs[:n], recs[n:]
    path = Path(spec)
    if not path.is_file():
        raise EvalError(f"--tune-split {spec}: neither a fraction in (0, 1) nor a file listing image names")
    names = {ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")}
    tune = [r for r in recs if r["key"] in names or Path(r["image"]).name in names or Path(r["image"]).stem in names]
    tune_ids = {r["key"] for r in tune}
    return tune, [r for r in recs if r["key"] not in tune_ids]


def error_curve(records: list[dict]) -> list[float] | None:
    if not records:
        return None
    n_alpha = len(records[0]["hits"])
    return [1 - sum(r["hits"][a] for r in records) / len(records) for a in range(n_alpha)]


@dataclass(frozen=True)
class LocalizationOptions(Settings):
    """Options of ``gfi eval localization``."""

    alphas: str | None = setting(None, "threshold sweep, start:step:stop or a list (none: 0:0.5:10)")
    alpha: float | None = setting(None, "report at this alpha instead of choosing it on a tuning part")
    tune_split: str | None = setting(
        None, "fraction of the images (dataset order) or a file of names on which alpha is chosen; the error is "
              "reported on the rest (none: 0.5 when alpha is not given)")
    iou: float = setting(0.5, "IoU for a success", low=0, high=1)


class Localization(Experiment):
    name = "localization"
    help = "weakly supervised localization error (Sec. 4.2)"
    datasets = ("imagenet",)
    options_class = LocalizationOptions
    headline_keys = ("error", "alpha")
    outputs = ("localization_error.png",)

    def record_options(self, opts: LocalizationOptions) -> dict:
        return {"alphas": parse_alphas(opts.alphas), "iou": opts.iou}

    def check(self, run: EvalRun, opts: LocalizationOptions, dataset) -> None:
        super().check(run, opts, dataset)
        if opts.alpha is not None and opts.alpha not in parse_alphas(opts.alphas):
            raise EvalError(f"--alpha {opts.alpha} is not in the sweep; add it with --alphas")

    def score(self, ctx, sample, image, maps, j, extra) -> dict:
        c = sample.classes[0]
        hits = localization_hits(maps[c], sample.boxes_of(c), parse_alphas(ctx.opts.alphas), ctx.opts.iou)
        return {"hits": hits.int().tolist()}

    def summarize(self, records, run: EvalRun, opts: LocalizationOptions) -> dict:
        alphas = parse_alphas(opts.alphas)
        split = opts.tune_split if opts.tune_split is not None else (None if opts.alpha is not None else "0.5")
        tune, report = split_tune(records, split) if split is not None else ([], list(records))
        if not report:
            raise EvalError("the reporting part is empty: give more images or a smaller --tune-split")
        tune_err, report_err = error_curve(tune), error_curve(report)
        if opts.alpha is not None:
            a = alphas.index(opts.alpha)
        elif tune_err is None:
            raise EvalError("the tuning part is empty: give more images or a larger --tune-split")
        else:
            a = min(range(len(alphas)), key=lambda i: (tune_err[i], i))
        curves = {f"report ({len(report)})": report_err}
        if tune_err is not None:
            curves[f"tune ({len(tune)})"] = tune_err
        plot = line_plot(run.out / "localization_error.png", alphas, curves,
                         xlabel="alpha (threshold = alpha x mean)", ylabel="localization error",
                         title=f"{run.method} on {run.model}", mark_x=alphas[a])
        err = report_err[a]
        return {"error": err, "error_ci95": 1.96 * (err * (1 - err) / len(report)) ** 0.5, "alpha": alphas[a],
                "alpha_chosen_on": "fixed" if opts.alpha is not None else f"tune split {split}",
                "tune_error": tune_err[a] if tune_err else None,
                "n_tune": len(tune), "n_report": len(report), "alphas": alphas,
                "error_by_alpha": {"report": report_err, "tune": tune_err}, "plot": plot}
