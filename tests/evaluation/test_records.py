"""The per-image lines: a cut-off line is redone, parts are merged in dataset order, a failure
never replaces a success; resuming after a truncation gives the same summary."""

from __future__ import annotations

import json
import os

from gfi.evaluation.records import RecordWriter, merge_records, read_records
from tests.evaluation.helpers import evaluate, lines, stable


def test_cut_off_lines_failures_and_merge(tmp_path):
    w = RecordWriter(tmp_path / "records.part1.jsonl")
    w.write([{"index": 3, "key": "d", "v": 1}, {"index": 1, "key": "b", "error": "x"}])
    w.close()
    (tmp_path / "records.part0.jsonl").write_text(json.dumps({"index": 1, "key": "b", "v": 2}) + '\n{"index": 0, "ke')
    w = RecordWriter(tmp_path / "records.part0.jsonl")  # ends the cut-off line first
    w.write([{"index": 0, "key": "a", "v": 0}])
    w.close()
    recs = read_records(tmp_path)
    assert recs["b"] == {"index": 1, "key": "b", "v": 2}  # the error line of part 1 does not replace it
    merged = merge_records(tmp_path)
    assert [r["key"] for r in merged] == ["a", "b", "d"]
    assert not list(tmp_path.glob("records.part*.jsonl")) and not list(tmp_path.glob(".*tmp*"))
    assert [json.loads(x)["key"] for x in (tmp_path / "records.jsonl").read_text().splitlines()] == ["a", "b", "d"]


def test_resume_after_truncation_gives_the_same_summary(tmp_path, tiny, dataset_dir):
    data = dataset_dir("imagenet")
    out = tmp_path / "pt"
    settings = {"data": data, "method": "gradcam", "out": out, "batch_size": 2}
    assert evaluate("pointing", tiny, **settings)
    first = json.loads((out / "summary.json").read_text())
    full = lines(out)
    kept_map = out / "maps" / "img_a_1.npy"
    mtime = kept_map.stat().st_mtime_ns
    text = (out / "records.jsonl").read_text().splitlines(keepends=True)
    from gfi.persist import Manifest

    # one line and a cut-off one (as a part file a kill cut off is read; listed: gfi's)
    Manifest(out).write_text(out / "records.jsonl", text[0] + text[1][:25])
    (out / "summary.json").unlink()
    os.remove(out / "maps" / "img_b_3.npy")
    assert evaluate("pointing", tiny, **settings)
    second = json.loads((out / "summary.json").read_text())
    assert stable(lines(out)) == stable(full)
    for k in ("accuracy", "accuracy_per_image", "n_images", "n_failed", "paper", "torchray"):
        assert second[k] == first[k]
    assert kept_map.stat().st_mtime_ns == mtime  # image 0 was not redone
    assert (out / "maps" / "img_b_3.npy").is_file()
