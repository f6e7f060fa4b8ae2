"""``gfi eval`` on ../shared/data with the real EfficientNet-Lite0 and cheap methods (few images),
and torchrun sharding with 2 CPU processes against one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gfi.cli import main
from tests.conftest import REPO, need_shared

VOLATILE = ("seconds", "metric_seconds", "cached")


def records(out: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(x).items() if k not in VOLATILE}
            for x in (out / "records.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_torchrun_two_processes_match_one(tmp_path):
    data = need_shared("imagenet-val-dev")
    common = ["eval", "localization", "--data", str(data), "--method", "gradcam", "--limit", "4",
              "--batch-size", "2", "--quiet", "--threads", "1"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*common, "--out", str(one)]) == 0
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK"):
        env.pop(k, None)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "gfi", *common, "--out", str(two)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not list(two.glob("records.part*.jsonl"))  # merged by rank 0
    assert records(two) == records(one)
    s1, s2 = (json.loads((d / "summary.json").read_text()) for d in (one, two))
    for k in ("error", "alpha", "tune_error", "n_images", "error_by_alpha"):
        assert s1[k] == s2[k]


@pytest.mark.slow
def test_imagenet_metrics_share_maps(tmp_path):
    data = need_shared("imagenet-val-dev")
    common = ["--data", str(data), "--method", "gradcam", "--limit", "4", "--quiet", "--threads", "1"]
    loc = tmp_path / "loc"
    assert main(["eval", "localization", *common, "--out", str(loc)]) == 0
    maps = ["--maps", str(loc / "maps")]
    for exp, extra in (("pointing", ["--protocol", "torchray"]), ("deletion", ["--steps", "5"]),
                       ("adversarial", ["--epsilon", "0.01"]), ("sanity", ["--levels", "1"])):
        assert main(["eval", exp, *common, *maps, *extra, "--out", str(tmp_path / exp)]) == 0
    s = {e: json.loads((tmp_path / e / "summary.json").read_text())
         for e in ("pointing", "deletion", "adversarial", "sanity")}
    s["localization"] = json.loads((loc / "summary.json").read_text())
    assert s["localization"]["n_images"] == 4 and 0 <= s["localization"]["error"] <= 1
    assert s["pointing"]["n_maps_cached"] == 4 and s["pointing"]["seconds_per_image"] > 0
    assert 0 <= s["deletion"]["deletion_auc"] <= 1 and 0 <= s["deletion"]["insertion_auc"] <= 1
    assert s["adversarial"]["epsilon"] == 0.01
    assert s["sanity"]["levels"][0]["layer"] == "classifier"
    assert len(list((loc / "maps").glob("*.npy"))) == 4  # nobody recomputed or added maps


@pytest.mark.slow
def test_sod_stage1(tmp_path):
    data = need_shared("sod-dev")
    out = tmp_path / "sod"
    assert main(["eval", "saliency", "--data", str(data), "--limit", "2", "--set", "iters1=2", "--quiet",
                 "--threads", "1", "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["method"] == "gfi-stage1" and s["n_images"] == 2 and s["method_settings"]["config"]["iters1"] == 2
    for k in ("f_beta", "precision", "recall", "mae", "f_beta_set", "f_beta_max"):
        assert 0 <= s[k] <= 1


@pytest.mark.slow
def test_voc_head_then_multilabel_pointing(tmp_path):
    data = need_shared("voc07-sample")
    head = tmp_path / "head"
    assert main(["eval", "voc-head", "--data", str(data), "--split", "test", "--epochs", "2", "--limit", "6",
                 "--threads", "1", "--out", str(head)]) == 0
    hs = json.loads((head / "summary.json").read_text())
    assert hs["num_classes"] == 20 and hs["layer"] == "classifier" and len(hs["loss_by_epoch"]) == 2
    out = tmp_path / "pt"
    assert main(["eval", "pointing", "--data", str(data), "--method", "gradcam", "--weights",
                 str(head / "voc_head.pt"), "--multilabel", "--limit", "3", "--quiet", "--threads", "1",
                 "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["n_images"] == 3 and s["model_info"]["head"]["num_classes"] == 20
    first = json.loads((out / "records.jsonl").read_text().splitlines()[0])
    assert first["targets"] == [11, 14]  # 000001: dog and person
