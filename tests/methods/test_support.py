"""Each method's support claims (its class attributes, which make the table in docs/METHOD.md)
are checked by running it: on a token model, on a multi-label classifier, and by counting the
images its passes push through the model for 1 and for 3 targets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from gfi import Classifier
from gfi.errors import NotApplicable
from gfi.methods.registry import BUILTIN, METHODS, get_method, support_table
from tests import cli_tiny

DOC = Path(__file__).resolve().parents[2] / "docs" / "METHOD.md"


def test_the_docs_table_is_the_generated_one():
    text = DOC.read_text()
    m = re.search(r"<!-- support-table:start -->\n(.*?)\n<!-- support-table:end -->", text, re.S)
    assert m, "docs/METHOD.md has no support-table markers"
    assert m.group(1).strip() == support_table(BUILTIN), "regenerate it: python scripts/support_table.py"


@pytest.fixture(scope="module")
def vit():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2,
                              embed_dim=32, num_heads=2, num_classes=10).eval()
    return Classifier(model, input_size=(32, 32))


@pytest.mark.parametrize("name", list(METHODS))
def test_token_model_claim(vit, name):
    explainer = get_method(name, vit, **METHODS[name].test_settings)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    if METHODS[name].supports_tokens:
        e = explainer.explain(x, [[1, 2]])
        assert e.maps.shape == (1, 2, 32, 32) and torch.isfinite(e.maps).all() and e.maps.max() > 0
    else:
        with pytest.raises(NotApplicable):
            explainer.explain(x, [[1, 2]])


def _cnn_for(name):
    """The small test CNN; for CAM one with global average pooling into one linear layer."""
    if name != "cam":
        return cli_tiny.make()
    torch.manual_seed(0)
    return Classifier(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                          torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 5)),
                      input_size=(32, 32))


def _applies(name, clf, x, targets):
    try:
        return get_method(name, clf, **METHODS[name].test_settings).explain(x, targets)
    except NotApplicable:
        return None


@pytest.mark.parametrize("name", list(METHODS))
def test_multilabel_claim(name):
    single = _cnn_for(name)
    multi = Classifier(single.model, input_size=single.input_size, multilabel=True)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    on_single, on_multi = _applies(name, single, x, [[1, 2]]), _applies(name, multi, x, [[1, 2]])
    if on_single is None:
        pytest.skip(f"{name} does not apply to the small test CNN")
    assert METHODS[name].supports_multilabel == (on_multi is not None)
    if on_multi is not None:
        with torch.no_grad():
            torch.testing.assert_close(on_multi.probs, torch.sigmoid(multi(x))[:, [1, 2]])


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ("gfi", "mask") else n
                                  for n in METHODS])
def test_what_targets_share_claim(name):
    """Images through the model for K targets, rows(K) = shared + K * own: "all" has no own rows,
    "first forward" shares only the one class-score pass, "stage 1" shares more than that."""
    clf = _cnn_for(name)
    _ = clf.inversion_layer, clf.token_layout  # layers found once per model, before counting
    rows = [0]
    handle = clf.model.register_forward_pre_hook(lambda _m, a: rows.__setitem__(0, rows[0] + a[0].shape[0]))
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    counts = []
    try:
        for k in (1, 3):
            rows[0] = 0
            if _applies(name, clf, x, [list(range(k))]) is None:
                pytest.skip(f"{name} does not apply to the small test CNN")
            counts.append(rows[0])
    finally:
        handle.remove()
    one, three = counts
    claim = METHODS[name].shares_across_targets
    if claim == "all":
        assert three == one
    elif claim == "first forward":
        assert three - 1 == 3 * (one - 1)
    else:
        assert one < three < 3 * one - 2, (one, three)
