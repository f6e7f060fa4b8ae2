"""``gfi explain`` on bad inputs, options and models: one-line errors, skipped files listed, no NaN,
safe outputs, and resuming a run in an existing --out. Uses the small CNN of tests/cli_tiny.py."""

import json
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from gfi.cli import build_parser, main
from tests import cli_tiny
from tests.spies import reader_threads

FAST = ["--method", "gradcam", "--quiet"]


@pytest.fixture
def tiny_cli(monkeypatch):
    cli_tiny.patch(monkeypatch)


def write_images(folder, n=3, size=(40, 48)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)).save(folder / f"im{i}.png")
    return folder


def results(out):
    def no_nan(name):
        raise AssertionError(f"results.json holds {name}")

    return json.loads((out / "results.json").read_text(), parse_constant=no_nan)


def without_evidence_lines(err: str) -> str:
    """stderr without the evidence check's warnings (gfi.evidence: one line per map that does not hold
    its class's evidence, as the tiny model's random maps often do), for tests about other lines."""
    return "".join(line for line in err.splitlines(keepends=True) if "the class's evidence" not in line)


def run(argv, capsys):
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return rc, captured.out, captured.err


# ---------------------------------------------------------------------------------------------
def test_batch_skips_unreadable_files_and_lists_them(tmp_path, capsys, tiny_cli):
    folder = write_images(tmp_path / "in", 2)
    (folder / "text.jpg").write_text("not an image")
    Image.fromarray((np.random.default_rng(1).random((200, 200, 3)) * 255).astype(np.uint8)).save(folder / "cut.png")
    (folder / "cut.png").write_bytes((folder / "cut.png").read_bytes()[:3000])
    Image.new("RGB", (5, 5)).save(folder / "tiny.png")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    out = tmp_path / "out"
    rc, _, err = run(["explain", str(folder), "--out", str(out), *FAST], capsys)
    assert rc == 0
    res = results(out)
    assert [r["image"] for r in res["images"]] == [str(folder / "im0.png"), str(folder / "im1.png")]
    failed = {f["image"]: f["error"] for f in res["failures"]}
    assert set(failed) == {str(folder / n) for n in ("text.jpg", "cut.png", "tiny.png")}
    assert "not an image" in failed[str(folder / "text.jpg")]
    assert "smaller than the minimum" in failed[str(folder / "tiny.png")]
    for path in failed:
        assert f"skipped: {path}" in err
    assert "3 image(s) not explained" in err
    assert (out / "report.html").exists()


def test_nothing_explained_exits_non_zero_with_one_line(tmp_path, capsys, tiny_cli):
    (tmp_path / "a.jpg").write_text("no")
    (tmp_path / "b.png").write_bytes(b"")
    rc, _, err = run(["explain", str(tmp_path / "a.jpg"), str(tmp_path / "b.png"), "--out", str(tmp_path / "o"),
                      *FAST], capsys)
    assert rc == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("gfi: error: no image could be explained (2 failed; first: ")
    assert results(tmp_path / "o")["images"] == []


@pytest.mark.parametrize("args,message", [
    (["{missing}"], "no such file or folder"),
    (["{empty}"], "folder has no images"),
])
def test_missing_inputs_and_empty_folders(tmp_path, capsys, tiny_cli, args, message):
    (tmp_path / "empty").mkdir()
    argv = [a.format(missing=tmp_path / "nope.jpg", empty=tmp_path / "empty") for a in args]
    rc, _, err = run(["explain", *argv, "--out", str(tmp_path / "o"), *FAST], capsys)
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1


def test_nan_model_output_is_a_listed_failure_not_a_nan(tmp_path, capsys, monkeypatch):
    cli_tiny.patch(monkeypatch, nan_on_white=True)
    folder = write_images(tmp_path / "in", 1)
    Image.new("RGB", (40, 40), (255, 255, 255)).save(folder / "white.png")
    out = tmp_path / "o"
    rc, _, err = run(["explain", str(folder), "--out", str(out), "--save-npy", *FAST], capsys)
    assert rc == 0
    res = results(out)
    assert [r["image"] for r in res["images"]] == [str(folder / "im0.png")]
    assert res["failures"][0]["image"] == str(folder / "white.png")
    assert "contains NaN or inf" in res["failures"][0]["error"] and "check the weights" in err
    assert not list(out.glob("white*"))


def test_collapsed_maps_are_flagged_and_written_as_zeros(tmp_path, capsys, monkeypatch):
    cli_tiny.patch(monkeypatch, zero=True)  # every weight zero: Grad-CAM's map is constant
    folder = write_images(tmp_path / "in", 1)
    out = tmp_path / "o"
    rc, _, err = run(["explain", str(folder), "--out", str(out), "--save-npy", *FAST], capsys)
    assert rc == 0
    t = results(out)["images"][0]["targets"][0]
    assert t["collapsed"] is True
    arr = np.load(out / t["npy"])
    assert np.isfinite(arr).all() and arr.max() == 0
    assert "the map collapsed (all weights zero); it is written as zeros" in err


def test_gfi_collapse_is_reported_too(tmp_path, capsys, monkeypatch):
    cli_tiny.patch(monkeypatch, zero=True)
    out = tmp_path / "o"
    rc, _, _ = run(["explain", str(write_images(tmp_path / "in", 1)), "--out", str(out), "--iters1", "2",
                    "--iters2", "2", "--quiet", "--save-npy"], capsys)
    assert rc == 0
    rec = results(out)["images"][0]
    assert rec["stage1_collapsed"] is True and rec["targets"][0]["collapsed"] is True
    assert np.isfinite(np.load(out / rec["stage1_npy"])).all()


def test_model_with_non_2d_output(tmp_path, capsys, monkeypatch):
    cli_tiny.patch(monkeypatch, model_factory=cli_tiny.BadOutput)
    rc, _, err = run(["explain", str(write_images(tmp_path / "in", 1)), "--out", str(tmp_path / "o"), *FAST],
                     capsys)
    assert rc == 2 and "must return a 2-D (batch, classes) score tensor" in err


def test_checkpoint_for_another_architecture_names_the_keys(tmp_path, capsys, tiny_cli):
    ckpt = tmp_path / "other.pth"
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1)).state_dict(), ckpt)
    rc, _, err = run(["explain", str(write_images(tmp_path / "in", 1)), "--weights", str(ckpt),
                      "--out", str(tmp_path / "o"), *FAST], capsys)
    assert rc == 2 and "missing keys: conv1.weight" in err and "unexpected keys: 0.weight" in err


class Payload:
    """Unpickling this runs code (it writes a file): what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (_touch, (self.marker,))


def _touch(path):
    open(path, "w").close()
    return "ran"


def test_pickled_checkpoint_needs_the_unsafe_flag(tmp_path, capsys, tiny_cli):
    marker = tmp_path / "code-ran"
    state = cli_tiny.SmallNet(seed=3).state_dict()
    ckpt = tmp_path / "pickled.pth"
    torch.save({"state_dict": state, "note": Payload(marker)}, ckpt, pickle_module=pickle)
    images = str(write_images(tmp_path / "in", 1))
    rc, _, err = run(["explain", images, "--weights", str(ckpt), "--out", str(tmp_path / "o"), *FAST], capsys)
    assert rc == 2 and "--unsafe-allow-pickle" in err and "arbitrary code" in err
    assert not marker.exists()  # weights_only=True never ran the payload
    rc, _, _ = run(["explain", images, "--weights", str(ckpt), "--unsafe-allow-pickle",
                    "--out", str(tmp_path / "o2"), *FAST], capsys)
    assert rc == 0 and marker.exists()  # the danger the flag's help warns about
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["explain"].format_help().split())
    assert "--unsafe-allow-pickle DANGEROUS" in help_text and "runs arbitrary code" in help_text


@pytest.mark.parametrize("argv,message", [
    (["--quiet", "--verbose"], "--quiet and --verbose conflict"),
    (["--method", "gradcam", "--iters1", "3"], "--iters1 set GFI options, which --method gradcam does not use"),
    (["--method", "center", "--preset", "paper"], "--preset set GFI options"),
    (["--target", "3", "--targets", "t.csv"], "--target and --targets conflict"),
    (["--max-side", "10"], "--max-side must be >= 32"),
    (["--target", "10"], "out of range: tiny has 10 classes (0..9)"),
    (["--target", "-1"], "out of range"),
    (["--inversion-layer", "relu3"], "Nearest names"),
    (["--model", "resnet50"], "invalid choice: 'resnet50' (choose from"),
])
def test_bad_options(tmp_path, capsys, tiny_cli, argv, message):
    rc, _, err = run(["explain", str(write_images(tmp_path / "in", 1)), "--out", str(tmp_path / "o"), *argv], capsys)
    assert rc == 2 and message in err


# ---------------------------------------------------------------------------------------------
def test_output_names_cannot_leave_out(tmp_path):
    from pathlib import Path

    from gfi.data.samples import safe_stem as _safe_stem
    from gfi.runs import OutputFolderError, RunFolder

    for name in ("../../etc/passwd", "..", ".hidden", "a/../../b", "con:x*?"):
        stem = _safe_stem(Path(name + ".png"))
        assert "/" not in stem and not stem.startswith(".") and stem
    folder = RunFolder(tmp_path / "o", {"a": 1})
    with pytest.raises(OutputFolderError, match="would leave"):
        folder.save("../escape.txt", lambda p: p.write_text("x"))
    assert not (tmp_path / "escape.txt").exists()


def test_html_report_escapes_user_names(tmp_path, capsys, tiny_cli):
    folder = tmp_path / "in"
    write_images(folder, 1)
    (folder / "im0.png").rename(folder / "<script>alert(1)<'x'>.png")
    (folder / "<img src=x onerror=alert(2)>.jpg").write_text("bad")
    out = tmp_path / "o"
    rc, _, _ = run(["explain", str(folder), "--out", str(out), "--target", "3", *FAST], capsys)
    assert rc == 0
    page = (out / "report.html").read_text()
    assert "<script>alert" not in page and "<img src=x" not in page and "<b>bold</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;&#x27;x&#x27;&gt;.png" in page
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &#x27;q&#x27;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;.jpg" in page


# ---------------------------------------------------------------------------------------------
def test_rerun_resumes_refuses_other_arguments_and_overwrite_starts_afresh(tmp_path, capsys, tiny_cli):
    folder = write_images(tmp_path / "in", 3)
    out = tmp_path / "o"
    base = ["explain", str(folder), "--out", str(out), *FAST]
    assert run(base, capsys)[0] == 0
    first = results(out)
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*.png")}
    rc, _, err = run([*base[:-1]], capsys)  # the same arguments, not quiet: nothing left to do
    assert rc == 0 and "nothing to do: all 3 images are already explained" in err
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.png")} == mtimes
    rc, _, err = run([*base, "--cmap", "viridis"], capsys)
    assert rc == 2 and "holds a run with other arguments (differs in: cmap)" in err
    rc, _, err = run([*base, "--target", "top2"], capsys)
    assert rc == 2 and "differs in: target" in err
    # an image a killed run had started: only it is explained again (its partial files replaced),
    # and the summary is the same
    from gfi.persist import Manifest

    started = json.loads((out / "records" / "im1.json").read_text())
    files = [started["thumb_input"], *(t[k] for t in started["targets"] for k in ("overlay", "thumb"))]
    Manifest(out).write_text(out / "records" / "im1.json", json.dumps(  # as a killed run leaves it
        {"image": str(folder / "im1.png"), "status": "started", "files": files}))
    rc, _, err = run([*base[:-1], "--verbose"], capsys)
    assert rc == 0 and "2 of 3 images are done, 1 to go" in err
    assert_same_summary(results(out), first)
    # --overwrite: afresh (gfi's old outputs are gone first); a file the user put at an output
    # name is refused all the same, and kept
    overlay = out / results(out)["images"][2]["targets"][0]["overlay"]
    overlay.write_bytes(b"mine")
    rc, _, err = run([*base, "--cmap", "viridis", "--overwrite"], capsys)
    assert rc == 0 and f"skipped: {overlay} exists and gfi did not write it" in err
    assert overlay.read_bytes() == b"mine"
    overlay.unlink()
    rc, _, _ = run([*base, "--cmap", "viridis", "--overwrite"], capsys)
    assert rc == 0
    assert json.loads((out / "run.json").read_text())["arguments"]["cmap"] == "viridis"
    assert Image.open(overlay).size[0] > 100 and len(results(out)["images"]) == 3


def test_existing_results_without_run_file_are_not_overwritten(tmp_path, capsys, tiny_cli):
    out = tmp_path / "o"
    out.mkdir()
    (out / "results.json").write_text("{}")
    rc, _, err = run(["explain", str(write_images(tmp_path / "in", 1)), "--out", str(out), *FAST], capsys)
    assert rc == 2 and "results.json exists and gfi did not write it; move it away or choose another --out" in err
    assert (out / "results.json").read_text() == "{}"


def assert_same_summary(a: dict, b: dict, path: str = "") -> None:
    """Equal summaries, but for timings (and the batch an image was timed in) and float round-off
    (a batch of 1 and a batch of 3 sum in different orders)."""
    if isinstance(a, dict):
        timing = {"seconds_total", "seconds_per_image", "batch_images"}
        keys = set(a) - timing
        assert keys == set(b) - timing, path
        for k in keys:
            assert_same_summary(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_summary(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6), path
    else:
        assert a == b, path


def test_verbose_and_quiet(tmp_path, capsys, tiny_cli):
    folder = write_images(tmp_path / "in", 2)
    rc, out, err = run(["explain", str(folder), "--out", str(tmp_path / "q"), "--method", "gradcam", "--quiet"],
                       capsys)
    assert rc == 0 and out == "" and without_evidence_lines(err) == ""  # warnings only (maps without evidence)
    rc, out, err = run(["explain", str(folder), "--out", str(tmp_path / "v"), "--method", "gradcam"], capsys)
    assert rc == 0 and out.count(" -> ") == 2
    assert "2/2" in err and ("img/s" in err or "s/img" in err)  # the progress bar: rate and time left
    assert os.path.exists(tmp_path / "v" / "report.html")


def test_library_logs_and_never_prints(tmp_path, capsys, caplog, monkeypatch):
    """The library API writes nothing to stdout/stderr; its warnings are logging records of gfi.*."""
    import logging

    from gfi.data.images import load_image
    from gfi.methods.gfi import GFIConfig, GuidedFeatureInversion
    from gfi.methods.grad_cam import GradCAM

    monkeypatch.setattr(logging.getLogger("gfi"), "handlers", [])  # as in a program that never ran the CLI
    monkeypatch.setattr(logging.getLogger("gfi"), "propagate", True)
    Image.new("RGB", (20, 20), (10, 20, 30)).save(tmp_path / "small.png")
    with caplog.at_level(logging.DEBUG):
        x = load_image(tmp_path / "small.png")
        clf = cli_tiny.make(zero=True)
        GuidedFeatureInversion(clf, config=GFIConfig(iters1=2, iters2=2)).explain(clf.prepare(x))
        GradCAM(clf).explain(clf.prepare(x))
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert any(r.name == "gfi.data.images" and r.levelno == logging.WARNING for r in caplog.records)


def test_a_run_that_recorded_nothing_is_refused_with_the_reason_and_resumed_with_its_arguments(
        tmp_path, capsys, tiny_cli):
    """Issue 14 case 1: a killed run that finished no image is no longer replaced by a run with other
    arguments (that deleted files gfi had not written); the same arguments resume it, replacing only
    the partial files its record names."""
    from gfi.runs import RunFolder

    images = write_images(tmp_path / "in", 1)
    argv = ["explain", str(images), "--out", str(tmp_path / "o"), *FAST]
    rc, _, _ = run([*argv, "--cmap", "viridis"], capsys)
    assert rc == 0
    rec = json.loads((tmp_path / "o" / "records" / "im0.json").read_text())
    written = [rec["thumb_input"], *(t[k] for t in rec["targets"] for k in ("overlay", "thumb"))]
    stored = RunFolder(tmp_path / "o", json.loads((tmp_path / "o" / "run.json").read_text())["arguments"])
    stored.start("im0", str(images / "im0.png"), written)  # as if killed while writing the image's outputs
    stored.save("im0_gradcam_2.png", lambda p: p.write_bytes(b"partial"))  # one of them written again
    stored.close()
    rc, _, err = run(argv, capsys)
    assert rc == 2 and "holds a run with other arguments (differs in: cmap)" in err
    assert (tmp_path / "o" / "im0_gradcam_2.png").read_bytes() == b"partial"
    rc, _, err = run([*argv, "--cmap", "viridis"], capsys)
    assert rc == 0, err
    assert results(tmp_path / "o")["images"][0]["targets"][0]["overlay"] == "im0_gradcam_2.png"
    assert (tmp_path / "o" / "im0_gradcam_2.png").read_bytes() != b"partial"
    # a bad option is refused before --out is touched
    rc, _, err = run(["explain", str(tmp_path / "in"), "--out", str(tmp_path / "p"), "--target", "unicornish"],
                     capsys)
    assert rc == 2 and "unknown class name 'unicornish'" in err and not (tmp_path / "p").exists()


def test_files_of_the_user_in_the_way_are_not_replaced(tmp_path, capsys, tiny_cli):
    folder = write_images(tmp_path / "in", 2)
    out = tmp_path / "o"
    out.mkdir()
    (out / "im0_gradcam_2.png").write_bytes(b"mine")  # the name the overlay of im0 (class 2) would get
    argv = ["explain", str(folder), "--out", str(out), *FAST]
    for _ in range(2):  # refused, and refused again when the run is resumed
        rc, _, err = run(argv, capsys)
        assert rc == 0 and "im0_gradcam_2.png exists and gfi did not write it; move it away or choose" in err
        res = results(out)
        assert [r["image"] for r in res["images"]] == [str(folder / "im1.png")]
        assert res["failures"][0]["image"] == str(folder / "im0.png")
        assert (out / "im0_gradcam_2.png").read_bytes() == b"mine"


def test_huge_image_is_explained_at_max_side(tmp_path, capsys, tiny_cli):
    Image.new("RGB", (5000, 40), (200, 30, 30)).save(tmp_path / "wide.png")
    out = tmp_path / "o"
    rc, _, _ = run(["explain", str(tmp_path / "wide.png"), "--out", str(out), "--max-side", "1000", "--save-npy",
                    *FAST], capsys)
    assert rc == 0
    rec = results(out)["images"][0]
    assert rec["size"] == [8, 1000] and rec["original_size"] == [40, 5000]
    assert np.load(out / rec["targets"][0]["npy"]).shape == (8, 1000)


def test_slow_methods_say_what_they_cost_and_show_progress_inside_an_image(tmp_path, capsys, tiny_cli):
    """Issue 16: rise ran 17+ minutes with nothing on screen; per-image lines came only at the end."""
    folder = write_images(tmp_path / "in", 2)
    rc, out, err = run(["explain", str(folder), "--out", str(tmp_path / "o"), "--method", "rise", "--n-masks", "1200",
                        "--batch-size", "1"], capsys)
    assert rc == 0
    assert "rise runs with n_masks=1200 per image" in err and "--n-masks 1000 is its documented cheaper setting" in err
    assert "rise, this batch" in err and "1200/1200" in err  # the bar inside each image
    assert "rise: 1200 steps per call, about " in err and " s per image here (measured on its first steps)" in err
    assert out.count(" -> ") == 2
    rc, _, err = run(["explain", str(folder), "--out", str(tmp_path / "p"), "--method", "rise", "--n-masks", "50"],
                     capsys)
    assert rc == 0 and "cheaper setting" not in err


def test_the_progress_hook_counts_every_step():
    from gfi.methods.registry import get_method

    clf = cli_tiny.make()
    seen = []
    e = get_method("gfi", clf, iters1=3, iters2=4)
    e.progress = lambda done, total: seen.append((done, total))
    e.explain(torch.rand(1, 3, 32, 32), [[1, 2]])
    assert seen == [(i, 11) for i in range(1, 12)]  # independent targets: one stage 2 of 4 steps each
    e = get_method("gfi", clf, iters1=3, iters2=4, joint="separate")  # both targets in one stage 2
    seen.clear()
    e.progress = lambda done, total: seen.append((done, total))
    e.explain(torch.rand(1, 3, 32, 32), [[1, 2]])
    assert seen == [(i, 7) for i in range(1, 8)]
    e = get_method("gfi", clf, iters1=2, iters2=3, chunk=1, exclusion=0.0)  # two chunks of stage 2
    seen.clear()
    e.progress = lambda done, total: seen.append((done, total))
    e.explain(torch.rand(1, 3, 32, 32), [[1, 2]])
    assert seen[-1] == (8, 8) and len(seen) == 8


def test_small_probabilities_print_with_significant_digits():
    """p=0.000 on the terminal, in titles and in the report, for a p of 5e-5 (issue 16)."""
    from gfi.cli.common import format_prob
    from gfi.viz.report import _num

    assert format_prob(5.1e-05) == "5.1e-05" and format_prob(0.43) == "0.43" and format_prob(0.001) == "0.001"
    assert format_prob(0.0) == "0" and format_prob(None) == "nan"
    assert _num(5.1e-05)[1] == "5.1e-05" and _num(0.759)[1] == "0.759"


def test_prefetch_reads_the_next_batch_in_a_thread_and_changes_no_output(tmp_path, capsys, tiny_cli, monkeypatch):
    """gfi explain reads images one batch ahead in the prefetch thread (the default); with
    --no-prefetch in the main thread; the results are the same, unreadable files included."""
    import threading

    import gfi.data.images as images

    folder = write_images(tmp_path / "in", 4)
    (folder / "bad.png").write_text("not an image")
    readers = reader_threads(monkeypatch, images)
    got = {}
    for flag in ([], ["--no-prefetch"]):
        readers.clear()
        out = tmp_path / f"o{len(flag)}"
        rc, _, _ = run(["explain", str(folder), "--out", str(out), "--batch-size", "2", *FAST, *flag], capsys)
        assert rc == 0
        got[bool(flag)] = results(out)
        assert set(readers) == ({threading.current_thread().name} if flag else {"gfi-prefetch_0"})
    for summary in got.values():
        summary.pop("run", None)
    assert len(got[False]["failures"]) == 1 and "bad.png" in got[False]["failures"][0]["image"]
    assert_same_summary({k: v for k, v in got[False].items() if k != "out"},
                        {k: v for k, v in got[True].items() if k != "out"})


def test_reliability_doc_quotes_the_model_message_the_parser_prints(tmp_path, capsys):
    """docs/RELIABILITY.md quoted --model resnet50's message from before model sources existed; the
    row must hold the line the parser prints now."""
    from tests.conftest import REPO

    rc, _, err = run(["explain", str(tmp_path / "x.png"), "--model", "resnet50"], capsys)
    last = err.strip().splitlines()[-1]
    assert rc == 2 and last.startswith("gfi explain: error: argument --model: invalid choice: 'resnet50'")
    row = next(line for line in (REPO / "docs" / "RELIABILITY.md").read_text().splitlines()
               if line.startswith("| `--model resnet50` |"))
    assert f"`` {last} ``" in row, row
