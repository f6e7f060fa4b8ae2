"""The README's example of grey and multi-channel models and of extra forward arguments ("Your own
model"), run as written, with small planted models in place of the user's modules
(tests/methods/channel_nets.py): each map's maximum must lie where the planted signal is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tests.methods.channel_nets import CORNERS, PATCH, HalfNet, PatchNet, half_of, patch_images

README = Path(__file__).resolve().parents[1] / "README.md"
SCALE = 7  # the planted images are 32 pixels; the README's models take 224


def readme_block(marker: str) -> str:
    """The ```python block of README.md that contains ``marker``."""
    blocks = README.read_text(encoding="utf-8").split("```python\n")[1:]
    found = [b.split("```", 1)[0] for b in blocks if marker in b.split("```", 1)[0]]
    assert len(found) == 1, f"README.md has {len(found)} python blocks with {marker!r}"
    return found[0]


def on_patch(saliency: torch.Tensor) -> bool:
    y, x = divmod(int(saliency.flatten().argmax()), saliency.shape[-1])
    r, c = CORNERS[0]
    return r * SCALE <= y < (r + PATCH) * SCALE and c * SCALE <= x < (c + PATCH) * SCALE


def big(x: torch.Tensor) -> torch.Tensor:
    return x.repeat_interleave(SCALE, -2).repeat_interleave(SCALE, -1)


def test_the_readme_example_of_grey_multichannel_and_two_input_models_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scan = big(patch_images(1)[0, 0])
    Image.fromarray((scan.numpy() * 65535).round().astype(np.uint16)).save("scan.png")  # 16-bit grey
    np.save("field.npy", big(patch_images(4)[0]).numpy())
    names = {
        "grey_net": PatchNet(1, 0, (0.5,), (0.25,)),
        "rgbn_net": PatchNet(4, 3, (0.485, 0.456, 0.406, 0.3), (0.229, 0.224, 0.225, 0.2)),
        "two_input_net": HalfNet(),
    }
    exec(compile(readme_block("forward_args=(side,)"), str(README), "exec"), names)
    assert names["grey"].channels == 1 and names["rgbn"].channels == 4
    assert on_patch(names["e_grey"].maps[0, 0])
    assert Path("scan_map.png").is_file()
    assert names["e_rgbn"].maps.shape == (1, 1, 224, 224) and on_patch(names["e_rgbn"].maps[0, 0])
    assert [half_of(names["e_two"].maps[b, 0]) for b in range(2)] == [0, 1]
