"""Targets are never reinterpreted: ``explain(x3, [243, 1])`` on 3 images and ``explain(x, "243")``
are refused in one line naming the fix, as is K beyond the model's classes or beyond free memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gfi.errors import GFIError, TargetError
from gfi.methods.base import as_targets
from gfi.methods.registry import get_method
from gfi.models import memory

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def three(region):
    clf, images = region
    return clf, torch.cat([images, images[:1]])  # 3 images


def test_a_flat_list_of_another_length_than_the_batch_is_refused(three):
    clf, x = three
    with pytest.raises(TargetError) as info:
        get_method("gradcam", clf).explain(x, [2, 1])
    msg = str(info.value)
    assert "needs 3 entries for 3 image(s), got 2" in msg
    assert "[[c1, c2, ...]] * 3" in msg and "\n" not in msg
    with pytest.raises(TargetError, match="needs 3 entries"):
        get_method("gradcam", clf).explain(x, torch.tensor([2, 1]))


def test_a_flat_list_of_b_entries_is_one_class_per_image_and_nested_lists_are_k_per_image(three):
    clf, x = three
    e = get_method("gradcam", clf).explain(x, [2, 1, 0])
    assert e.targets.tolist() == [[2], [1], [0]]
    e = get_method("gradcam", clf).explain(x, [[2, 1]] * 3)
    assert e.targets.tolist() == [[2, 1]] * 3
    assert as_targets(np.array([1, 0, 2]), 3, CPU).indices.tolist() == [[1], [0], [2]]


@pytest.mark.parametrize("targets", ["2", "zero", b"1", ["2", "1", "0"], [["2"]] * 3])
def test_a_string_is_refused_never_split_into_digits(three, targets):
    clf, x = three
    with pytest.raises(TargetError, match="is a string, which gfi does not read as a class") as info:
        get_method("gradcam", clf).explain(x, targets)
    assert "classifier.class_index(name)" in str(info.value)


def test_the_string_243_is_not_the_classes_2_4_3():
    with pytest.raises(TargetError, match=r"give an int class index \(243, not '243'\)"):
        as_targets("243", 1, CPU, num_classes=1000)


@pytest.mark.parametrize("targets", [True, 1.0, 1.7, [1.0, 2.0, 0.0], torch.tensor([1.0, 2.0, 0.0]), {1}])
def test_bools_floats_and_other_objects_are_refused_not_truncated(targets):
    with pytest.raises(TargetError):
        as_targets(targets, 3, CPU, num_classes=10)


def test_more_targets_per_image_than_classes_is_refused(three):
    clf, x = three
    with pytest.raises(TargetError, match="4 targets per image, but the model has only 3 classes"):
        get_method("gradcam", clf).explain(x, [[0, 1, 2, 0]] * 3)


def test_the_errors_are_gfi_errors_and_value_errors():
    with pytest.raises(GFIError):
        as_targets("1", 1, CPU)
    with pytest.raises(ValueError):
        as_targets([1, 2], 3, CPU)


def test_targets_beyond_free_memory_are_refused_before_any_work(region, monkeypatch):
    clf, x = region
    x = x.repeat(20, 1, 1, 1)  # 40 images x 3 targets = 120 rows, above the unchecked 32
    per_row = memory.ROW_FACTOR * memory.activation_bytes(clf, (16, 16))
    monkeypatch.setattr(memory, "available_bytes", lambda device: int(40 * 2.5 * per_row))
    calls = []
    handle = clf.model.fc.register_forward_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(TargetError) as info:
            get_method("gradcam", clf).explain(x, [[0, 1, 2]] * 40)
    finally:
        handle.remove()
    msg = str(info.value)
    assert msg.startswith("3 targets per image of 40 image(s) of 16x16 need about")
    assert "at most 2 target(s) per image fit" in msg and "fewer targets per call" in msg
    assert calls == []  # refused before any forward (the activations were measured above, once)
    e = get_method("gradcam", clf).explain(x, [[0, 1]] * 40)  # two fit
    assert e.maps.shape == (40, 2, 16, 16)


def test_the_activation_measure_leaves_a_train_mode_model_alone(region):
    clf, _ = region
    clf.model.train()
    try:
        assert memory.activation_bytes(clf, (16, 16)) == 4 * (3 * 4 * 16 * 16 + 4 + 3)  # conv, relu, gate; pool; fc
        assert clf.model.training
    finally:
        clf.model.eval()
