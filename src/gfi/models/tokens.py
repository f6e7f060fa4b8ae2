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
:func:`gfi.models.classifier.auto_layers`): the **input of the last transformer block**, i.e. of
the child that runs last in the last list of blocks: an ``nn.Sequential``/``nn.ModuleList`` each of
whose children that runs maps tokens to tokens of the same shape and of the input's batch size
(``blocks.11`` of a timm ViT, ``encoder.layers.encoder_layer_11`` of torchvision's, ``vit.layers.11``
of a Hugging Face ViT, ``layers.3.blocks.1`` of a Swin). Names are the modules' own
(``named_modules``). When lists nest (a stage that is a list of blocks inside a list of stages of
one shape), the innermost one's last block. Tensors whose batch is not the input's are not tokens
of the image: MobileViT's transformers run on unfolded patches (batch x patch area). Not the last
block's output: with class-token pooling the patch tokens after the last attention no longer reach
the logits, so their gradient is zero. The prefix count is the one the model's library gives
(timm's ``num_prefix_tokens``, :mod:`gfi.models.metadata`) when it gives one, else the smallest
count (0 to 8) whose remaining tokens tile a grid of the input's aspect ratio (197 tokens at
224x224: 1 + 14 x 14).
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


@dataclass(frozen=True)
class _Block:
    """A block found by :func:`_trace_blocks`: its real module name, its first call's input and output
    shapes, and when that call finished (the forward pass's order)."""

    name: str
    shape_in: tuple[int, ...]
    shape_out: tuple[int, ...]
    order: int


def _trace_blocks(model: nn.Module, x: Tensor, within: str | None = None) -> list[_Block]:
    """The last block of every list of blocks, in the order their forward calls finish (first call only).

    A list of blocks is an ``nn.Sequential`` / ``nn.ModuleList`` every child of which that runs maps a
    tensor to a tensor of the same shape with the input's batch size; its last block is the child
    that runs last. Names are the modules' own (``named_modules``: torchvision's ViT calls its blocks
    ``encoder.layers.encoder_layer_11``). ``within``: only lists at or inside that module.
    """
    def inside(name: str) -> bool:
        return not within or name == within or name.startswith(within + ".")

    children: dict[nn.Module, list[str]] = {}
    parent_of: dict[str, str] = {}
    for parent_name, parent in model.named_modules():
        if not isinstance(parent, nn.Sequential | nn.ModuleList):
            continue
        for child_name, child in parent.named_children():
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            if not inside(name):
                continue
            children.setdefault(child, []).append(name)
            parent_of[name] = parent_name
    calls: dict[str, tuple[tuple[int, ...], tuple[int, ...]] | None] = {}
    order: dict[str, int] = {}
    batch = x.shape[0]

    def hook(names: list[str]):
        def record(_m, args, out):
            out = out[0] if isinstance(out, tuple) and out else out
            x_in = args[0] if args else None
            for name in names:
                if name in calls:
                    continue
                order[name] = len(order)
                same = (isinstance(x_in, Tensor) and isinstance(out, Tensor) and x_in.shape == out.shape
                        and out.ndim >= 3 and out.shape[0] == batch)
                calls[name] = (tuple(x_in.shape), tuple(out.shape)) if same else None
        return record

    run_with_forward_hooks(model, x, {module: hook(names) for module, names in children.items()})
    ran: dict[str, list[str]] = {}
    for name in sorted(calls, key=order.__getitem__):
        ran.setdefault(parent_of[name], []).append(name)
    blocks = []
    for names in ran.values():
        if all(calls[n] is not None for n in names):
            last = names[-1]
            shape_in, shape_out = calls[last]
            blocks.append(_Block(last, shape_in, shape_out, order[last]))
    return sorted(blocks, key=lambda b: b.order)


def find_token_layout(model: nn.Module, x: Tensor, input_size: tuple[int, int], *, within: str | None = None,
                      nhwc: bool | None = None, prefix_tokens: int | None = None) -> TokenLayout | None:
    """The :class:`TokenLayout` of a token model for normalised input ``x`` (one image, in the model's
    dtype), or None when the model has no transformer blocks of tokens (see the module's docstring
    for the rule).

    Args:
        within: look only at blocks at or inside this module (a library's own metadata names where
            its final features are: :mod:`gfi.models.metadata`).
        nhwc: the blocks keep channels last (None: timm's ``output_fmt == "NHWC"``).
        prefix_tokens: the count of leading non-patch tokens (None: timm's ``num_prefix_tokens``, else
            the smallest count whose remaining tokens tile a grid of the input's aspect ratio).
    """
    if nhwc is None:
        nhwc = getattr(model, "output_fmt", None) == "NHWC"
    if prefix_tokens is None:
        prefix = getattr(model, "num_prefix_tokens", None)
        prefix_tokens = int(prefix) if isinstance(prefix, int) else None

    def layout(block: _Block) -> TokenLayout | None:
        shape = block.shape_out
        if nhwc and len(shape) == 4 and min(shape[1:3]) > 1:
            return TokenLayout(LayerRef(block.name, use_input=True), nhwc_to_nchw, (shape[1], shape[2]))
        if not nhwc and len(shape) == 3:
            found = _grid_of(shape[1], input_size, prefix_tokens)
            if found is not None:
                p, grid = found
                return TokenLayout(LayerRef(block.name, use_input=True), TokenGrid(p, grid), grid)
        return None

    blocks = _trace_blocks(model, x, within)
    for block in reversed(blocks):
        found = layout(block)
        if found is None:
            continue
        # a list of stages, each a list of blocks (a one-stage Swin): the last block of the innermost list
        inner = block
        while True:
            nested = [b for b in blocks if b.name.startswith(inner.name + ".") and b.shape_in == inner.shape_in
                      and layout(b) is not None]
            if not nested:
                break
            inner = nested[-1]
        return layout(inner)
    return None
