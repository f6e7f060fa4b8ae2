"""``--target topK`` is capped: by the model's classes (``top99999`` on a 10-class model is refused,
naming top10) and by memory (estimated from the batch and ``--max-side``), in one line each."""

from __future__ import annotations

import pytest

from gfi.errors import UsageError
from gfi.folder.targets import check_target_memory, resolve_targets, target_count
from gfi.models import memory
from tests import cli_tiny
from tests.cli.test_reliability import FAST, run, write_images


@pytest.fixture
def tiny_cli(monkeypatch):
    cli_tiny.patch(monkeypatch)


def test_top_k_beyond_the_classes_is_refused_before_anything_is_written(tmp_path, capsys, tiny_cli):
    folder = write_images(tmp_path / "in", 1)
    out = tmp_path / "out"
    rc, _, err = run(["explain", str(folder), "--out", str(out), "--target", "top99999", *FAST], capsys)
    assert rc == 2
    assert err.strip() == ("gfi: error: --target top99999: asks for the top 99999 classes, but the model has 10; "
                           "the most is top10 (or give the classes you mean)")
    assert not out.exists()


def test_top_k_up_to_the_classes_runs(tmp_path, capsys, tiny_cli):
    folder = write_images(tmp_path / "in", 1)
    rc, _, _ = run(["explain", str(folder), "--out", str(tmp_path / "out"), "--target", "top10", *FAST], capsys)
    assert rc == 0


def test_a_model_without_class_names_is_capped_by_its_scores():
    import torch

    clf = cli_tiny.make()
    clf.class_names = None
    with pytest.raises(UsageError, match="the model has 10; the most is top10"):
        resolve_targets(["top11"], clf, torch.rand(10))
    assert len(resolve_targets(["top10"], clf, torch.rand(10))) == 10


def test_the_memory_cap_names_the_cap_and_the_options_that_lift_it():
    clf = cli_tiny.make()
    per_row = memory.ROW_FACTOR * memory.activation_bytes(clf, clf.input_size)
    per_target = 4 * per_row + 4 * 512 * 512  # a batch of 4, maps at up to 512 px a side
    with pytest.raises(UsageError) as info:
        check_target_memory(clf, [["top10"]], batch=4, max_side=512, available=int(3.5 * per_target))
    msg = str(info.value)
    assert msg.startswith("10 targets per image of 4 image(s) a batch at up to 512 px a side need about")
    assert "at most 3 target(s) per image fit; ask for at most 3 (e.g. --target top3), or lower --batch-size or " \
           "--max-side" in msg
    check_target_memory(clf, [["top3"]], batch=4, max_side=512, available=int(3.5 * per_target))
    check_target_memory(clf, [["top1"], ["top3"]], batch=4, max_side=512, available=int(3.5 * per_target))
    with pytest.raises(UsageError, match="ask for at most 3"):
        check_target_memory(clf, [["top1"], ["top2", "one", "two"]], batch=4, max_side=512,
                            available=int(3.5 * per_target))


def test_the_target_count_of_specs():
    assert target_count(["top5", "cat", "3"], 1000) == 7
    assert target_count(["top5", "top9"], 10) == 10


def test_the_python_api_cap_also_stops_a_cli_run_in_one_line(tmp_path, capsys, tiny_cli, monkeypatch):
    """A CLI run whose batch x K is beyond free memory ends in one line, before any image is explained
    (the CLI's own check, which also counts the full-size maps, comes first)."""
    folder = write_images(tmp_path / "in", 5)
    monkeypatch.setattr(memory, "available_bytes", lambda device: 10_000)
    rc, _, err = run(["explain", str(folder), "--out", str(tmp_path / "out"), "--target", "top8", "--batch-size",
                      "5", *FAST], capsys)
    assert rc == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("gfi: error: 8 targets per image of 5 image(s) ") and "need about" in last
    assert "at most 0 target(s) per image fit" in last
