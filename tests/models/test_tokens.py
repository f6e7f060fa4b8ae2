"""Token models: reshape transforms by hand, the automatic layer of timm / Hugging Face ViTs,
DeiT and Swin, and maps on a token model whose right answer is known."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gfi import Classifier, get_method
from gfi.masks.channel_mask import upsample
from gfi.models.tokens import TokenGrid, TokenShapeError, nhwc_to_nchw


def test_token_grid_drops_prefix_and_lays_tokens_out_row_by_row():
    # batch 1, 1 class token + 2x3 patches, 2 channels: token i has channel values (i, 10 i)
    tokens = torch.stack([torch.arange(7.0), 10 * torch.arange(7.0)], -1)[None]
    out = TokenGrid(prefix_tokens=1, grid=(2, 3))(tokens)
    assert out.shape == (1, 2, 2, 3)
    assert out[0, 0].tolist() == [[1, 2, 3], [4, 5, 6]]  # patch 1 at the top left, row-major
    assert out[0, 1].tolist() == [[10, 20, 30], [40, 50, 60]]


def test_token_grid_square_by_default_and_errors_name_the_fix():
    assert TokenGrid(prefix_tokens=2)(torch.zeros(3, 18, 5)).shape == (3, 5, 4, 4)
    with pytest.raises(TokenShapeError, match=r"17 tokens minus 0 prefix tokens do not fill.*prefix_tokens=\.\.\."):
        TokenGrid()(torch.zeros(1, 17, 4))
    with pytest.raises(TokenShapeError, match="nhwc_to_nchw"):
        TokenGrid()(torch.zeros(1, 4, 4, 4))


def test_nhwc_to_nchw_by_hand():
    x = torch.arange(24.0).view(1, 2, 3, 4)  # (N, h, w, C)
    out = nhwc_to_nchw(x)
    assert out.shape == (1, 4, 2, 3) and out[0, 2, 1, 0] == x[0, 1, 0, 2]


class ColourTokens(nn.Module):
    """A token model whose answer is known: 8x8 patches embedded as their mean colour, a class
    token, two residual blocks that start as the identity, and a head that reads the mean of the
    patch tokens: class c's logit is (10 x) the image's mean normalised colour channel c."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 3, 8, stride=8, bias=False)
        with torch.no_grad():
            self.patch.weight.zero_()
            for c in range(3):
                self.patch.weight[c, c] = 1 / 64
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 3))
        self.blocks = nn.Sequential(*(_ZeroBlock() for _ in range(2)))
        self.head = nn.Linear(3, 3)
        with torch.no_grad():
            self.head.weight.copy_(10 * torch.eye(3))
            self.head.bias.zero_()

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = self.blocks(torch.cat([self.cls_token.expand(len(t), -1, -1), t], 1))
        return self.head(t[:, 1:].mean(1))


class _ZeroBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = nn.Linear(3, 3)
        nn.init.zeros_(self.mlp.weight)
        nn.init.zeros_(self.mlp.bias)

    def forward(self, x):
        return x + self.mlp(x)


def test_auto_layout_of_a_hand_made_token_model():
    clf = Classifier(ColourTokens(), input_size=(64, 64))
    assert str(clf.inversion_layer) == "blocks.1:input" and clf.channel_layer == clf.inversion_layer
    assert clf.reshape_transform == TokenGrid(1, (8, 8))


@pytest.mark.parametrize("method", ["gradcam", "gfi"])
def test_token_model_map_lights_the_red_square(method):
    clf = Classifier(ColourTokens(), input_size=(64, 64))
    img = torch.full((1, 3, 64, 64), 0.5)
    img[:, :, 8:24, 40:56] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)  # a red square, top right
    settings = {"iters1": 30, "iters2": 30} if method == "gfi" else {}
    e = get_method(method, clf, **settings).explain(img, [[0]])  # class 0 = red
    m = e.maps[0, 0]
    row, col = divmod(int(m.argmax()), 64)
    assert 8 <= row < 24 and 40 <= col < 56, (method, row, col)
    assert m[8:24, 40:56].mean() > 2 * m.mean()


@pytest.fixture(scope="module")
def timm():
    return pytest.importorskip("timm")


@pytest.mark.parametrize("arch, prefix, size, kwargs", [
    ("vit_tiny_patch16_224", 1, 32, {"patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2}),
    ("deit_tiny_distilled_patch16_224", 2, 32, {"patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2}),
])
def test_timm_vit_and_deit_tokens_on_their_grid(timm, arch, prefix, size, kwargs):
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, img_size=size, num_classes=10, **kwargs)
    clf = Classifier(model, input_size=(size, size))
    # the input of the last block, not the patch embedding's conv nor a 4-D attention tensor (q/k norm)
    assert str(clf.inversion_layer) == "blocks.1:input"
    assert clf.reshape_transform == TokenGrid(prefix, (4, 4))
    x = torch.rand(2, 3, size, size)
    e = get_method("gfi", clf, iters1=3, iters2=3).explain(x, [[1, 2], [3, 4]])
    assert e.maps.shape == (2, 2, size, size) and torch.isfinite(e.maps).all()
    assert e.maps.min() >= 0 and e.maps.max() <= 1 and (e.maps.amax((-2, -1)) > 0.5).all()
    assert not torch.allclose(e.maps[:, 0], e.maps[:, 1])  # stage 2 differs per target


def test_timm_swin_channels_last_stages(timm):
    torch.manual_seed(0)
    model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=64, patch_size=4,
                              window_size=4, embed_dim=16, depths=(1, 1), num_heads=(1, 2), num_classes=10)
    clf = Classifier(model, input_size=(64, 64))
    assert str(clf.inversion_layer) == "layers.1.blocks.0:input" and clf.reshape_transform is nhwc_to_nchw
    e = get_method("gradcam", clf).explain(torch.rand(1, 3, 64, 64), [[1]])
    assert e.maps.shape == (1, 1, 64, 64) and e.maps.min() >= 0 and 0.5 < e.maps.max() <= 1


def test_grad_cam_on_tokens_is_the_hand_computed_map(timm):
    """Grad-CAM of a ViT = relu(sum_c mean_hw(dy/dA_c) A_c) on the patch grid, computed here by hand
    from the tokens at the input of the last block."""
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2,
                              embed_dim=32, num_heads=2, num_classes=10).eval()
    clf = Classifier(model, input_size=(32, 32))
    x = torch.rand(1, 3, 32, 32)
    store = {}
    handle = model.blocks[1].register_forward_pre_hook(lambda _m, a: store.__setitem__("t", a[0]))
    try:
        logit = model(clf.normalize(x))[0, 3]
    finally:
        handle.remove()
    grad = torch.autograd.grad(logit, store["t"])[0]
    a, g = store["t"][0, 1:].detach(), grad[0, 1:]  # (16, C) patch tokens
    cam = torch.relu((a * g.mean(0)).sum(1)).view(4, 4)
    cam = (cam - cam.min()) / (cam.max() - cam.min())
    e = get_method("gradcam", clf).explain(x, [[3]])
    torch.testing.assert_close(e.maps[0, 0], upsample(cam[None, None], (32, 32))[0, 0], atol=1e-5, rtol=0)
