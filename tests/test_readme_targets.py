"""The README's example of every kind of target ("What to explain: targets"), run as written, with
torchvision models whose weights make one planted red patch decide the score in place of the user's
(tests/methods/target_nets.py): each map's maximum must lie in the patch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.methods import target_nets as nets
from tests.test_readme_channels import README, readme_block

pytest.importorskip("torchvision")


def save(path: str, image: torch.Tensor) -> None:
    Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)


def test_the_readme_example_of_every_kind_of_target_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save("street.png", nets.planted_images(1, nets.SEGMENTATION_SIZE, nets.SEGMENTATION_BOX)[0])
    save("boxes.png", nets.planted_images(1, nets.DETECTION_SIZE, nets.DETECTION_BOX)[0])
    save("part.png", nets.planted_images(1, nets.RESNET_SIZE, nets.RESNET_BOX)[0])
    names = {
        "clf": nets.resnet_model(outputs=1000, reads=281),  # a classifier whose class 281 is the red patch
        "x": nets.planted_images(2, nets.RESNET_SIZE, nets.RESNET_BOX),
        "seg_net": nets.segmentation_net(),
        "detector": nets.detection_net(),
        "regressor": nets.resnet_net(outputs=2, reads=0),
    }
    exec(compile(readme_block("SegmentationTarget(1, mask)"), str(README), "exec"), names)
    boxes = {"e_logit": nets.RESNET_BOX, "e_prob": nets.RESNET_BOX, "e_rival": nets.RESNET_BOX,
             "e_fn": nets.RESNET_BOX, "e_seg": nets.SEGMENTATION_BOX, "e_box": nets.DETECTION_BOX,
             "e_reg": nets.RESNET_BOX}
    for name, box in boxes.items():
        e = names[name]
        assert not e.collapsed.any(), name
        assert all(nets.in_box(e.maps[b, 0], box) for b in range(len(e))), name
    assert names["e_prob"].target_descriptions == [["softmax:281"]] * 2
    assert names["e_rival"].target_descriptions == [["logit:281-0.5*mean(logit:282,logit:285)"]] * 2
    assert names["e_box"].target_descriptions == [["box:160,32,224,96:1"]]
    assert names["e_reg"].targets.tolist() == [[-1]]
