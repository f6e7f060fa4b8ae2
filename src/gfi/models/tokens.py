"""Token models (ViT, DeiT, Swin): a layer's tokens as the (N, C, h, w) map the layer methods need.

Beyond the paper (it explains CNNs): GFI's channel mask (Eq. 6-7) combines the channels of a
spatial map, Grad-CAM weights them, and neither needs the map to come from a convolution. A
vision transformer's patch tokens are such a map once they are put back on their grid, as
pytorch-grad-cam's ``reshape_transform`` does:

* ``TokenGrid``: (N, T, C) tokens -> (N, C, h, w), dropping the ``prefix_tokens`` class /
  distillation / register tokens that lead the sequence (1 for ViT, 2 for a distilled DeiT) and
  laying the other h * w tokens out row by row (the patch order of every ViT).
* ``nhwc_to_nchw``: (N, h, w, C) -> (N, C, h, w), for models whose stages keep channels last
  (timm's Swin: ``model.output_fmt == "NHWC"``).

Both are linear (a selection and a permutation), so a gradient taken with respect to the tokens
and reshaped the same way is the gradient with respect to the map (what Grad-CAM and GFI's
gradient start use).

:func:`find_token_layout` chooses the layer of a token model (used by
:func:`gfi.models.classifier.auto_layers` when a model has no NCHW map): the **input of the last
transformer block**, i.e. of the last child of the last ``nn.Sequential``/``nn.ModuleList`` whose
children map tokens to tokens of the same shape (``blocks.11`` of a timm ViT, ``vit.layers.11``
of a Hugging Face ViT, ``layers.3.blocks.1`` of a Swin). Not the last block's output: with
class-token pooling the patch tokens after the last attention no longer reach the logits, so
their gradient is zero. The prefix count is the model's ``num_prefix_tokens`` (timm) when it has
one, else the smallest count (0 to 8) whose remaining tokens tile a grid of the input's aspect
ratio (197 tokens at 224x224: 1 + 14 x 14).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from gfi.errors import GFIError
from gfi.models.layers import LayerRef, run_with_forward_hooks

__all__ = ["TokenGrid", "TokenLayout", "find_token_layout", "nhwc_to_nchw"]


class TokenShapeError(GFIError, ValueError):
    """Tokens that do not fill the grid a :class:`TokenGrid` was asked for."""


@dataclass(frozen=True)
class TokenGrid:
    """A ``reshape_transform``: (N, T, C) tokens -> (N, C, h, w) map.

    Args:
        prefix_tokens: leading tokens that are not patches (class, distillation, register
            tokens); dropped.
        grid: (h, w) of the patch grid; None = square (T - prefix_tokens must be a square).
    """

    prefix_tokens: int = 0
    grid: tuple[int, int] | None = None

    def __call__(self, tokens: Tensor) -> Tensor:
        if tokens.ndim != 3:
            raise TokenShapeError(f"TokenGrid expects (N, tokens, C) tokens, got a {tokens.ndim}-D tensor "
                                  f"{tuple(tokens.shape)}; for (N, h, w, C) use gfi.models.tokens.nhwc_to_nchw")
        n, t, c = tokens.shape
        patches = t - self.prefix_tokens
        h, w = self.grid if self.grid is not None else (math.isqrt(max(patches, 0)),) * 2
        if h * w != patches or patches <= 0:
            raise TokenShapeError(
                f"{t} tokens minus {self.prefix_tokens} prefix tokens do not fill a {h}x{w} grid; give "
                "TokenGrid(prefix_tokens=..., grid=(h, w)) for this model")
        return tokens[:, self.prefix_tokens:].reshape(n, h, w, c).permute(0, 3, 1, 2)


def nhwc_to_nchw(x: Tensor) -> Tensor:
    """A ``reshape_transform`` for channels-last stages (timm's Swin): (N, h, w, C) -> (N, C, h, w)."""
    if x.ndim != 4:
        raise TokenShapeError(f"nhwc_to_nchw expects (N, h, w, C), got a {x.ndim}-D tensor {tuple(x.shape)}")
    return x.permute(0, 3, 1, 2)


@dataclass(frozen=True)
class TokenLayout:
    """Where a token model's map is read (``layer``, the input of its last block) and how it is
    reshaped into (N, C, h, w) (``reshape_transform``)."""

    layer: LayerRef
    reshape_transform: Callable[[Tensor], Tensor]
    grid: tuple[int, int]


def _grid_of(tokens: int, input_size: tuple[int, int], prefix: int | None) -> tuple[int, tuple[int, int]] | None:
    """(prefix, (h, w)): the prefix count and grid whose h * w tokens have the input's aspect ratio."""
    height, width = input_size
    for p in [prefix] if prefix is not None else range(9):
        n = tokens - p
        if n <= 0:
            continue
        h = round(math.sqrt(n * height / width))
        if h > 0 and n % h == 0 and h * width == (n // h) * height:
            return p, (h, n // h)
    return None


def _trace_blocks(model: nn.Module, x: Tensor) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
    """(name, input shape, output shape) of every last child of a Sequential/ModuleList, in the order
    their forward calls finish (first call only)."""
    last_children = {}
    for parent_name, parent in model.named_modules():
        if isinstance(parent, nn.Sequential | nn.ModuleList) and len(parent) > 0:
            last = str(len(parent) - 1)
            last_children[f"{parent_name}.{last}" if parent_name else last] = parent[-1]
    seen: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []
    done: set[str] = set()

    def hook(name: str):
        def record(_m, args, out):
            out = out[0] if isinstance(out, tuple) and out else out
            if name not in done and args and isinstance(args[0], Tensor) and isinstance(out, Tensor):
                done.add(name)
                seen.append((name, tuple(args[0].shape), tuple(out.shape)))
        return record

    run_with_forward_hooks(model, x, {module: hook(name) for name, module in last_children.items()})
    return seen


def find_token_layout(model: nn.Module, x: Tensor, input_size: tuple[int, int]) -> TokenLayout | None:
    """The :class:`TokenLayout` of a token model for normalised input ``x`` (one image), or None when
    the model has no transformer blocks of tokens (see the module's docstring for the rule)."""
    nhwc = getattr(model, "output_fmt", None) == "NHWC"
    prefix = getattr(model, "num_prefix_tokens", None)
    prefix = int(prefix) if isinstance(prefix, int) else None
    for name, shape_in, shape_out in reversed(_trace_blocks(model, x)):
        if shape_in != shape_out:
            continue
        if nhwc and len(shape_out) == 4 and min(shape_out[1:3]) > 1:
            return TokenLayout(LayerRef(name, use_input=True), nhwc_to_nchw, (shape_out[1], shape_out[2]))
        if not nhwc and len(shape_out) == 3:
            found = _grid_of(shape_out[1], input_size, prefix)
            if found is not None:
                p, grid = found
                return TokenLayout(LayerRef(name, use_input=True), TokenGrid(p, grid), grid)
    return None
