"""torchvision architectures whose weights are set so that one planted region decides the score
(known-answer tests of the targets of gfi.targets: segmentation, detection, regression, class scores).

The construction, the same for every architecture:

* **a red gate at the stem**: the first convolution reads only the red channel, averaged over its
  window, and its batch norm's bias is a threshold, so that the stem's activation (ReLU or
  hardswish) is exactly 0, with a zero gradient, wherever the window's mean red is below about 0.6
  (hardswish is 0 below -3). The planted images have red <= 0.2 everywhere except a textured red
  patch (red >= 0.8): only the patch passes the gate.
* **nothing but the gate's output reaches the score**: every other weight is made non-negative and
  normalised (each output unit a weighted mean of its inputs), biases are 0, batch norms are the
  identity (their defaults in eval mode), the squeeze-and-excitation and LR-ASPP scale branches (the
  global poolings) are constant, and every spatial kernel keeps only its centre tap (no spreading),
  so a feature is exactly 0 wherever its input window has no red, and the score is a function of
  the patch's pixels only: pixels elsewhere have a zero gradient and masking them changes nothing.

A saliency map that follows the model must therefore put its maximum in the patch. Non-negative
weights also keep every channel's gradient >= 0, so Grad-CAM's ReLU keeps the patch (a random-sign
network could make its map 0 there).

* :func:`segmentation_model`: torchvision's ``lraspp_mobilenet_v3_large`` (2 classes: class 1 is
  "red", class 0 is constant 0), 128 x 128.
* :func:`detection_model`: torchvision's ``fasterrcnn_mobilenet_v3_large_320_fpn`` (2 classes),
  256 x 256: the RPN proposes only 64 x 64 square anchors, ranked by the red they cover (box
  regression 0, so a proposal is an anchor), and class 1's score is the sigmoid of the red pooled in
  the box; the patch is the anchor box ``DETECTION_BOX``, so the detection matching it is the patch's.
* :func:`resnet_model`: torchvision's ``resnet18`` with ``outputs`` outputs; output ``reads`` is the
  red in the image, the others constant 0 (a regression output, or class ``reads`` of a classifier).
"""

from __future__ import annotations

import torch
from torch import nn

SEGMENTATION_SIZE = 128
SEGMENTATION_BOX = (72, 16, 112, 56)  # x0, y0, x1, y1 of the planted patch
DETECTION_SIZE = 256
DETECTION_BOX = (160, 32, 224, 96)  # a 64 x 64 anchor of the stride-32 grid
RESNET_SIZE = 128
RESNET_BOX = (64, 32, 128, 96)  # whole cells of resnet's stride-32 grid


def monotone(model: nn.Module) -> nn.Module:
    """Every conv and linear weight >= 0 and normalised to sum 1 per output unit, spatial kernels
    reduced to their centre tap, biases 0; squeeze-and-excitation made a constant scale of 1."""
    from torchvision.ops.misc import SqueezeExcitation

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                w = m.weight.abs()
                if w.ndim == 4 and w.shape[-1] > 1:
                    centre = w[..., w.shape[-2] // 2, w.shape[-1] // 2].clone()
                    w = torch.zeros_like(w)
                    w[..., w.shape[-2] // 2, w.shape[-1] // 2] = centre
                m.weight.copy_(w / w.sum(tuple(range(1, w.ndim)), keepdim=True).clamp_min(1e-12))
                if m.bias is not None:
                    m.bias.zero_()
        for m in model.modules():
            if isinstance(m, SqueezeExcitation):
                m.fc2.weight.zero_()
                m.fc2.bias.fill_(3.0)  # hardsigmoid(3) = 1
    return model


def red_gate(conv: nn.Conv2d, bn: nn.BatchNorm2d, mean: float = 0.0, std: float = 1.0,
             gain: float = 20.0, threshold: float = 13.0) -> None:
    """The stem ``conv`` + ``bn``: gain * (mean red over the window) - threshold, for inputs normalised
    with the red channel's ``mean`` and ``std``."""
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, 0] = gain * std / conv.weight[0, 0].numel()
        bn.bias.fill_(gain * mean - threshold)


def planted_images(n: int, size: int, box: tuple[int, int, int, int], seed: int = 1) -> torch.Tensor:
    """(n, 3, size, size) in [0, 1]: noise with red <= 0.2, and in ``box`` (x0, y0, x1, y1) a textured
    red patch (red in [0.8, 1], green and blue <= 0.3)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    x[:, 0] *= 0.2
    x0, y0, x1, y1 = box
    x[:, 0, y0:y1, x0:x1] = 0.8 + 0.2 * torch.rand(n, y1 - y0, x1 - x0, generator=g)
    x[:, 1:, y0:y1, x0:x1] *= 0.3
    return x


def in_box(saliency: torch.Tensor, box: tuple[int, int, int, int]) -> bool:
    """Whether the (H, W) map's maximum lies in ``box`` (x0, y0, x1, y1)."""
    y, x = divmod(int(saliency.flatten().argmax()), saliency.shape[-1])
    x0, y0, x1, y1 = box
    return x0 <= x < x1 and y0 <= y < y1


def segmentation_net(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)) -> nn.Module:
    """torchvision's LR-ASPP MobileNetV3-Large segmenting red pixels as class 1 (inputs normalised with
    ``mean``/``std``); returns ``{"out": (N, 2, H, W)}`` as torchvision's segmentation models do."""
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    torch.manual_seed(0)
    net = monotone(lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=2).eval())
    red_gate(net.backbone["0"][0], net.backbone["0"][1], mean[0], std[0])
    with torch.no_grad():
        net.classifier.scale[1].weight.zero_()  # the global scale: sigmoid(0), a constant
        net.classifier.low_classifier.weight[0].zero_()
        net.classifier.high_classifier.weight[0].zero_()
    return net


def segmentation_model():
    from gfi.models.classifier import Classifier

    return Classifier(segmentation_net(), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                      input_size=(SEGMENTATION_SIZE, SEGMENTATION_SIZE), class_names=["background", "red"])


def detection_net() -> nn.Module:
    """torchvision's Faster R-CNN MobileNetV3-Large 320 FPN detecting red 64 x 64 squares as class 1 (it
    normalises inside: mean 0, std 1; images of 256 x 256 are not resized)."""
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    torch.manual_seed(0)
    s = DETECTION_SIZE
    net = fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=2, min_size=s, max_size=s, image_mean=[0.0] * 3,
        image_std=[1.0] * 3, rpn_pre_nms_top_n_test=20, rpn_post_nms_top_n_test=10, rpn_score_thresh=0.0,
        box_score_thresh=0.0).eval()
    monotone(net)
    red_gate(net.backbone.body["0"][0], net.backbone.body["0"][1])
    with torch.no_grad():
        rpn = net.rpn.head
        square64 = 1 * 5 + 1  # anchors are ratio-major, size-minor: ratio 1.0, size 64
        rpn.cls_logits.weight[torch.arange(rpn.cls_logits.out_channels) != square64] = 0
        rpn.cls_logits.bias.fill_(-10.0)
        rpn.cls_logits.bias[square64] = 0.0
        rpn.bbox_pred.weight.zero_()
        rpn.bbox_pred.bias.zero_()
        pred = net.roi_heads.box_predictor
        pred.cls_score.weight[0] = 0.0
        pred.cls_score.bias.copy_(torch.tensor([0.0, -2.0]))
        pred.bbox_pred.weight.zero_()
        pred.bbox_pred.bias.zero_()
        # class 1's logit scaled to 4 on an all-red image, so that its score is not saturated
        seen = {}
        hook = pred.cls_score.register_forward_hook(lambda _m, _a, out: seen.setdefault("z", out))
        red = torch.zeros(3, s, s)
        red[0] = 1.0
        net([red])
        hook.remove()
        pred.cls_score.weight[1] *= 6.0 / float(seen["z"][:, 1].max())
    return net


def detection_model():
    from gfi.models.classifier import Classifier

    layer = "backbone.fpn.layer_blocks.0"  # the FPN map the box head pools (stride 32)
    return Classifier(detection_net(), mean=(0.0,) * 3, std=(1.0,) * 3, input_size=(DETECTION_SIZE,) * 2,
                      inversion_layer=layer, channel_layer=layer, class_names=["background", "red"])


def resnet_net(outputs: int = 2, reads: int = 0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)) -> nn.Module:
    """torchvision's ResNet-18 whose output ``reads`` is the red in the image (4 on an all-red image)
    and whose other outputs are 0."""
    from torchvision.models import resnet18

    torch.manual_seed(0)
    net = monotone(resnet18(num_classes=outputs).eval())
    red_gate(net.conv1, net.bn1, mean[0], std[0])
    with torch.no_grad():
        keep = net.fc.weight[reads].clone()
        net.fc.weight.zero_()
        net.fc.weight[reads] = keep
        red = (torch.tensor([1.0, 0.0, 0.0]) - torch.tensor(mean)) / torch.tensor(std)
        z = net(red.view(1, 3, 1, 1).expand(1, 3, RESNET_SIZE, RESNET_SIZE))[0, reads]
        net.fc.weight[reads] *= 4.0 / float(z)
    return net


def resnet_model(outputs: int = 2, reads: int = 0):
    from gfi.models.classifier import Classifier

    return Classifier(resnet_net(outputs, reads), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                      input_size=(RESNET_SIZE, RESNET_SIZE))
