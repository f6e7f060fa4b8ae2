"""gfi.frontends.quantus.explain: the native maps as a Quantus explain_func, and inside one Quantus metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gfi.constants import IMAGENET_MEAN, IMAGENET_STD
from gfi.errors import UsageError
from gfi.frontends.quantus import explain
from gfi.methods.registry import get_method
from tests.frontends.test_rule import quick


@pytest.mark.parametrize("method", ["gfi", "gradcam"])
def test_explain_is_the_native_map_through_a_classifier(setup, method):
    _, clf, p = setup
    want = get_method(method, clf, **quick(method)).explain(p, [1, 2]).maps.numpy()
    got = explain(clf, p.numpy(), np.array([1, 2]), method=method, **quick(method))
    assert got.dtype == np.float32 and got.shape == (2, 1, 16, 16)
    assert (want.reshape(2, -1).std(1) > 0.05).all(), "the maps are flat: the comparison would prove nothing"
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_normalised_inputs_of_the_raw_module_give_the_native_map_of_the_pixels(setup):
    """Quantus passes the arrays the model takes; the map is the native one of the pixels up to the
    float32 rounding of the normalisation round trip (see gfi.frontends; measured 2e-7)."""
    net, clf, p = setup
    for method, atol in (("gradcam", 1e-5), ("gfi", 1e-4)):
        want = get_method(method, clf, **quick(method)).explain(p, [1, 2]).maps.numpy()
        got = explain(net, clf.normalize(p).numpy(), np.array([1, 2]), method=method, device="cpu",
                      **quick(method))
        np.testing.assert_allclose(got, want, rtol=0, atol=atol)
    paper = get_method("gfi", clf, "paper", iters1=2, iters2=2).explain(p, [1, 2]).maps.numpy()
    got = explain(net, clf.normalize(p).numpy(), np.array([1, 2]), config="paper", iters1=2, iters2=2)
    np.testing.assert_allclose(got, paper, rtol=0, atol=1e-4)


@pytest.mark.parametrize(("method", "settings"), [("gfi", {"background": "mean"}), ("integrated-gradients", {})])
def test_mean_and_std_give_the_native_map_where_min_max_rescaling_cannot(setup, method, settings):
    """With the model's mean and std in explain_func_kwargs, GFI's "mean" background and IG's black
    baseline give the native maps of the pixel image (measured 1.2e-7, 9e-8); the min/max rescaling
    does not (measured 0.034, 0.37; the test asks > 1e-3)."""
    net, clf, p = setup
    x = clf.normalize(p).numpy()
    want = get_method(method, clf, **settings).explain(p, [1, 2]).maps.numpy()
    assert (want.reshape(2, -1).std(1) > 0.05).all(), "the maps are flat: the comparison would prove nothing"
    got = explain(net, x, np.array([1, 2]), method=method, mean=IMAGENET_MEAN, std=IMAGENET_STD, **settings)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    rescaled = explain(net, x, np.array([1, 2]), method=method, **settings)
    assert np.abs(rescaled - want).max() > 1e-3, "without mean/std the map is not the native one"


def test_in_a_quantus_metric(setup):
    quantus = pytest.importorskip("quantus", reason="quantus is a test dependency (gfi-explain[test])")
    net, clf, p = setup
    x = clf.normalize(p).numpy()
    y = np.array([1, 2])
    metric = quantus.Sparseness(disable_warnings=True, display_progressbar=False)
    for kwargs in ({"method": "gradcam"}, {"method": "integrated-gradients", "mean": IMAGENET_MEAN,
                                           "std": IMAGENET_STD}):
        scores = metric(model=net, x_batch=x, y_batch=y, a_batch=None, explain_func=explain,
                        explain_func_kwargs=kwargs, device="cpu")
        assert len(scores) == 2
        assert all(np.isfinite(s) and 0 <= s <= 1 for s in scores)  # a Gini index: in [0, 1)


def test_errors(setup):
    net, clf, p = setup
    x = clf.normalize(p).numpy()
    with pytest.raises(UsageError, match="constant"):
        explain(net, np.zeros((1, 3, 16, 16), np.float32), np.array([0]), method="gradcam")
    with pytest.raises(UsageError, match="device meta is not the model's device cpu"):
        explain(net, x, np.array([1, 2]), method="gradcam", device="meta")
    with pytest.raises(UsageError, match="3 targets for 2 inputs"):
        explain(net, x, np.array([1, 2, 3]), method="gradcam")
    with pytest.raises(UsageError, match="floating point"):
        explain(net, x.astype(np.int64), np.array([1, 2]), method="gradcam")
    with pytest.raises(UsageError, match=r"^gfi\.frontends\.quantus\.explain: model is a gfi\.Classifier, which has "
                                         r"its own"):
        explain(clf, p.numpy(), np.array([1, 2]), mean=IMAGENET_MEAN, std=IMAGENET_STD)
    with pytest.raises(UsageError, match=r"^gfi\.frontends\.quantus\.explain: give both mean= and std="):
        explain(net, x, np.array([1, 2]), std=IMAGENET_STD)
    with pytest.raises(UsageError, match=r"^gfi\.frontends\.quantus\.explain: inputs \* std \+ mean .*pass clamp=True"):
        explain(net, x * 10, np.array([1, 2]), method="gradcam", mean=IMAGENET_MEAN, std=IMAGENET_STD)
    with pytest.raises(UsageError, match=r"must be a torch\.nn\.Module"):
        explain(lambda z: z, x, np.array([1, 2]))


def test_an_all_zero_map_is_returned_as_zeros_with_a_warning_never_nan(setup):
    """On a model whose maps collapse (every weight zero, as random weights can give GFI), the front
    end returns finite zeros, their meaning (no evidence found), and warns naming the inputs and what
    Quantus makes of such an explanation; a model whose maps are not empty gives no warning."""
    import warnings

    from gfi.evidence import EmptyMapWarning
    from tests.frontends.test_rule import small_net

    net, clf, p = setup
    dead = small_net()
    with torch.no_grad():
        for w in dead.parameters():
            w.zero_()
    x = clf.normalize(p).numpy()
    for method in ("gradcam", "gfi"):
        with pytest.warns(EmptyMapWarning, match=r"input\(s\) 0, 1 \(of 2\) is all zeros.*Quantus scores such an "
                                                 r"explanation NaN"):
            got = explain(dead, x, np.array([1, 2]), method=method, **quick(method))
        assert np.isfinite(got).all() and (got == 0).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmptyMapWarning)
        assert explain(net, x, np.array([1, 2]), method="gradcam").max() > 0
