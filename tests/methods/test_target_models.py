"""Known answers beyond classifiers: a semantic-segmentation model, a detection model and a regression
model built from torchvision architectures with weights set so that one planted red patch decides
the score (tests/methods/target_nets.py says how), explained by GFI and Grad-CAM through
gfi.targets: each map's maximum must lie in the patch."""

from __future__ import annotations

import pytest
import torch

from gfi.methods.registry import METHODS, get_method
from gfi.targets import DetectionTarget, OutputIndex, SegmentationTarget
from tests.methods import target_nets as nets

pytest.importorskip("torchvision")


def explain(name, clf, x, target):
    return get_method(name, clf, **METHODS[name].test_settings).explain(x, target)


@pytest.fixture(scope="module")
def segmentation():
    return nets.segmentation_model(), nets.planted_images(2, nets.SEGMENTATION_SIZE, nets.SEGMENTATION_BOX)


def test_the_planted_segmentation_model_segments_the_patch_and_nothing_else(segmentation):
    clf, x = segmentation
    with torch.no_grad():
        out = clf(x)  # {"out": ...} unwrapped
    assert out.shape == (2, 2, 128, 128)
    x0, y0, x1, y1 = nets.SEGMENTATION_BOX
    assert (out[:, 0] == 0).all() and (out[:, 1, y0 + 8:y1 - 8, x0 + 8:x1 - 8] > 0).all()
    assert (out[:, 1, :, : x0 - 24] == 0).all() and (out[:, 1, y1 + 24:] == 0).all()  # no red: exactly 0
    other = x.clone()
    other[:, 1:] = torch.rand_like(other[:, 1:])  # other green and blue everywhere: the same score
    target = SegmentationTarget(1)
    with torch.no_grad():
        torch.testing.assert_close(target(clf(other)), target(out))


@pytest.mark.parametrize("method,mask", [("gradcam", "all"), ("gradcam", "patch"),
                                         pytest.param("gfi", "all", marks=pytest.mark.slow),
                                         pytest.param("gfi", "patch", marks=pytest.mark.slow)])
def test_segmentation_target_maps_peak_in_the_patch(segmentation, method, mask):
    clf, x = segmentation
    region = None
    if mask == "patch":
        x0, y0, x1, y1 = nets.SEGMENTATION_BOX
        region = torch.zeros(128, 128, dtype=torch.bool)
        region[y0:y1, x0:x1] = True
    e = explain(method, clf, x, SegmentationTarget(1, region))
    assert not e.collapsed.any()
    assert all(nets.in_box(e.maps[b, 0], nets.SEGMENTATION_BOX) for b in range(2))
    assert e.targets.tolist() == [[1], [1]]
    assert e.target_descriptions[0][0].startswith("mask:") and e.target_descriptions[0][0].endswith(":1")
    with torch.no_grad():
        assert torch.allclose(e.probs[:, 0], SegmentationTarget(1, region)(clf(x)))


@pytest.fixture(scope="module")
def detection():
    return nets.detection_model(), nets.planted_images(1, nets.DETECTION_SIZE, nets.DETECTION_BOX)


def test_the_planted_detector_finds_the_patch(detection):
    clf, x = detection
    with torch.no_grad():
        out = clf(x)  # torchvision's list of dicts, passed through
    assert isinstance(out, list) and len(out) == 1
    best = int(out[0]["scores"].argmax())
    assert out[0]["boxes"][best].tolist() == list(map(float, nets.DETECTION_BOX)) and out[0]["labels"][best] == 1
    target = DetectionTarget(nets.DETECTION_BOX, 1)
    with torch.no_grad():
        assert float(target(out)[0]) == float(out[0]["scores"][best])
        assert float(DetectionTarget((0, 0, 30, 30), 1)(out)[0]) == 0.0  # no detection there


@pytest.mark.parametrize("method", ["gradcam", pytest.param("gfi", marks=pytest.mark.slow)])
def test_detection_target_maps_peak_in_the_patch(detection, method):
    clf, x = detection
    e = explain(method, clf, x, DetectionTarget(nets.DETECTION_BOX, 1))
    assert not e.collapsed.any()
    assert nets.in_box(e.maps[0, 0], nets.DETECTION_BOX)
    assert e.targets.tolist() == [[1]] and e.target_descriptions == [["box:160,32,224,96:1"]]
    assert 0 < float(e.probs[0, 0]) < 1


def test_a_box_no_detection_matches_gives_a_zero_map_not_an_error(detection):
    clf, x = detection
    e = explain("gradcam", clf, x, DetectionTarget((0, 0, 20, 20), 1))
    assert e.collapsed.all() and (e.maps == 0).all() and float(e.probs[0, 0]) == 0.0


def test_class_targets_on_a_detector_are_refused_in_one_line(detection):
    clf, x = detection
    with pytest.raises(ValueError, match=r"top-1 class, for which the model must return a 2-D \(batch, classes\) "
                                         r"score tensor; it returned a list of 1 dict: give a target"):
        get_method("gradcam", clf).explain(x)
    with pytest.raises(ValueError, match=r"target class:1 reads \(batch, classes\) scores, but the model returned a "
                                         r"list of 1 dict; .* detection model DetectionTarget"):
        get_method("gradcam", clf).explain(x, 1)


@pytest.fixture(scope="module")
def regression():
    return nets.resnet_model(outputs=2, reads=0), nets.planted_images(2, nets.RESNET_SIZE, nets.RESNET_BOX)


@pytest.mark.parametrize("method", ["gradcam", pytest.param("gfi", marks=pytest.mark.slow)])
def test_regression_output_maps_peak_in_the_patch(regression, method):
    clf, x = regression
    e = explain(method, clf, x, OutputIndex(0))
    assert not e.collapsed.any()
    assert all(nets.in_box(e.maps[b, 0], nets.RESNET_BOX) for b in range(2))
    assert e.targets.tolist() == [[-1], [-1]] and e.target_descriptions == [["output:0"]] * 2
    with torch.no_grad():
        torch.testing.assert_close(e.probs[:, 0], clf(x)[:, 0])  # the output itself, not a softmax


def test_an_output_that_does_not_depend_on_the_image_gives_a_collapsed_map(regression):
    clf, x = regression
    e = explain("gradcam", clf, x, OutputIndex(1))  # constant 0
    assert e.collapsed.all() and (e.maps == 0).all()


def test_gfi_explain_in_one_call_takes_a_target_object(regression):
    import gfi

    clf, x = regression
    e = gfi.explain(x[0], "gradcam", target=[OutputIndex(0), 0], model=clf)  # a target and a class index
    assert e.target_descriptions == [["output:0", "class:0"]]
    assert nets.in_box(e.maps[0, 0], nets.RESNET_BOX)
