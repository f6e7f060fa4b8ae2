"""Shards: rank r takes the images i with i % WORLD_SIZE == r; without torch.distributed each rank
writes its part and a plain rerun merges them into what one process gives."""

from __future__ import annotations

import json

import pytest
import torch

from gfi.evaluation.experiment import EvalError
from gfi.evaluation.sharding import Shard
from tests.evaluation.helpers import evaluate, lines, stable


def test_rank_outside_the_world_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(EvalError, match="RANK=2"):
        Shard(torch.device("cpu"))


def test_shards_without_torch_distributed_merge_on_a_plain_rerun(tmp_path, tiny, dataset_dir, monkeypatch):
    data = dataset_dir("imagenet")
    one, sharded = tmp_path / "one", tmp_path / "sharded"
    settings = {"data": data, "method": "gradcam", "batch_size": 2}
    assert evaluate("localization", tiny, out=one, **settings)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in ("1", "0"):
        monkeypatch.setenv("RANK", rank)
        assert evaluate("localization", tiny, out=sharded, **settings) == {}  # no summary yet
    parts = sorted(p.name.split(".")[1] for p in sharded.glob("records.part*.jsonl"))  # part<RANK>.<run id>
    assert parts == ["part0", "part1"] and not (sharded / "summary.json").exists()
    # rank r took the images i with i % 2 == r, whatever the other rank had done
    for r in (0, 1):
        (part,) = sharded.glob(f"records.part{r}.*.jsonl")
        got = [json.loads(x)["index"] for x in part.read_text().splitlines()]
        assert got == [r, r + 2, r + 4]
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("RANK")
    assert evaluate("localization", tiny, out=sharded, **settings)  # nothing left to do: merge and summarise
    assert not list(sharded.glob("records.part*.jsonl"))
    assert stable(lines(sharded)) == stable(lines(one))
    s1, s2 = (json.loads((d / "summary.json").read_text()) for d in (one, sharded))
    assert (s1["error"], s1["alpha"], s1["n_failed"]) == (s2["error"], s2["alpha"], s2["n_failed"])


def test_the_folders_own_files_are_written_by_rank_0_alone(tmp_path, monkeypatch):
    """Two ranks that load the model at once both wrote ``model_info.json``, and one then found the
    other's file in the way (exit 2 under torchrun): a rank other than 0 leaves it to rank 0."""
    from gfi.cli import main
    from tests import cli_tiny
    from tests.cli.test_fault_injection import sod

    cli_tiny.patch(monkeypatch)
    data, out = sod(tmp_path / "sod", 4), tmp_path / "ev"
    argv = ["eval", "saliency", "--data", str(data), "--method", "gradcam", "--out", str(out), "--quiet",
            "--threads", "1"]
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(argv) == 0
    assert list(out.glob("records.part1.*.jsonl")) and not (out / "model_info.json").exists()
    monkeypatch.setenv("RANK", "0")
    assert main(argv) == 0
    assert json.loads((out / "model_info.json").read_text())["model"]
