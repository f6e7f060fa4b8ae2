"""``gfi eval`` on synthetic fixtures with tiny models: records, failures, the map cache, resume,
option checks, and every experiment end to end."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from gfi.cli import build_parser, main
from gfi.evaluation import command
from gfi.evaluation.deletion import curves

VOLATILE = ("seconds", "metric_seconds", "cached")


def run(argv, classifier):
    args = build_parser().parse_args(["eval", *argv, "--quiet"])
    return command.run(args, classifier=classifier)


def lines(out):
    return [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]


def stable(recs):
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in recs]


def test_localization_records_failures_and_maps(tmp_path, tiny, dataset_dir):
    data = dataset_dir("imagenet")
    out = tmp_path / "loc"
    assert run(["localization", "--data", str(data), "--method", "gradcam", "--out", str(out),
                "--batch-size", "2", "--tune-split", "0.5"], tiny) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["n_images"] == 3 and s["n_failed"] == 3
    errors = " ".join(f["error"] for f in s["failures"])
    assert "img_c.xml: malformed XML" in errors and "img_d.xml: annotation file is missing" in errors
    assert "n09999999" in errors
    recs = [r for r in lines(out) if "error" not in r]
    assert [r["key"] for r in recs] == ["img_a", "img_b", "img_e"]
    assert len(recs[0]["hits"]) == 21 and recs[0]["targets"] == [1]
    # error at the chosen alpha from the report part's lines, alpha minimising the tune part's error
    tune, report = recs[:2], recs[2:]  # round(0.5 * 3) = 2 tuning images
    assert s["n_tune"] == 2 and s["n_report"] == 1
    tune_err = [1 - sum(r["hits"][k] for r in tune) / 2 for k in range(21)]
    a = s["alphas"].index(s["alpha"])
    assert a == tune_err.index(min(tune_err))
    assert s["error"] == 1 - report[0]["hits"][a]
    assert (out / "localization_error.png").stat().st_size > 1000
    m = np.load(out / "maps" / "img_a_1.npy")
    assert m.dtype == np.float32 and m.shape == (24, 32) and m.min() >= 0 and m.max() <= 1
    assert s["options"]["method"] == "gradcam" and s["seconds_per_image"] is not None


def test_resume_after_truncation_gives_the_same_summary(tmp_path, tiny, dataset_dir):
    data = dataset_dir("imagenet")
    out = tmp_path / "pt"
    argv = ["pointing", "--data", str(data), "--method", "gradcam", "--out", str(out), "--batch-size", "2"]
    assert run(argv, tiny) == 0
    first = json.loads((out / "summary.json").read_text())
    full = lines(out)
    kept_map = out / "maps" / "img_a_1.npy"
    mtime = kept_map.stat().st_mtime_ns
    text = (out / "records.jsonl").read_text().splitlines(keepends=True)
    (out / "records.jsonl").write_text(text[0] + text[1][:25])  # one line and a cut-off one
    (out / "summary.json").unlink()
    os.remove(out / "maps" / "img_b_3.npy")
    assert run(argv, tiny) == 0
    second = json.loads((out / "summary.json").read_text())
    assert stable(lines(out)) == stable(full)
    for k in ("accuracy", "accuracy_per_image", "n_images", "n_failed", "paper", "torchray"):
        assert second[k] == first[k]
    assert kept_map.stat().st_mtime_ns == mtime  # image 0 was not redone
    assert (out / "maps" / "img_b_3.npy").is_file()


def test_other_options_are_refused_summary_options_are_not(tmp_path, tiny, dataset_dir, capsys):
    data = dataset_dir("imagenet")
    out = tmp_path / "loc"
    base = ["localization", "--data", str(data), "--out", str(out), "--limit", "2"]
    assert run([*base, "--method", "center"], tiny) == 0
    before = (out / "records.jsonl").read_text()
    with pytest.raises(ValueError, match=r"other options \(method: 'center' before, 'gradcam' now"):
        run([*base, "--method", "gradcam"], tiny)
    # a fixed alpha only changes the summary: allowed, nothing recomputed
    assert run([*base, "--method", "center", "--alpha", "1.5"], tiny) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["alpha"] == 1.5 and s["n_report"] == 2 and s["alpha_chosen_on"] == "fixed"
    assert (out / "records.jsonl").read_text() == before
    assert run([*base, "--method", "gradcam", "--overwrite"], tiny) == 0


def test_cached_maps_are_shared_between_metrics(tmp_path, tiny, dataset_dir):
    data = dataset_dir("imagenet")
    a, b = tmp_path / "loc", tmp_path / "pt"
    assert run(["localization", "--data", str(data), "--method", "gradcam", "--out", str(a)], tiny) == 0
    assert run(["pointing", "--data", str(data), "--method", "gradcam", "--maps", str(a / "maps"),
                "--out", str(b)], tiny) == 0
    s = json.loads((b / "summary.json").read_text())
    assert s["n_maps_cached"] == s["n_images"] == 3
    assert not (b / "maps").exists()
    with pytest.raises(ValueError, match="made with other settings"):
        run(["pointing", "--data", str(data), "--method", "center", "--maps", str(a / "maps"),
             "--out", str(tmp_path / "c")], tiny)


def test_pointing_on_voc_multilabel(tmp_path, tiny20, tiny, dataset_dir):
    data = dataset_dir("voc")
    out = tmp_path / "voc"
    assert run(["pointing", "--data", str(data), "--method", "gradcam", "--out", str(out), "--protocol",
                "torchray"], tiny20) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["n_images"] == 2 and s["n_failed"] == 2  # 000002 all difficult, 000004 no annotation
    recs = [r for r in lines(out) if "error" not in r]
    assert [p["class"] for p in recs[1]["points"]] == [1, 6]  # bicycle and car: every class present
    pts = [p for r in recs for p in r["points"]]
    assert s["torchray"]["accuracy_per_image"] == sum(p["hit_tol"] for p in pts) / len(pts)
    assert s["accuracy"] == s["torchray"]["accuracy"]
    with pytest.raises(ValueError, match="voc-head"):
        run(["pointing", "--data", str(data), "--method", "gradcam", "--out", str(tmp_path / "x")], tiny)


def test_saliency_deletion_adversarial_sanity(tmp_path, tiny, dataset_dir):
    sod = dataset_dir("sod")
    out = tmp_path / "sod"
    assert run(["saliency", "--data", str(sod), "--method", "gradcam", "--out", str(out)], tiny) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["n_images"] == 2 and s["n_failed"] == 2  # c: no mask; d: mask of another size
    assert "d.png: mask is 10x10" in json.dumps(s["failures"])
    recs = [r for r in lines(out) if "error" not in r]
    assert s["f_beta"] == pytest.approx(sum(r["f_beta"] for r in recs) / 2)
    assert s["precision_set"] == pytest.approx(sum(r["tp"] for r in recs) / sum(r["pred"] for r in recs))
    assert (out / "pr_curve.png").is_file() and len(json.loads((out / "pr_curve.json").read_text())["recall"]) == 101

    data = dataset_dir("imagenet")
    out = tmp_path / "del"
    assert run(["deletion", "--data", str(data), "--method", "gradcam", "--steps", "4", "--out", str(out)], tiny) == 0
    s = json.loads((out / "summary.json").read_text())
    rec = lines(out)[0]
    assert len(rec["deletion_curve"]) == 5 and s["n_images"] == 3
    assert s["deletion_auc"] == pytest.approx(sum(r["deletion_auc"] for r in lines(out) if "error" not in r) / 3)

    out = tmp_path / "adv"
    assert run(["adversarial", "--data", str(data), "--method", "gradcam", "--epsilon", "0.5", "--out", str(out)],
               tiny) == 0
    s = json.loads((out / "summary.json").read_text())
    assert 0 <= s["accuracy"] <= 1 and 0 <= s["prediction_changed"] <= 1 and s["epsilon"] == 0.5

    out = tmp_path / "san"
    assert run(["sanity", "--data", str(data), "--method", "gradcam", "--levels", "2", "--out", str(out)], tiny) == 0
    s = json.loads((out / "summary.json").read_text())
    assert [lv["layer"] for lv in s["levels"]] == ["fc", "conv"]


def test_deletion_curve_ends(tiny):
    x = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(0))
    sal = torch.arange(16.0).view(4, 4)
    d, i = curves(tiny, x, sal, 2, steps=4)
    with torch.no_grad():
        p = tiny.scores(tiny(torch.stack([x, torch.zeros_like(x)])))[:, 2]
    assert d[0] == pytest.approx(float(p[0]), abs=1e-6) and d[-1] == pytest.approx(float(p[1]), abs=1e-6)
    assert i[-1] == pytest.approx(float(p[0]), abs=1e-6)


def test_fgsm_raises_the_loss(tiny):
    from gfi.evaluation.adversarial import fgsm

    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    y = torch.tensor([0, 3])
    xa = fgsm(tiny, x, y, 0.05)
    assert (xa - x).abs().max() == pytest.approx(0.05, abs=1e-6)
    with torch.no_grad():
        before = tiny.scores(tiny(x)).gather(1, y[:, None])
        after = tiny.scores(tiny(xa)).gather(1, y[:, None])
    assert (after < before).all()


def test_cli_errors(tmp_path, capsys):
    assert main(["eval", "pointing", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_several_models_write_one_folder_each(tmp_path, tiny, dataset_dir):
    data = dataset_dir("imagenet")
    out = tmp_path / "m"
    assert run(["pointing", "--data", str(data), "--method", "center", "--model", "efficientnet_lite0,resnet18",
                "--range", "0:2", "--out", str(out)], tiny) == 0
    combined = json.loads((out / "summary.json").read_text())
    assert set(combined["models"]) == {"efficientnet_lite0", "resnet18"}
    for m in ("efficientnet_lite0", "resnet18"):
        s = json.loads((out / m / "summary.json").read_text())
        assert s["model"] == m and s["n_images"] == 2
        assert combined["models"][m]["accuracy"] == s["accuracy"] and "seconds_per_image" in combined["models"][m]


def test_shards_without_torch_distributed_merge_on_a_plain_rerun(tmp_path, tiny, dataset_dir, monkeypatch):
    data = dataset_dir("imagenet")
    one, sharded = tmp_path / "one", tmp_path / "sharded"
    argv = ["localization", "--data", str(data), "--method", "gradcam", "--batch-size", "2"]
    assert run([*argv, "--out", str(one)], tiny) == 0
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in ("1", "0"):
        monkeypatch.setenv("RANK", rank)
        assert run([*argv, "--out", str(sharded)], tiny) == 0
    parts = sorted(p.name for p in sharded.glob("records.part*.jsonl"))
    assert parts == ["records.part0.jsonl", "records.part1.jsonl"] and not (sharded / "summary.json").exists()
    # rank r took the images i with i % 2 == r, whatever the other rank had done
    for r in (0, 1):
        got = [json.loads(x)["index"] for x in (sharded / f"records.part{r}.jsonl").read_text().splitlines()]
        assert got == [r, r + 2, r + 4]
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("RANK")
    assert run([*argv, "--out", str(sharded)], tiny) == 0  # nothing left to do: merge and summarise
    assert not list(sharded.glob("records.part*.jsonl"))
    assert stable(lines(sharded)) == stable(lines(one))
    s1, s2 = (json.loads((d / "summary.json").read_text()) for d in (one, sharded))
    assert (s1["error"], s1["alpha"], s1["n_failed"]) == (s2["error"], s2["alpha"], s2["n_failed"])


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
    assert run(["pointing", "--data", str(data), "--method", "center", "--maps", str(maps), "--out", str(out)],
               tiny) == 0
    recs = {r["key"]: r for r in lines(out) if "error" not in r}
    assert {k: r["points"][0]["hit"] for k, r in recs.items()} == {"img_a": 1, "img_b": 1, "img_e": 0}
    assert all(r["cached"] for r in recs.values())
    assert not (maps / "_maps.json").exists()


def test_map_store_accepts_settings_added_later_at_their_default(tmp_path):
    from dataclasses import asdict

    from gfi.evaluation.mapstore import META, MapStore
    from gfi.methods.gfi import GFIConfig

    now = {"method": "gfi", "config": asdict(GFIConfig())}
    old = {"method": "gfi", "config": {k: v for k, v in now["config"].items() if k != "early_stop"}}
    (tmp_path / META).write_text(json.dumps(old))
    MapStore(tmp_path, now)  # a field added since, at its default: the same maps
    changed = {"method": "gfi", "config": {**now["config"], "early_stop": True}}
    with pytest.raises(ValueError, match="made with other settings"):
        MapStore(tmp_path, changed)


def test_map_store_ignores_stage2_settings_for_stage1_maps(tmp_path):
    from dataclasses import asdict

    from gfi.evaluation.mapstore import META, MapStore
    from gfi.methods.gfi import GFIConfig

    made = asdict(GFIConfig(lr2=0.01, area2=0.5))
    for method, reused in (("gfi-stage1", True), ("gfi", False)):
        folder = tmp_path / method
        folder.mkdir()
        (folder / META).write_text(json.dumps({"method": method, "config": made}))
        now = {"method": method, "config": asdict(GFIConfig())}  # stage 2's lr2 and area2 changed since
        if reused:
            MapStore(folder, now)
        else:
            with pytest.raises(ValueError, match="lr2"):
                MapStore(folder, now)
    # a gfi run with stage 2 off makes stage-1 maps too
    folder = tmp_path / "gfi-off"
    folder.mkdir()
    (folder / META).write_text(json.dumps({"method": "gfi", "config": {**made, "stage2": False}}))
    MapStore(folder, {"method": "gfi", "config": asdict(GFIConfig(stage2=False))})
    # a stage-1 setting still counts
    with pytest.raises(ValueError, match="made with other settings"):
        MapStore(tmp_path / "gfi-stage1", {"method": "gfi-stage1", "config": asdict(GFIConfig(area1=0.0))})


def test_map_store_reads_a_field_added_since_as_the_old_behaviour(tmp_path):
    """Maps cached before stage 2 had its own blur were made with stage 1's: they are not the
    current default's maps (stage 2 blurs with sigma 20 now), and they are those of a run that sets
    stage 2's blur to stage 1's, explicitly or with None."""
    from dataclasses import asdict

    from gfi.evaluation.mapstore import META, MapStore
    from gfi.methods.gfi import GFIConfig

    before = {k: v for k, v in asdict(GFIConfig()).items() if k not in GFIConfig.ADDED}
    (tmp_path / META).write_text(json.dumps({"method": "gfi", "config": before}))
    with pytest.raises(ValueError, match="blur_kernel2"):
        MapStore(tmp_path, {"method": "gfi", "config": asdict(GFIConfig())})
    for same in (GFIConfig(blur_kernel2=11, blur_sigma2=5.0), GFIConfig(blur_kernel2=None, blur_sigma2=None)):
        MapStore(tmp_path, {"method": "gfi", "config": asdict(same)})
