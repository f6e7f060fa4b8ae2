"""``gfi compare`` (Figures 2, 3, 5) and its drawing."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from gfi.cli import main


def test_compare_methods_writes_one_column_per_method(tmp_path, capsys):
    out = tmp_path / "fig2.png"
    assert main(["compare", "--methods", "gradcam,center", "--out", str(out), "--cmap", "cividis"]) == 0
    assert out.exists() and out.stat().st_size < 400_000
    w, h = Image.open(out).size
    assert w > 2.5 * h  # input + 2 panels side by side


def test_compare_refuses_conflicting_figures_and_unknown_methods(tmp_path, capsys):
    assert main(["compare", "--classes", "tabby,golden retriever", "--models", "efficientnet_lite0",
                 "--out", str(tmp_path / "x.png")]) == 2
    assert "give one of them" in capsys.readouterr().err
    assert main(["compare", "--methods", "gradcam,nope", "--out", str(tmp_path / "x.png")]) == 2
    assert "unknown method(s) nope" in capsys.readouterr().err
    assert main(["compare", "--models", "efficientnet_lite0", "--methods", "gradcam,cam",
                 "--out", str(tmp_path / "x.png")]) == 2
    assert "one method" in capsys.readouterr().err


def test_compare_models_without_weights_is_a_clear_error(tmp_path, capsys):
    from gfi.models.presets import PRESETS

    if PRESETS["alexnet"].weights_available():
        pytest.skip("AlexNet weights are present here, so the missing-weights error cannot be shown")
    assert main(["compare", "--models", "efficientnet_lite0,alexnet", "--methods", "gradcam",
                 "--out", str(tmp_path / "x.png")]) == 2
    assert "alexnet" in capsys.readouterr().err.lower()


def test_compare_classes_draws_stage1_and_one_map_per_class(tmp_path):
    out = tmp_path / "fig3.png"
    assert main(["compare", "--classes", "golden retriever,tabby", "--out", str(out)]) == 0
    w, h = Image.open(out).size
    assert w > 3.5 * h  # input, stage 1, two classes


def test_draw_row_shows_text_panels_for_methods_that_cannot_run(tmp_path):
    from gfi.viz.compare import Panel, draw_row

    img = torch.rand(3, 40, 60)
    sal = torch.zeros(40, 60)
    sal[5, 7] = 1
    path = draw_row(tmp_path / "r.png", img, [Panel("a", sal), Panel("lrp", text="not applicable")], note="n")
    assert Image.open(path).size[0] > 2 * Image.open(path).size[1]


def test_compare_keeps_a_users_file_and_replaces_only_with_overwrite(tmp_path, capsys):
    """--out at a file of the user's was overwritten without a word; now refused before any work (one
    line, exit 2, file byte for byte), replaced with --overwrite, written whole through a temporary
    file; a link there is replaced itself with --overwrite, its target never touched; a folder or a
    name that is not .png is refused."""
    mine = tmp_path / "compare.png"
    mine.write_bytes(b"my figure")
    args = ["compare", "--methods", "center", "--out", str(mine)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"gfi: error: --out {mine}: exists; give --overwrite to replace it, or choose another --out"]
    assert mine.read_bytes() == b"my figure"
    assert main([*args, "--overwrite"]) == 0
    assert Image.open(mine).size[0] > 1.5 * Image.open(mine).size[1]
    assert [p.name for p in tmp_path.iterdir()] == ["compare.png"]  # no temporary left
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    link = tmp_path / "link.png"
    link.symlink_to(victim)
    assert main(["compare", "--methods", "center", "--out", str(link)]) == 2
    assert main(["compare", "--methods", "center", "--out", str(link), "--overwrite"]) == 0
    assert victim.read_text() == "keep" and not link.is_symlink() and Image.open(link).format == "PNG"
    capsys.readouterr()
    (tmp_path / "d.png").mkdir()
    assert main(["compare", "--methods", "center", "--out", str(tmp_path / "d.png"), "--overwrite"]) == 2
    assert "is a folder or another special file" in capsys.readouterr().err
    assert main(["compare", "--methods", "center", "--out", str(tmp_path / "x.jpg")]) == 2
    assert "writes a PNG; give a name ending in .png" in capsys.readouterr().err
    assert not (tmp_path / "x.jpg").exists()
