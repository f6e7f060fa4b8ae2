"""A zoo of timm, torchvision and Hugging Face classifiers at tiny sizes with random weights, and a
signal planted in each.

The images: grey, with one square of random coloured checks, at the top right of the first image
and at the bottom left of the second (the same checks). The network: random weights, its batch
norms' scales measured on random checks and their means left at 0 (:func:`calibrate_batch_norm`),
so grey (0 after normalisation) gives zero features everywhere and only the square moves them.
The head: f(x) is the input of the model's last linear layer(s) (the pooled features, or the last
hidden layer of an MLP head) and d = mean over the two images of f(image) - f(grey); the head is set
to zero but for row ``TARGET``, w = 8 d / |d|^2 with a bias that gives logit -4 on grey (+4 along d
on the squares; the other classes' logits are 0). Class ``TARGET``'s score then grows with what the
square adds to the features, whatever the random network computes, and its explanation should light
the square.

Where: a random network's features at its last map are broad (its effective receptive field spans
the image), so their response to the square peaks at the square's cell or at a neighbour
(measured: efficientnet_b0's peak moves by one cell either way as the square moves by a quarter of a
cell). A map's maximum counts as on the square when it lies in the square's box widened by one cell
of the inversion layer's grid, for both images (on opposite corners, so a map that peaks at one
place, e.g. the centre, fails).

Used by ``test_zoo.py``; ``python -m tests.models.zoo [--seed=N] [ID ...]`` prints each case's layers, maxima
and times.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gfi import Classifier

NUM_CLASSES = 7
TARGET = 3
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


@dataclass(frozen=True)
class Case:
    """One architecture: ``build()`` gives the model, ``size`` the input's side, ``source`` its library."""

    id: str
    source: str
    build: Callable[[], nn.Module]
    size: int = 128


def _timm(name: str, **kwargs) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import timm

        return timm.create_model(name, pretrained=False, num_classes=NUM_CLASSES, **kwargs)
    return build


def _tv(name: str, **kwargs) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return torchvision.models.get_model(name, weights=None, num_classes=NUM_CLASSES, **kwargs)
    return build


def _hf(model: str, config: str, **kwargs) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import transformers

        cfg = getattr(transformers, config)(num_labels=NUM_CLASSES, **kwargs)
        return getattr(transformers, model)(cfg)
    return build


def _maxvit() -> nn.Module:
    """torchvision's MaxViT class at a size whose grids divide by the partition (maxvit_t's builder fixes
    partition_size=7, which needs 224 x 224 inputs)."""
    import torchvision

    return torchvision.models.MaxVit(input_size=(128, 128), stem_channels=16, partition_size=2,
                                     block_channels=[16, 32, 64, 128], block_layers=[1, 1, 1, 1], head_dim=8,
                                     stochastic_depth_prob=0.0, num_classes=NUM_CLASSES)


def _tv_vit() -> nn.Module:
    """torchvision's ViT class (vit_b_16's, whose blocks are named ``encoder.layers.encoder_layer_N``) at
    2 layers of width 64: a random 12-layer ViT-B's tokens collapse towards one vector (rank collapse of
    deep random attention), so its maps have nothing left to localise."""
    import torchvision

    return torchvision.models.VisionTransformer(image_size=128, patch_size=16, num_layers=2, num_heads=2,
                                                hidden_dim=64, mlp_dim=128, num_classes=NUM_CLASSES)


def _tv_swin() -> nn.Module:
    """torchvision's Swin class (swin_t's: channels-last stages, a final LayerNorm and Permute) at width 32."""
    import torchvision

    return torchvision.models.SwinTransformer(patch_size=[4, 4], embed_dim=32, depths=[1, 1, 2, 1],
                                              num_heads=[1, 2, 4, 8], window_size=[4, 4], num_classes=NUM_CLASSES)


_VIT = {"patch_size": 16, "embed_dim": 64, "depth": 2, "num_heads": 2}
_HF_VIT = {"image_size": 128, "patch_size": 16, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
           "intermediate_size": 128}

CASES: list[Case] = [
    # timm CNNs
    Case("timm:resnet18", "timm", _timm("resnet18")),
    Case("timm:convnext_atto", "timm", _timm("convnext_atto")),
    Case("timm:efficientnet_b0", "timm", _timm("efficientnet_b0")),
    Case("timm:tf_efficientnet_lite0", "timm", _timm("tf_efficientnet_lite0")),
    Case("timm:mobilenetv3_small_050", "timm", _timm("mobilenetv3_small_050")),
    Case("timm:regnetx_002", "timm", _timm("regnetx_002")),
    Case("timm:densenet121", "timm", _timm("densenet121")),
    Case("timm:vgg11", "timm", _timm("vgg11", mlp_ratio=0.125)),
    Case("timm:mobilevit_xxs", "timm", _timm("mobilevit_xxs")),
    # timm token models
    Case("timm:vit_tiny_patch16_224", "timm", _timm("vit_tiny_patch16_224", img_size=128, **_VIT)),
    Case("timm:deit_tiny_distilled_patch16_224", "timm",
         _timm("deit_tiny_distilled_patch16_224", img_size=128, **_VIT)),
    Case("timm:swin_tiny_patch4_window7_224", "timm",
         _timm("swin_tiny_patch4_window7_224", img_size=128, patch_size=4, window_size=4, embed_dim=32,
               depths=(1, 1, 2), num_heads=(1, 2, 4))),
    # torchvision
    Case("torchvision:resnet18", "torchvision", _tv("resnet18")),
    Case("torchvision:vgg11", "torchvision", _tv("vgg11")),
    Case("torchvision:alexnet", "torchvision", _tv("alexnet")),
    Case("torchvision:mobilenet_v2", "torchvision", _tv("mobilenet_v2")),
    Case("torchvision:mobilenet_v3_small", "torchvision", _tv("mobilenet_v3_small")),
    Case("torchvision:efficientnet_b0", "torchvision", _tv("efficientnet_b0")),
    Case("torchvision:convnext_tiny", "torchvision", _tv("convnext_tiny")),
    Case("torchvision:regnet_x_400mf", "torchvision", _tv("regnet_x_400mf")),
    Case("torchvision:densenet121", "torchvision", _tv("densenet121")),
    Case("torchvision:googlenet", "torchvision", _tv("googlenet", aux_logits=False, init_weights=True)),
    Case("torchvision:shufflenet_v2_x0_5", "torchvision", _tv("shufflenet_v2_x0_5")),
    Case("torchvision:VisionTransformer", "torchvision", _tv_vit),
    Case("torchvision:swin_t", "torchvision", _tv_swin),
    Case("torchvision:maxvit_t", "torchvision", _maxvit),
    # Hugging Face transformers, tiny configs
    Case("hf:ViT", "transformers", _hf("ViTForImageClassification", "ViTConfig", **_HF_VIT)),
    Case("hf:DeiT", "transformers", _hf("DeiTForImageClassificationWithTeacher", "DeiTConfig", **_HF_VIT)),
    Case("hf:Swin", "transformers", _hf("SwinForImageClassification", "SwinConfig", image_size=128, patch_size=4,
                                        embed_dim=16, depths=[1, 2], num_heads=[1, 2], window_size=4)),
    Case("hf:ConvNext", "transformers", _hf("ConvNextForImageClassification", "ConvNextConfig", num_stages=3,
                                            hidden_sizes=[16, 32, 64], depths=[1, 1, 1])),
    Case("hf:ResNet", "transformers", _hf("ResNetForImageClassification", "ResNetConfig", embedding_size=16,
                                          hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1])),
    Case("hf:MobileViT", "transformers", _hf("MobileViTForImageClassification", "MobileViTConfig", image_size=128,
                                             hidden_sizes=[64, 80, 96], neck_hidden_sizes=[16, 16, 24, 48, 64, 80, 320],
                                             expand_ratio=2.0)),
    Case("hf:RegNet", "transformers", _hf("RegNetForImageClassification", "RegNetConfig", embedding_size=16,
                                          hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], groups_width=8)),
]


@torch.no_grad()
def calibrate_batch_norm(model: nn.Module, images: Tensor) -> None:
    """Running statistics of every batch norm measured on ``images`` (one pass, train mode, then eval).

    A random network keeps the running statistics of its initialisation (mean 0, variance 1), so its
    batch norms in eval mode do not normalise: activations grow layer after layer until ReLU6 /
    hard-swish saturate and every image gives the same features (torchvision's MobileNets and
    EfficientNet at random initialisation). Measured statistics make the random network sane.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for m in norms:
        m.reset_parameters()  # weight 1, bias 0 (Hugging Face's MobileViT draws its weights from N(0, 0.02))
        m.momentum = None  # a cumulative average over the calibration pass
    model.train()
    try:
        model(images)
    finally:
        model.eval()
    for m in norms:
        m.running_mean.zero_()  # scale only: a grey (zero after normalisation) image stays zero


def classifier(case: Case, seed: int = 0) -> Classifier:
    """The case's model (random weights from ``seed``, batch norms calibrated on random checks and
    grey) as a :class:`Classifier` of ``case.size`` images."""
    torch.manual_seed(seed)
    model = case.build().eval()
    g = torch.Generator().manual_seed(seed + 1)
    calib = torch.cat([torch.full((2, 3, case.size, case.size), 0.5),
                       torch.rand(6, 3, case.size // 4, case.size // 4, generator=g).repeat_interleave(4, -1)
                       .repeat_interleave(4, -2)])
    calibrate_batch_norm(model, (calib - MEAN[0]) / STD[0])
    size = (case.size, case.size)
    if case.source == "transformers":
        return Classifier.from_transformers(model, mean=MEAN, std=STD, input_size=size)
    return Classifier(model, mean=MEAN, std=STD, input_size=size)


def square_image(size: int, box: tuple[int, int, int, int], seed: int = 0) -> Tensor:
    """A grey (1, 3, size, size) image with a square of random coloured 4x4 checks in ``box`` (y0, x0, y1, x1)."""
    g = torch.Generator().manual_seed(seed)
    y0, x0, y1, x1 = box
    x = torch.full((1, 3, size, size), 0.5)
    checks = torch.rand(1, 3, (y1 - y0 + 3) // 4, (x1 - x0 + 3) // 4, generator=g)
    x[..., y0:y1, x0:x1] = checks.repeat_interleave(4, -2).repeat_interleave(4, -1)[..., : y1 - y0, : x1 - x0]
    return x


def boxes_of(size: int) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """The square's box (y0, x0, y1, x1) in each image: 32 x 32 pixels at the top right, then at the
    bottom left, off the image's centre. Each box's centre lies 8 pixels from the centre of one cell
    of a /32 grid whether a network's cells are centred at 32 i (stride-2 convolutions with padding) or
    at 32 i + 16 (2 x 2 poolings), and each box covers one /16 cell (a ViT's patch) whole."""
    return (24, size - 40, 56, size - 8), (size - 56, 8, size - 24, 40)


def square_images(size: int, seed: int = 0) -> Tensor:
    """The two (2, 3, size, size) images: grey with a square of random coloured 4 x 4 checks in
    :func:`boxes_of`'s boxes."""
    g = torch.Generator().manual_seed(seed)
    checks = torch.rand(3, 8, 8, generator=g).repeat_interleave(4, -2).repeat_interleave(4, -1)
    x = torch.full((2, 3, size, size), 0.5)
    for i, (y0, x0, y1, x1) in enumerate(boxes_of(size)):
        x[i, :, y0:y1, x0:x1] = checks
    return x


def _heads(model: nn.Module) -> list[nn.Linear]:
    """The linear layers that give the logits (two for a distilled DeiT)."""
    heads = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == NUM_CLASSES]
    if not heads:
        raise AssertionError(f"{type(model).__name__}: no nn.Linear with {NUM_CLASSES} outputs")
    return heads


@torch.no_grad()
def plant(clf: Classifier, images: Tensor, scale: float = 8.0) -> None:
    """Set the head so that class ``TARGET``'s logit is -scale/2 on a grey image and grows along the
    mean difference the squares of ``images`` make to the head's input (module docstring)."""
    heads = _heads(clf.model)
    feats: dict[nn.Linear, list[Tensor]] = {h: [] for h in heads}
    handles = [h.register_forward_pre_hook(lambda m, a: feats[m].append(a[0].detach().float()))
               for h in heads]
    try:
        clf(torch.cat([torch.full_like(images[:1], 0.5), images]))
    finally:
        for h in handles:
            h.remove()
    for head in heads:
        f = feats[head][0]
        grey, d = f[0], (f[1:] - f[0]).mean(0)
        w = scale * d / d.pow(2).sum().clamp_min(1e-12)
        if head.bias is None:
            head.bias = nn.Parameter(torch.zeros(NUM_CLASSES, dtype=head.weight.dtype))
        head.weight.zero_()
        head.bias.zero_()
        head.weight[TARGET] = w.to(head.weight.dtype)
        head.bias[TARGET] = (-scale / 2 - w @ grey).to(head.bias.dtype)


def planted(case: Case, seed: int = 0) -> tuple[Classifier, Tensor]:
    """The case's classifier with the signal planted, and its two square images."""
    clf = classifier(case, seed)
    images = square_images(case.size, seed)
    plant(clf, images)
    return clf, images


def grid_cell(clf: Classifier) -> float:
    """The side, in pixels, of one cell of the inversion layer's map (its activation's grid)."""
    with torch.no_grad():
        acts, _ = clf.activations(torch.full((1, 3, *clf.input_size), 0.5), [clf.inversion_layer])
    return clf.input_size[0] / next(iter(acts.values())).shape[-2]


def argmax_yx(m: Tensor) -> tuple[int, int]:
    row, col = divmod(int(m.argmax()), m.shape[-1])
    return row, col


def on_square(maps: Tensor, size: int, cell: float) -> list[bool]:
    """For each image, whether the maximum of its (H, W) map lies in its square's box widened by ``cell``."""
    hits = []
    for m, (y0, x0, y1, x1) in zip(maps, boxes_of(size), strict=True):
        y, x = argmax_yx(m)
        hits.append(y0 - cell <= y < y1 + cell and x0 - cell <= x < x1 + cell)
    return hits


METHODS = {"gradcam": {}, "gfi": {"iters1": 2, "iters2": 5}}


def main(ids: list[str], seed: int = 0) -> None:
    from gfi import get_method

    for case in CASES:
        if ids and not any(i in case.id for i in ids):
            continue
        t0 = time.perf_counter()
        clf, images = planted(case, seed)
        with torch.no_grad():
            p = clf.scores(clf(torch.cat([torch.full_like(images[:1], 0.5), images])))[:, TARGET]
        layer, cell = clf.inversion_layer, grid_cell(clf)
        t1 = time.perf_counter()
        line = [f"{case.id:36s} {clf.auto_layers_source:12s} {layer!s:40s} cell {cell:4.1f} "
                f"p {p[0]:.3f} -> {p[1]:.2f} {p[2]:.2f} setup {t1 - t0:4.1f}s"]
        for method, kw in METHODS.items():
            t = time.perf_counter()
            maps = get_method(method, clf, **kw).explain(images, [[TARGET], [TARGET]]).maps[:, 0]
            hits = on_square(maps, case.size, cell)
            where = " ".join(str(argmax_yx(m)) for m in maps)
            line.append(f"{method} {'ok ' if all(hits) else 'OFF'} {where} {time.perf_counter() - t:4.1f}s")
        print(" | ".join(line), flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    seed = int(args.pop(0).removeprefix("--seed=")) if args and args[0].startswith("--seed=") else 0
    main(args, seed)
