"""The loop of ``gfi eval``: typed settings into the experiments, the resume rule on
``options.json``, maps shared between metrics, several models, selection, the headline."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

import numpy as np
import pytest

from gfi.evaluation.experiment import EvalError, EvalRun, Experiment
from gfi.evaluation.loop import method_config, run_experiment, select
from gfi.evaluation.registry import EXPERIMENTS
from gfi.methods.base import RunOptions
from gfi.settings import Settings, setting
from tests.evaluation.helpers import evaluate, lines
from tests.spies import reader_threads


@dataclass(frozen=True)
class ProbeOptions(Settings):
    factor: float = setting(1.0, "a number the probe records")


class Probe(Experiment):
    """Records what every hook receives."""

    name = "probe"
    datasets = ("imagenet",)
    options_class = ProbeOptions
    headline_keys = ("n",)

    def __init__(self) -> None:
        self.seen: list[tuple[str, type, type]] = []

    def _saw(self, hook, run, opts) -> None:
        self.seen.append((hook, type(run), type(opts)))

    def check(self, run, opts, dataset) -> None:
        self._saw("check", run, opts)
        super().check(run, opts, dataset)

    def targets(self, sample, opts):
        self.seen.append(("targets", EvalRun, type(opts)))  # targets(sample, opts) gets no run
        return super().targets(sample, opts)

    def score(self, ctx, sample, image, maps, j, extra) -> dict:
        self._saw("score", ctx.run, ctx.opts)
        return {"m": float(next(iter(maps.values())).mean()) * ctx.opts.factor}

    def summarize(self, records, run, opts) -> dict:
        self._saw("summarize", run, opts)
        return {"n": len(records)}


def test_experiments_receive_typed_settings(tmp_path, tiny, dataset_dir):
    probe = Probe()
    run = EvalRun(data=dataset_dir("imagenet"), out=tmp_path / "p", method="center", quiet=True)
    s = run_experiment(probe, run, probe.options(factor="2"), classifier=tiny)
    assert s["n"] == 3 and s["options"]["factor"] == 2.0
    assert {h for h, _, _ in probe.seen} == {"check", "targets", "score", "summarize"}
    for hook, run_type, opts_type in probe.seen:
        assert run_type is EvalRun and opts_type is ProbeOptions, hook
        assert not issubclass(run_type, argparse.Namespace) and not issubclass(opts_type, argparse.Namespace)
    assert probe.headline(s).startswith("probe center on efficientnet_lite0: n=3 n_images=3 failed=3")
    with pytest.raises(TypeError, match="ProbeOptions"):
        run_experiment(probe, run, EXPERIMENTS["pointing"].options(), classifier=tiny)


def test_every_experiment_has_typed_options():
    for exp in EXPERIMENTS.values():
        assert issubclass(exp.options_class, Settings) and exp.headline_keys
        exp.options()  # the defaults are valid
    assert EXPERIMENTS["localization"].options_class.names() == ("alphas", "alpha", "tune_split", "iou")


def test_overrides_go_to_the_settings_or_the_run_options():
    config, options = method_config(EvalRun(data=".", out=".", method="gfi", preset="paper",
                                            overrides={"iters2": "7", "early_stop": "true", "chunk": "2"}))
    assert config.iters2 == 7 and config.gamma == 10 and config.early_stop is True and options == RunOptions(chunk=2)
    config, _ = method_config(EvalRun(data=".", out=".", method="gfi-stage1"))
    assert config.stage2 is False  # what the method runs, known before any model is loaded
    _, options = method_config(EvalRun(data=".", out=".", method="center", run_options={"autocast": "bf16"}))
    assert options.autocast == "bf16"
    with pytest.raises(ValueError, match="no setting 'nope'"):
        method_config(EvalRun(data=".", out=".", method="gfi", overrides={"nope": "1"}))
    with pytest.raises(EvalError, match="--batch-size must be >= 1"):
        EvalRun(data=".", out=".", batch_size=0)


def test_other_options_are_refused_summary_options_are_not(tmp_path, tiny, dataset_dir):
    data = dataset_dir("imagenet")
    out = tmp_path / "loc"
    base = {"data": data, "out": out, "limit": 2}
    assert evaluate("localization", tiny, **base, method="center")
    before = (out / "records.jsonl").read_text()
    with pytest.raises(ValueError, match=r"other options \(differs in: [^)]*method"):
        evaluate("localization", tiny, **base, method="gradcam")
    # a fixed alpha only changes the summary: allowed, nothing recomputed
    assert evaluate("localization", tiny, **base, method="center", alpha="1.5")
    s = json.loads((out / "summary.json").read_text())
    assert s["alpha"] == 1.5 and s["n_report"] == 2 and s["alpha_chosen_on"] == "fixed"
    assert (out / "records.jsonl").read_text() == before
    assert evaluate("localization", tiny, **base, method="gradcam", overwrite=True)


def test_a_run_of_an_earlier_version_resumes(tmp_path, tiny, dataset_dir):
    """``options.json`` is read as the map store reads settings: a GFI config that still holds the
    run options (and a baseline's ``options``) is the same run."""
    data = dataset_dir("imagenet")
    out = tmp_path / "old"
    settings = {"data": data, "out": out, "method": "center", "limit": 2}
    assert evaluate("pointing", tiny, **settings)
    opt_file = out / "options.json"
    old = json.loads(opt_file.read_text())
    old.pop("config")
    old["options"] = {}  # a baseline before every method recorded its settings: the options given
    from gfi.persist import Manifest

    Manifest(out).write_text(opt_file, json.dumps(old))  # as gfi wrote it then (listed in the manifest)
    assert evaluate("pointing", tiny, **settings)
    assert json.loads(opt_file.read_text()) == old  # resumed, not rewritten


def test_cached_maps_are_shared_between_metrics(tmp_path, tiny, dataset_dir):
    data = dataset_dir("imagenet")
    a, b = tmp_path / "loc", tmp_path / "pt"
    assert evaluate("localization", tiny, data=data, method="gradcam", out=a)
    assert evaluate("pointing", tiny, data=data, method="gradcam", maps=a / "maps", out=b)
    s = json.loads((b / "summary.json").read_text())
    assert s["n_maps_cached"] == s["n_images"] == 3
    assert not (b / "maps").exists()
    with pytest.raises(ValueError, match="made with other settings"):
        evaluate("pointing", tiny, data=data, method="center", maps=a / "maps", out=tmp_path / "c")


def test_scores_a_folder_of_maps_written_elsewhere(tmp_path, tiny, dataset_dir):
    """A folder like `gfi explain --save-npy` writes (no _maps.json): its maps are scored as they are."""
    data = dataset_dir("imagenet")
    maps = tmp_path / "explain-out"
    maps.mkdir()
    inside = np.zeros((24, 32), np.float32)
    inside[5, 10] = 1  # img_a's box of class 1 is x 4..15, y 2..11
    outside = np.zeros((24, 32), np.float32)
    outside[20, 30] = 1
    np.save(maps / "img_a_1.npy", inside)
    np.save(maps / "img_b_3.npy", outside)  # img_b's boxes: x 0..9 y 0..9 and x 20..31 y 10..23 -> inside
    np.save(maps / "img_e_0.npy", outside)  # img_e's box scaled to x 4..15.5, y 2..11.5 -> outside
    out = tmp_path / "pt"
    assert evaluate("pointing", tiny, data=data, method="center", maps=maps, out=out)
    recs = {r["key"]: r for r in lines(out) if "error" not in r}
    assert {k: r["points"][0]["hit"] for k, r in recs.items()} == {"img_a": 1, "img_b": 1, "img_e": 0}
    assert all(r["cached"] for r in recs.values())
    assert not (maps / "_maps.json").exists()


def test_several_models_write_one_folder_each(tmp_path, tiny, dataset_dir):
    data = dataset_dir("imagenet")
    out = tmp_path / "m"
    heads = []
    exp = EXPERIMENTS["pointing"]
    from gfi.evaluation.loop import run_models

    run = EvalRun(data=data, out=out, method="center", model="efficientnet_lite0,resnet18", range="0:2", quiet=True)
    assert run_models(exp, run, exp.options(), classifier=tiny, report=heads.append)
    combined = json.loads((out / "summary.json").read_text())
    assert set(combined["models"]) == {"efficientnet_lite0", "resnet18"}
    for m in ("efficientnet_lite0", "resnet18"):
        s = json.loads((out / m / "summary.json").read_text())
        assert s["model"] == m and s["n_images"] == 2
        assert combined["models"][m]["accuracy"] == s["accuracy"] and "seconds_per_image" in combined["models"][m]
    assert [h.split(":")[0] for h in heads] == ["pointing center on efficientnet_lite0", "pointing center on resnet18"]
    assert "accuracy=" in heads[0] and "n_images=2 failed=0" in heads[0]


def test_select_range_and_limit():
    assert select(10, None, 0) == list(range(10))
    assert select(10, "6:", 0) == [6, 7, 8, 9] and select(10, "2:8", 3) == [2, 3, 4]
    with pytest.raises(EvalError, match="--range"):
        select(10, "a:b")


def test_cli_errors(tmp_path, capsys):
    from gfi.cli import main

    assert main(["eval", "pointing", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_prefetch_reads_the_next_batch_in_a_thread_and_changes_no_result(tmp_path, tiny, dataset_dir, monkeypatch):
    """With prefetch (the default) images are decoded in the background thread, one batch ahead;
    the records are those of a run without it, unreadable files included."""
    import threading

    import gfi.evaluation.loop as loop

    data = dataset_dir("imagenet")
    broken = sorted((data / "val").glob("*.JPEG"))[1]
    broken.write_text("not an image")
    readers = reader_threads(monkeypatch, loop)
    out = {}
    for prefetch in (True, False):
        readers.clear()
        evaluate("pointing", tiny, data=data, out=tmp_path / f"p{prefetch}", method="gradcam", batch_size=1,
                 prefetch=prefetch)
        out[prefetch] = [{k: v for k, v in r.items() if k not in ("seconds", "metric_seconds", "cached")}
                         for r in lines(tmp_path / f"p{prefetch}")]
        threads = set(readers)
        assert (threads == {"gfi-prefetch_0"}) if prefetch else (threads == {threading.current_thread().name})
    assert out[True] == out[False]
    assert sum("not an image" in r.get("error", "") for r in out[True]) == 1
