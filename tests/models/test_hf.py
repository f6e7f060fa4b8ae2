"""Hugging Face ``transformers`` classifiers: ``Classifier.from_transformers`` and ``--model hf:PATH``,
on tiny randomly initialised configs built here (no download)."""

from __future__ import annotations

import pytest
import torch

from gfi import Classifier, get_method
from gfi.errors import UsageError
from gfi.models.sources import ModelSpecError, load_source
from tests.cli.test_reliability import run
from tests.conftest import ASSETS

T = pytest.importorskip("transformers", reason="transformers is a test dependency (pip install -e '.[test]')")

LABELS = {0: "red", 1: "green", 2: "blue"}


def _resnet(problem_type=None):
    torch.manual_seed(0)
    cfg = T.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3, id2label=LABELS,
                         label2id={v: k for k, v in LABELS.items()}, problem_type=problem_type)
    return T.ResNetForImageClassification(cfg).eval()


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf-resnet")
    _resnet().save_pretrained(folder)
    T.ConvNextImageProcessor(size={"shortest_edge": 64}, image_mean=[0.4, 0.5, 0.6],
                             image_std=[0.2, 0.25, 0.3]).save_pretrained(folder)
    return folder


def test_from_transformers_reads_labels_normalisation_size_and_unwraps_logits():
    model = _resnet()
    proc = T.ViTImageProcessor(size={"height": 48, "width": 40}, image_mean=[0.1, 0.2, 0.3], image_std=[0.5, 0.5, 0.5])
    clf = Classifier.from_transformers(model, proc)
    assert clf.class_names == ["red", "green", "blue"] and clf.input_size == (48, 40) and not clf.multilabel
    assert clf.mean.flatten().tolist() == pytest.approx([0.1, 0.2, 0.3])
    x = torch.rand(2, 3, 48, 40)
    with torch.no_grad():
        expected = model(pixel_values=(x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / 0.5).logits
        torch.testing.assert_close(clf(x), expected)
    assert str(clf.inversion_layer) == "resnet.encoder.stages.1"  # the last spatial map, as for any CNN
    assert clf.class_index("green") == 1


def test_from_transformers_multilabel_and_missing_normalisation():
    assert Classifier.from_transformers(_resnet("multi_label_classification"), mean=(0.5,) * 3, std=(0.5,) * 3,
                                        input_size=(32, 32)).multilabel
    with pytest.raises(UsageError, match=r"AutoImageProcessor.from_pretrained\(PATH\)\) or mean=, std="):
        Classifier.from_transformers(_resnet())


def test_hf_convnext_and_vit_explain():
    torch.manual_seed(0)
    convnext = T.ConvNextForImageClassification(T.ConvNextConfig(
        num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], num_labels=4, image_size=64)).eval()
    clf = Classifier.from_transformers(convnext, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert clf.input_size == (64, 64)  # config.image_size without a processor
    e = get_method("gfi", clf, iters1=3, iters2=3).explain(torch.rand(1, 3, 64, 64), [[0, 3]])
    assert e.maps.shape == (1, 2, 64, 64) and torch.isfinite(e.maps).all()
    vit = T.ViTForImageClassification(T.ViTConfig(image_size=32, patch_size=8, num_hidden_layers=2, hidden_size=32,
                                                  num_attention_heads=2, intermediate_size=64, num_labels=5)).eval()
    clf = Classifier.from_transformers(vit, T.ViTImageProcessor(size={"height": 32, "width": 32}))
    assert str(clf.inversion_layer) == "vit.layers.1:input"  # tokens of the last block's input
    e = get_method("gradcam", clf).explain(torch.rand(1, 3, 32, 32), [[2]])
    assert e.maps.shape == (1, 1, 32, 32) and e.maps.max() > 0.5


def test_load_source_hf_folder(hf_folder):
    clf, info = load_source(f"hf:{hf_folder}")
    assert clf.input_size == (64, 64) and clf.class_names == ["red", "green", "blue"]
    assert info["source"] == "hf" and info["mean"] == pytest.approx((0.4, 0.5, 0.6))
    saved = _resnet()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():  # the folder's own weights were loaded, not a fresh initialisation
        torch.testing.assert_close(clf(x), Classifier.from_transformers(saved, mean=(0.4, 0.5, 0.6),
                                                                        std=(0.2, 0.25, 0.3), input_size=(64, 64))(x))
    from gfi.models.weights import file_sha256

    weights = next(hf_folder / n for n in ("model.safetensors", "pytorch_model.bin") if (hf_folder / n).is_file())
    assert info["weights"] == str(weights) and info["sha256"] == file_sha256(weights)  # the file read, its hash
    _, info = load_source(f"hf:{hf_folder}", weights="random")
    assert info["weights"] == "random" and info["sha256"] is None


def test_load_source_hf_errors(tmp_path):
    with pytest.raises(ModelSpecError, match="no such folder"):
        load_source(f"hf:{tmp_path / 'missing'}")
    with pytest.raises(ModelSpecError, match=r"save_pretrained\(DIR\)"):
        load_source(f"hf:{tmp_path}")  # a folder without a model


def test_cli_explain_hf_folder(hf_folder, tmp_path, capsys):
    rc, out, err = run(["explain", str(ASSETS / "chelsea.png"), "--model", f"hf:{hf_folder}", "--method", "gradcam",
                        "--target", "blue", "--out", str(tmp_path / "out")], capsys)
    assert rc == 0, err
    assert "blue (2)" in out and (tmp_path / "out" / "chelsea_gradcam_2.png").is_file()
    rc, _, err = run(["explain", str(ASSETS / "chelsea.png"), "--model", "hf:./no-such-folder"], capsys)
    assert rc == 2 and "no such folder" in err and err.strip().count("\n") == 0
