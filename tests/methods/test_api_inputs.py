"""Ordinary tensors a caller may hand to ``explain`` (issue 14 case 6) and the caller's grad mode
(issue 15): an input that requires grad, a batch of 0, a float16/bfloat16/float64 model, pixels in
0..255, and every registered method under ``torch.no_grad()`` and ``torch.inference_mode()``."""

from __future__ import annotations

import copy

import pytest
import torch

from gfi.errors import NotApplicable
from gfi.methods.registry import METHODS, get_method
from tests import cli_tiny

#: GFI's test settings (every method brings its own: ``test_settings``)
QUICK = METHODS["gfi"].test_settings


@pytest.fixture
def clf():
    return cli_tiny.make()


@pytest.fixture
def x():
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_an_input_that_requires_grad_gives_the_same_maps(clf, x):
    e = get_method("gfi", clf, **QUICK)
    want = e.explain(x.clone(), [1, 2]).maps
    leaf = x.clone().requires_grad_(True)
    got = e.explain(leaf * 1.0, [1, 2]).maps  # a non-leaf with a graph, as from a user's pipeline
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    assert leaf.grad is None  # the caller's graph is untouched


def test_a_batch_of_zero_images_is_an_empty_explanation(clf):
    e = get_method("gradcam", clf).explain(torch.zeros(0, 3, 32, 32), [[1, 2]][:0])
    assert e.maps.shape == (0, 1, 32, 32) and e.targets.shape == (0, 1) and len(e) == 0
    e = get_method("gfi", clf).explain(torch.zeros(0, 3, 32, 32), torch.zeros(0, 3, dtype=torch.long))
    assert e.maps.shape == (0, 3, 32, 32)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16], ids=str)
def test_a_model_in_another_dtype_is_explained_or_refused_in_one_line(clf, x, dtype):
    ref = get_method("gfi", clf, **QUICK).explain(x, [1, 2]).maps
    other = copy.deepcopy(clf)
    other.model.to(dtype)
    try:
        maps = get_method("gfi", other, **QUICK).explain(x, [1, 2]).maps
    except NotApplicable as exc:  # a dtype torch cannot run on this device
        assert "use model.float()" in str(exc) and "\n" not in str(exc)
        return
    assert maps.dtype == torch.float32 and torch.isfinite(maps).all()
    if dtype == torch.float64:
        torch.testing.assert_close(maps, ref, atol=1e-4, rtol=0)
    else:  # half precision: the same map up to its rounding
        assert (maps - ref).abs().mean() < 0.1


@pytest.mark.parametrize("images,message", [
    (torch.rand(1, 3, 32, 32) * 255, ": divide by 255"),
    ((torch.rand(1, 3, 32, 32) - 0.45) / 0.225, ": pass images before normalisation"),
    (torch.full((1, 3, 32, 32), 1.2), "got max 1.2: clamp them to [0, 1]"),
])
def test_images_on_the_wrong_scale_are_refused_with_the_fix(clf, images, message):
    with pytest.raises(ValueError, match=r"images must be in \[0, 1\]; got") as exc:
        get_method("gradcam", clf).explain(images, 1)
    assert message in str(exc.value)


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_works_whatever_the_callers_grad_mode(clf, x, name, mode):
    explainer = get_method(name, clf, **METHODS[name].test_settings)
    try:
        want = explainer.explain(x, [1, 2]).maps
    except NotApplicable:
        pytest.skip(f"{name} does not apply to the small test CNN")
    ctx = torch.no_grad() if mode == "no_grad" else torch.inference_mode()
    with ctx:
        got = explainer.explain(x, [1, 2]).maps
    assert got.shape == want.shape == (2, 1, 32, 32)
    torch.testing.assert_close(got.float(), want.float(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_leaves_a_model_in_train_mode_as_it_was(name):
    """A model left in train mode: no method updates its BatchNorm statistics, changes its mode or
    leaves parameter gradients (the model runs frozen inside explain)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3)).train()
    from gfi import Classifier

    clf = Classifier(model, input_size=(16, 16))
    before = copy.deepcopy(model.state_dict())
    try:
        get_method(name, clf, **METHODS[name].test_settings).explain(torch.rand(1, 3, 16, 16), [[1]])
    except NotApplicable:
        pytest.skip(f"{name} does not apply to this CNN")
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # running_mean, running_var, num_batches_tracked
