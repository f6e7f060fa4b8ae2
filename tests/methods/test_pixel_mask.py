"""pixel-mask (the paper's free-mask ablation): the first step of Eq. (3) by hand, its presets."""

import torch

from gfi.methods.registry import get_method
from tests.methods.helpers import minmax
from tests.methods.region_net import SIZE


def test_pixel_mask_first_step_follows_the_sign_of_eq3s_gradient(region):
    """One Adam step of Eq. (3) from m = 0.5 moves each pixel by lr against its gradient's sign."""
    from gfi.masks.backgrounds import make_background
    from gfi.objectives import inversion_error

    clf, x = region
    e = get_method("pixel-mask", clf, iters1=1, iters2=0, alpha=1.0, lr=0.05).explain(x[:1], 0)
    m = torch.full((1, 1, SIZE, SIZE), 0.5, requires_grad=True)
    p = make_background(x[:1], "blur")
    with torch.no_grad():
        f_x = clf.model.features(x[:1])
    phi = x[:1] * m[:, 0] + p * (1 - m[:, 0])
    loss = inversion_error(clf.model.features(phi), f_x, relative=True) + 1.0 * m.mean()
    loss.sum().backward()
    stepped = 0.5 - 0.05 * torch.sign(m.grad[0, 0])
    torch.testing.assert_close(e.stage1_map[0], minmax(stepped), atol=1e-4, rtol=0)
    torch.testing.assert_close(e.maps[0, 0], e.stage1_map[0])  # no stage-2 iteration


def test_pixel_mask_paper_preset_shares_gfis_paper_readings():
    from gfi.methods.gfi import GFIConfig
    from gfi.methods.pixel_mask import PixelMask, PixelMaskSettings

    paper, gfi_paper = PixelMask.preset_config("paper"), GFIConfig.paper()
    default, gfi_default = PixelMaskSettings(), GFIConfig()
    shared = set(PixelMaskSettings.names()) & set(GFIConfig.names())
    assert shared >= {"iters1", "iters2", "lam", "score", "inversion_error", "background", "blur_kernel", "blur_sigma"}
    for key in shared:
        assert getattr(paper, key) == getattr(gfi_paper, key), key
        assert getattr(default, key) == getattr(gfi_default, key), key
