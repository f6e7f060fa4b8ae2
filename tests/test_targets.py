"""gfi.targets: each target's score computed by hand on a tiny output, its description, its refusals,
and the (B, K) grid methods consume (rows, order, gradients, the fast path of plain class indices)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gfi.errors import TargetError
from gfi.methods.base import as_targets
from gfi.targets import (
    CallableTarget,
    ClassTarget,
    Contrastive,
    DetectionTarget,
    Logit,
    LogSoftmax,
    OutputIndex,
    SegmentationTarget,
    Sigmoid,
    Softmax,
    TargetGrid,
)

Z = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 7.0]])  # (2 images, 3 classes)
CPU = torch.device("cpu")


def softmax_by_hand(row, c):
    return math.exp(row[c]) / sum(math.exp(v) for v in row)


def close(got, want):
    torch.testing.assert_close(got, torch.tensor(want, dtype=got.dtype), rtol=1e-6, atol=1e-6)


def test_class_scores_by_hand():
    rows = Z.tolist()
    close(Logit(2)(Z), [3.0, 7.0])
    close(Softmax(0)(Z), [softmax_by_hand(r, 0) for r in rows])
    close(LogSoftmax(1)(Z), [math.log(softmax_by_hand(r, 1)) for r in rows])
    close(Sigmoid(1)(Z), [1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(-5.0))])
    close(ClassTarget(2)(Z), [3.0, 7.0])  # called directly: the logit, as Captum's int target


def test_probability_targets_give_their_log_forms_by_hand():
    rows = Z.tolist()
    p = [softmax_by_hand(r, 2) for r in rows]
    close(Softmax(2).log(Z), [math.log(v) for v in p])
    close(Softmax(2).log1m(Z), [math.log(1 - v) for v in p])
    s = [1 / (1 + math.exp(-v)) for v in (1.0, 4.0)]
    close(Sigmoid(0).log(Z), [math.log(v) for v in s])
    close(Sigmoid(0).log1m(Z), [math.log(1 - v) for v in s])
    assert Softmax(0).probability and Sigmoid(0).probability
    assert not Logit(0).probability and not LogSoftmax(0).probability and not Contrastive(0, [1]).probability
    # a probability near 1: log(1 - p) computed from the logits stays finite and has a gradient
    z = torch.tensor([[0.0, 40.0]], requires_grad=True)
    v = Softmax(1).log1m(z)
    v.sum().backward()
    assert torch.isfinite(v).all() and z.grad.abs().sum() > 0


def test_a_plain_class_is_each_methods_own_reading():
    assert ClassTarget(3).read("logit", False) == Logit(3)
    assert ClassTarget(3).read("prob", False) == Softmax(3)
    assert ClassTarget(3).read("prob", True) == Sigmoid(3)
    assert Softmax(3).read("logit", False) == Softmax(3)  # an explicit score is itself for every method


def test_output_index_by_hand():
    close(OutputIndex(1)(Z), [2.0, 5.0])
    y = torch.arange(12.0).view(2, 3, 2)
    close(OutputIndex((2, 1))(y), [5.0, 11.0])
    close(OutputIndex(())(torch.tensor([0.5, 1.5])), [0.5, 1.5])
    assert OutputIndex((2, 1)).describe() == "output:2,1" and OutputIndex(0).class_index is None
    with pytest.raises(TargetError, match=r"gives 1 index\(es\), but the model's output \(2, 3, 2\) has 2 dim"):
        OutputIndex(0)(y)
    with pytest.raises(TargetError, match="out of range"):
        OutputIndex(3)(Z)


def test_segmentation_target_by_hand():
    z = torch.zeros(1, 2, 2, 2)
    z[0, 1] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    mask = torch.tensor([[True, False], [False, True]])
    close(SegmentationTarget(1, mask)(z), [5.0])
    close(SegmentationTarget(1, mask, reduction="mean")(z), [2.5])
    close(SegmentationTarget(1)(z), [10.0])
    close(SegmentationTarget(1, torch.tensor([[0.5, 0.0], [0.0, 1.0]]))(z), [4.5])
    close(SegmentationTarget(1, mask)({"out": z, "aux": z}), [5.0])  # torchvision's dict
    close(SegmentationTarget(0, mask)(z), [0.0])
    big = mask.repeat_interleave(2, 0).repeat_interleave(2, 1)  # 4 x 4, resized (nearest) to the output's 2 x 2
    close(SegmentationTarget(1, big)(z), [5.0])
    close(SegmentationTarget(1, np.array([[1, 0], [0, 1]]))(z), [5.0])


def test_segmentation_target_description_and_refusals():
    a = SegmentationTarget(1, torch.tensor([[True, False], [False, True]]))
    b = SegmentationTarget(1, torch.tensor([[True, True], [False, True]]))
    assert a.describe().startswith("mask:") and a.describe().endswith(":1") and a.describe() != b.describe()
    assert a.describe() == SegmentationTarget(1, torch.tensor([[True, False], [False, True]])).describe()
    assert SegmentationTarget(2).describe() == "mask:all:2"
    assert SegmentationTarget(2, reduction="mean").describe() == "mask:all:2:mean"
    for bad, message in [(torch.zeros(2, 2, dtype=torch.bool), "mask is empty"),
                         (torch.full((2, 2), -1.0), "finite weights >= 0"),
                         (torch.ones(1, 2, 2), r"must be \(H, W\)")]:
        with pytest.raises(TargetError, match=message):
            SegmentationTarget(1, bad)
    with pytest.raises(TargetError, match=r"reads \(batch, classes, H, W\) segmentation scores, but the model returned "
                                          r"a tensor of shape \(2, 3\)"):
        SegmentationTarget(1)(Z)
    with pytest.raises(TargetError, match="segments 2 classes"):
        SegmentationTarget(5)(torch.zeros(1, 2, 2, 2))


def detections(requires_grad=False):
    scores = torch.tensor([0.9, 0.8, 0.7], requires_grad=requires_grad)
    return [{"boxes": torch.tensor([[0.0, 0, 10, 10], [5, 5, 15, 15], [0, 0, 10, 10]]),
             "labels": torch.tensor([1, 1, 2]), "scores": scores},
            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long), "scores": torch.zeros(0)}], scores


def test_detection_target_by_hand():
    out, _ = detections()
    close(DetectionTarget((0, 0, 10, 10), 1)(out), [0.9, 0.0])
    close(DetectionTarget((5, 5, 15, 15), 1)(out), [0.8, 0.0])
    close(DetectionTarget((0, 0, 10, 10), 2)(out), [0.7, 0.0])
    # IoU of (6, 6, 16, 16) with (5, 5, 15, 15): 81 / (100 + 100 - 81) = 0.68; with (0, 0, 10, 10): 16 / 184
    close(DetectionTarget((6, 6, 16, 16), 1)(out), [0.8, 0.0])
    close(DetectionTarget((6, 6, 16, 16), 1, iou=0.7)(out), [0.0, 0.0])
    close(DetectionTarget((0, 0, 10, 10), 3)(out), [0.0, 0.0])  # no detection of that label


def test_detection_target_is_differentiable_through_the_matched_score():
    out, scores = detections(requires_grad=True)
    DetectionTarget((5, 5, 15, 15), 1)(out).sum().backward()
    assert scores.grad.tolist() == [0.0, 1.0, 0.0]


def test_detection_target_description_and_refusals():
    assert DetectionTarget((10, 20, 100.5, 200), 3).describe() == "box:10,20,100.5,200:3"
    assert DetectionTarget((10, 20, 100, 200), 3, iou=0.7).describe() == "box:10,20,100,200:3:iou0.7"
    assert DetectionTarget((10, 20, 100, 200), 3).class_index == 3
    for box in [(10, 20, 5, 200), (1, 2, 3), ("a", 1, 2, 3), (0, 0, float("nan"), 1)]:
        with pytest.raises(TargetError, match="DetectionTarget's box must be"):
            DetectionTarget(box, 1)
    with pytest.raises(TargetError, match=r"iou must be in \(0, 1\]"):
        DetectionTarget((0, 0, 1, 1), 1, iou=0)
    with pytest.raises(TargetError, match="label must be an int"):
        DetectionTarget((0, 0, 1, 1), 1.5)
    with pytest.raises(TargetError, match=r"reads a detection model's output .* returned a tensor of shape"):
        DetectionTarget((0, 0, 1, 1), 1)(Z)


def test_contrastive_by_hand():
    close(Contrastive(2, [0, 1], beta=0.5)(Z), [3 - 0.5 * 1.5, 7 - 0.5 * 4.5])
    close(Contrastive(2, [0], beta=1.0)(Z), [2.0, 3.0])
    rows = Z.tolist()
    close(Contrastive(2, [1], 0.5, base=Softmax)(Z),
          [softmax_by_hand(r, 2) - 0.5 * softmax_by_hand(r, 1) for r in rows])
    close(Contrastive(Softmax(2), [Logit(0)], 1.0)(Z), [softmax_by_hand(r, 2) - r[0] for r in rows])
    t = Contrastive(2, [0, 1], beta=0.5)
    assert t.describe() == "logit:2-0.5*mean(logit:0,logit:1)" and t.class_index == 2 and t.classes() == (2, 0, 1)
    among = Contrastive.among([4, 5, 6], beta=0.5)
    assert [x.describe() for x in among] == ["logit:4-0.5*mean(logit:5,logit:6)", "logit:5-0.5*mean(logit:4,logit:6)",
                                             "logit:6-0.5*mean(logit:4,logit:5)"]
    for bad in [dict(others=[]), dict(others="12"), dict(beta=-1.0), dict(beta=float("inf")), dict(base=len)]:
        with pytest.raises(TargetError):
            Contrastive(**{"target": 1, "others": [0], **bad})


def test_callables_are_targets():
    t = CallableTarget(lambda out: out[:, 0] * 2, name="twice-0")
    close(t(Z), [2.0, 8.0])
    assert t.describe() == "callable:twice-0" and t.class_index is None and not t.probability

    def margin(out):
        return out[:, 2] - out[:, 1]

    assert CallableTarget(margin).describe().endswith("margin")
    assert CallableTarget(margin, probability=True).probability


def test_the_grid_scores_each_row_with_its_target_in_the_rows_order():
    grid = TargetGrid([[Logit(0), Softmax(2)], [OutputIndex(1), Contrastive(2, [0], 1.0)]])
    z = Z.repeat(2, 1)  # 4 rows: one per target, b * K + k
    want = [1.0, softmax_by_hand([4.0, 5.0, 7.0], 2), 2.0, 3.0]
    close(grid.score(z, "logit"), want)
    # rows of the output in any order, several per target
    rows = torch.tensor([3, 0, 0, 2])
    close(grid.score(Z[[1, 0, 1, 0]], "logit", rows=rows), [3.0, 1.0, 4.0, 2.0])
    # each row by every target of its image: (N, K)
    each = grid.score_each(Z, "logit", images=torch.tensor([0, 1]))
    close(each, [[1.0, softmax_by_hand([1.0, 2.0, 3.0], 2)], [5.0, 3.0]])
    assert grid.describe() == [["logit:0", "softmax:2"], ["output:1", "logit:2-1*mean(logit:0)"]]
    assert grid.classes().tolist() == [[0, 2], [-1, 2]] and grid.indices is None


def test_the_grid_is_differentiable_and_reads_lists():
    z = Z.clone().requires_grad_(True)
    grid = TargetGrid([[Logit(1)], [Contrastive(2, [0, 1], 0.5)]])
    grid.score(z, "logit").sum().backward()
    assert z.grad.tolist() == [[0.0, 1.0, 0.0], [-0.25, -0.25, 1.0]]
    out, _ = detections(requires_grad=True)
    s = TargetGrid([[DetectionTarget((0, 0, 10, 10), 2)], [DetectionTarget((0, 0, 10, 10), 1)]]).score(out, "logit")
    close(s, [0.7, 0.0])


def test_the_fast_path_of_plain_class_indices_reads_as_the_objects_do():
    idx = torch.tensor([[2, 0], [1, 1]])
    fast = TargetGrid.of_indices(idx)
    slow = TargetGrid([[ClassTarget(2), ClassTarget(0)], [ClassTarget(1), ClassTarget(1)]])
    z = torch.randn(4, 3)
    for reading in ("logit", "prob"):
        for multilabel in (False, True):
            torch.testing.assert_close(fast.score(z, reading, multilabel), slow.score(z, reading, multilabel))
            torch.testing.assert_close(fast.score_each(z[:2], reading, multilabel),
                                       slow.score_each(z[:2], reading, multilabel))
    assert fast.describe() == [["class:2", "class:0"], ["class:1", "class:1"]]
    assert fast.columns(1, 2).indices.tolist() == [[0], [1]]
    assert fast.images(torch.tensor([False, True])).indices.tolist() == [[1, 1]]
    assert slow.images(slice(1, 2)).describe() == [["class:1", "class:1"]]


def test_a_target_that_returns_the_wrong_shape_is_refused_in_one_line():
    grid = TargetGrid([[CallableTarget(lambda out: out, name="whole")]])
    with pytest.raises(TargetError, match=r"target callable:whole gave scores of shape \(1, 3\) for 1 image\(s\); "
                                          r"a target returns one score per image, \(N,\)"):
        grid.score(Z[:1], "logit")


def test_as_targets_reads_target_objects():
    grid = as_targets(Softmax(1), 2, CPU, num_classes=3)
    assert grid.shape == (2, 1) and grid.indices is None and grid.describe() == [["softmax:1"]] * 2
    grid = as_targets(lambda out: out[:, 0], 2, CPU)
    assert isinstance(grid.rows[0][0], CallableTarget)
    grid = as_targets([Logit(0), 2], 2, CPU, num_classes=3)  # one per image, mixed
    assert grid.describe() == [["logit:0"], ["class:2"]] and grid.indices is None
    grid = as_targets([[ClassTarget(1), 2]] * 2, 2, CPU, num_classes=3)  # plain classes: the fast path
    assert grid.indices.tolist() == [[1, 2], [1, 2]]
    grid = as_targets([[Contrastive(0, [1, 2]), OutputIndex(0), 1, 2]] * 2, 2, CPU, num_classes=3)
    assert grid.shape == (2, 4)  # K above the class count is fine for targets that are not plain classes


@pytest.mark.parametrize("targets,message", [
    (Softmax, r"targets=<class .*Softmax'> is the class Softmax, not a target: give an instance, e\.g\. "
              r"Softmax\(243\)"),
    ([[Logit(0), "2"]] * 2, "is a string, which gfi does not read as a class"),
    ([Logit(0)], r"needs 2 entries for 2 image\(s\), got 1"),
    ([Logit(0), True], "is a bool, not a class index"),
    ([Logit(0), 1.5], "is a float, not a class index"),
    ([[Logit(0)], Logit(1)], "mix single targets and lists of targets"),
    ([[Logit(0)], [Logit(1), 2]], r"same number of targets, got counts \[1, 2\]"),
    (Logit(5), r"target class\(es\) \[5\] out of range: the model has 3 classes"),
    (Contrastive(0, [1, 7]), r"target class\(es\) \[7\] out of range"),
    ([[]] * 2, "do not fit a batch of 2 images"),
])
def test_as_targets_refuses_what_it_cannot_read_in_one_line(targets, message):
    with pytest.raises(TargetError, match=message) as info:
        as_targets(targets, 2, CPU, num_classes=3)
    assert "\n" not in str(info.value)
