"""Extra forward arguments (Captum's ``additional_forward_args``): ``explain(..., forward_args=,
forward_kwargs=)`` on a model whose forward takes ``(x, side)`` and looks at the left half of the
image for side 0, the right half for side 1 (tests/methods/channel_nets.py)."""

from __future__ import annotations

import pytest
import torch

from gfi.errors import UsageError
from gfi.methods.base import Explanation
from gfi.methods.registry import METHODS, get_method
from tests.methods.channel_nets import half_classifier, half_of

# the perturbation methods' test settings (their classes' test_settings) are tuned to a quadrant, not a half
FAST_HALF = {**{name: cls.test_settings for name, cls in METHODS.items()},
             "mask": {"iterations": 100, "mask_size": 16, "mask_blur_sigma": 1.0, "blur_sigma": 3.0},
             "extremal": {"iterations": 100, "step": 2, "sigma": 3.0, "areas": (0.3,), "jitter": False}}


def images(n: int = 2) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(3))


def test_the_answer_depends_on_the_argument():
    clf, x = half_classifier(), images()
    with torch.no_grad(), clf.passing(None):
        left, right = clf.model(clf.normalize(x), 0), clf.model(clf.normalize(x), 1)
    assert not torch.allclose(left, right)


@pytest.mark.parametrize("name", list(METHODS))
def test_a_per_image_argument_follows_its_image_through_every_method(name):
    """B = 2 with side = [0, 1]: the maps are those of the model with side fixed, image by image, and
    image 0's map peaks in the left half, image 1's in the right."""
    clf, x = half_classifier(), images()
    settings = FAST_HALF.get(name, {})
    e = get_method(name, clf, **settings).explain(x, 0, forward_args=(torch.tensor([0.0, 1.0]),))
    bound = [get_method(name, half_classifier(side=b), **settings).explain(x[b:b + 1], 0) for b in range(2)]
    torch.testing.assert_close(e.maps, torch.cat([f.maps for f in bound]))
    torch.testing.assert_close(e.probs, torch.cat([f.probs for f in bound]))
    # RISE's 500 masks see too little of this model's faint signal to place its maximum; the centre
    # prior sees no image
    if name not in ("rise", "center"):
        assert [half_of(e.maps[b, 0]) for b in range(2)] == [0, 1], name


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ("extremal", "mask") else n
                                  for n in METHODS])  # those two: their published schedules, 40-60 s
def test_batch_1_and_non_tensor_arguments_reach_every_row(name):
    """A batch-1 tensor is expanded to the rows of each forward (the model refuses a tensor of another
    number of rows), for one image and as one value for a batch; a number is passed as it is."""
    clf, x = half_classifier(), images()
    settings = FAST_HALF.get(name, {})
    explainer = get_method(name, clf, **settings)
    one = explainer.explain(x[:1], 0, forward_args=torch.tensor([1.0]))
    both = explainer.explain(x, 0, forward_args=torch.tensor([1.0]))
    plain = explainer.explain(x, 0, forward_args=0)
    named = explainer.explain(x, 0, forward_kwargs={"side": torch.tensor([1.0])})
    right = get_method(name, half_classifier(side=1), **settings).explain(x, 0)
    left = get_method(name, half_classifier(side=0), **settings).explain(x, 0)
    torch.testing.assert_close(one.maps, right.maps[:1])
    torch.testing.assert_close(both.maps, right.maps)
    torch.testing.assert_close(named.maps, right.maps)
    torch.testing.assert_close(plain.maps, left.maps)
    if name in ("gfi", "gradcam", "gradient", "integrated-gradients"):
        assert [half_of(both.maps[b, 0]) for b in range(2)] == [1, 1]
        assert [half_of(plain.maps[b, 0]) for b in range(2)] == [0, 0]


def test_top1_targets_are_each_images_own_with_its_argument():
    clf, x = half_classifier(), images()
    e = get_method("gradcam", clf).explain(x, forward_args=(torch.tensor([0.0, 1.0]),))
    with torch.no_grad():
        expected = [int(clf.model(clf.normalize(x[b:b + 1]), b).argmax()) for b in range(2)]
    assert e.targets[:, 0].tolist() == expected


def test_automatic_layers_are_found_with_the_arguments():
    """The probes that find l0 and l1 call the model too: they get the arguments."""
    clf, x = half_classifier(), images(1)
    e = get_method("gfi", clf, iters1=5, iters2=5).explain(x, 0, forward_args=(1,))
    assert str(clf.inversion_layer) == "relu" and torch.isfinite(e.maps).all()


def test_no_hook_stays_and_the_callers_tensor_is_left_alone():
    clf, x = half_classifier(), images()
    side = torch.tensor([0.0, 1.0], requires_grad=True)
    get_method("gfi", clf, iters1=3, iters2=3).explain(x, 0, forward_args=(side,))
    assert side.grad is None and not clf.model._forward_pre_hooks
    with torch.inference_mode():
        frozen_side = torch.tensor([1.0])
    get_method("gradient", clf).explain(x[:1], 0, forward_args=(frozen_side,))


def test_targets_are_checked_for_the_whole_batch_before_the_one_at_a_time_calls():
    clf, x = half_classifier(), images()
    from gfi.errors import TargetError

    with pytest.raises(TargetError, match="out of range"):
        get_method("gradcam", clf).explain(x, [0, 7], forward_args=(torch.tensor([0.0, 1.0]),))


def test_bad_forward_kwargs_are_one_line_errors():
    clf, x = half_classifier(), images(1)
    with pytest.raises(UsageError, match="forward_kwargs must be a mapping"):
        get_method("gradient", clf).explain(x, 0, forward_kwargs=[1])


def test_explanations_concatenate_field_by_field():
    clf, x = half_classifier(), images()
    gfi = get_method("gfi", clf, iters1=4, iters2=4)
    whole = gfi.explain(x, [[0, 1], [0, 1]], forward_args=1)
    parts = Explanation.cat([gfi.explain(x[b:b + 1], [[0, 1]], forward_args=1) for b in range(2)])
    for field in ("maps", "targets", "probs", "stage1_map", "weights", "stage1_weights", "prob_kept", "prob_removed",
                  "collapsed", "stage1_collapsed"):
        torch.testing.assert_close(getattr(parts, field), getattr(whole, field), msg=field)
    assert parts.loss_history.keys() == whole.loss_history.keys()
    for key in whole.loss_history:
        torch.testing.assert_close(parts.loss_history[key], whole.loss_history[key])


def test_the_memory_probe_gets_the_arguments():
    """More than CHECKED_ROWS image-target rows: the memory probe (a forward of a blank image) runs
    with the arguments too."""
    from gfi.models.memory import CHECKED_ROWS

    clf, x = half_classifier(), images(12)
    assert CHECKED_ROWS < 12 * 3
    e = get_method("gradient", clf).explain(x, [[0, 1, 2]] * 12, forward_args=torch.tensor([1.0]))
    assert e.maps.shape == (12, 3, 16, 16)
