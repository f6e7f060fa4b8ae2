"""Where a timm, torchvision or Hugging Face classifier keeps its final features, read from the
library's own metadata.

:func:`gfi.models.classifier.auto_layers` asks here first and falls back to its generic rule (the
last module with a spatial map; the input of the last transformer block of a token model) when
the model comes from none of these libraries or its metadata does not lead to a map. Each library
says where its *unpooled final features* are, the paper's "last pooling layer before the first fully
connected layer":

* **timm**: ``model.forward_features(x)`` is, by timm's contract, the features its head pools. l0 is
  the module whose output that tensor is, named as timm's ``feature_info`` names it when its last
  entry is that module (``layer4``, ``stages.3``, ``final_conv`` of a MobileViT; ``bn2`` of an
  EfficientNet, whose head convolution is not a ``feature_info`` stage). When the features are
  tokens (3-D, a ViT's) or channels-last stages (``output_fmt == "NHWC"``, a Swin's), the last
  ``feature_info`` entry names the stage in which the last transformer block is looked for, and
  ``num_prefix_tokens`` the class/register tokens.
* **torchvision**: a detector with a feature pyramid (Faster / Mask / Keypoint R-CNN, RetinaNet,
  FCOS) gives its finest FPN map, ``backbone.fpn.layer_blocks.0``, the map its heads read (the
  generic rule would land on the RPN's box regression). Otherwise the graph node names of
  ``torchvision.models.feature_extraction.get_graph_node_names``
  (the names torchvision's own feature extraction takes), in the order the forward pass runs them.
  Walking back from the head's global pooling (the last adaptive pooling or ``mean``; from the
  logits when there is none, as in a ViT), the first node whose module returns a spatial map or
  tokens gives l0, named by the outermost module whose output that node is: ``layer4`` of a ResNet,
  ``features`` of a VGG (not its ``avgpool``, which resizes to 7 x 7), ``encoder`` of a ViT, in
  which the last block, ``encoder.layers.encoder_layer_11``, is then looked for. A final LayerNorm
  is walked past, and a ``Permute([0, 3, 1, 2])`` marks the stages before it as channels-last (a
  Swin's ``features``, whose last block, ``features.7.1``, is then looked for).
* **Hugging Face transformers**: the base model's ``last_hidden_state`` (every vision model's
  unpooled output; the base model is ``getattr(model, model.base_model_prefix)``): l0 is the
  module whose output it is (``resnet.encoder.stages.3``, ``mobilevit.conv_1x1_exp``); for tokens
  the last block is looked for in the base model, and the config's ``patch_size`` (and the patch
  merges of ``depths``, a Swin's) give the patch grid, so the tokens before it are the prefix.

A tensor that is an activation of a batch larger than the input's (MobileViT's transformers run on
unfolded patches, batch x patch area) is never taken for features.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

__all__ = ["FeatureHint", "feature_hint"]

Layout = Literal["nchw", "nhwc", "tokens"]


@dataclass(frozen=True)
class FeatureHint:
    """What a library's metadata says about a model's final features.

    Attributes:
        source: ``"timm"``, ``"torchvision"`` or ``"transformers"``.
        module: a real module name: for ``layout="nchw"`` the module whose output is the (B, C, h, w)
            map; otherwise the module at or inside which the last transformer block is looked for.
        layout: ``"nchw"`` (a spatial map), ``"nhwc"`` (channels-last stages) or ``"tokens"`` (B, T, C).
        prefix_tokens: the leading non-patch tokens, when the metadata says (None: inferred).
    """

    source: str
    module: str
    layout: Layout
    prefix_tokens: int | None = None


def feature_hint(model: nn.Module, x: Tensor) -> FeatureHint | None:
    """The :class:`FeatureHint` of a timm, torchvision or transformers classifier for a normalised
    probe input ``x`` (batch 1, in the model's dtype; call without a graph, model in eval mode), or
    None when the model is from none of them or its metadata leads to no map."""
    kind = _library(model)
    if kind == "timm" and hasattr(model, "forward_features"):
        return _timm(model, x)
    if kind == "torchvision":
        return _torchvision(model, x)
    if kind == "transformers" and hasattr(model, "config"):
        return _transformers(model, x)
    return None


def _library(model: nn.Module) -> str | None:
    """The library whose class the model is, or derives from (a user's subclass keeps its metadata)."""
    for cls in type(model).__mro__:
        root = cls.__module__.split(".")[0]
        if root in ("timm", "torchvision", "transformers"):
            return root
    return None


# -- shapes and producers ---------------------------------------------------------------------------
def _spatial(t: Any, batch: int) -> bool:
    return isinstance(t, Tensor) and t.ndim == 4 and t.shape[0] == batch and min(t.shape[-2:]) > 1


def _tokens(t: Any, batch: int) -> bool:
    return isinstance(t, Tensor) and t.ndim == 3 and t.shape[0] == batch and t.shape[1] > 1


def _first_tensor(out: Any) -> Any:
    return out[0] if isinstance(out, tuple | list) and out else out


@dataclass
class _Call:
    """A module's first call in a traced forward pass: its output (held weakly, so tensors the pass
    frees are not kept), whether it returned its own input untouched (an ``Identity``, a ``Dropout``
    in eval mode), and the output's shape."""

    name: str
    out: Callable[[], Any]
    passthrough: bool
    shape: tuple[int, ...] | None


def _traced(model: nn.Module, run: Callable[[], Any]) -> tuple[Any, list[_Call]]:
    """``run()``'s result, and the first call of every named module in the order the calls finish."""
    calls: list[_Call] = []
    versions: dict[str, tuple[Any, int]] = {}

    def pre(name: str):
        def record(_m, args):
            if name not in versions and args and isinstance(args[0], Tensor):
                versions[name] = (args[0], args[0]._version)
        return record

    def post(name: str):
        def record(_m, args, out):
            if name in seen:
                return
            seen.add(name)
            before = versions.pop(name, None)
            passthrough = before is not None and out is before[0] and out._version == before[1]
            first = _first_tensor(out)
            ref = weakref.ref(first) if isinstance(first, Tensor) else (lambda: None)
            calls.append(_Call(name, ref, passthrough, tuple(first.shape) if isinstance(first, Tensor) else None))
        return record

    seen: set[str] = set()
    handles = []
    try:
        for name, module in model.named_modules():
            if name:
                handles.append(module.register_forward_pre_hook(pre(name)))
                handles.append(module.register_forward_hook(post(name)))
        with torch.no_grad():
            result = run()
    finally:
        for h in handles:
            h.remove()
    return result, calls


def _producer(calls: list[_Call], y: Tensor, prefer: str | None = None) -> str | None:
    """The outermost module whose output is the tensor ``y`` (modules that only pass their input on are
    skipped); ``prefer`` when it is one of them."""
    names = [c.name for c in calls if c.out() is y and not c.passthrough]
    if prefer in names:
        return prefer
    return names[-1] if names else None


# -- timm -------------------------------------------------------------------------------------------
def _timm(model: nn.Module, x: Tensor) -> FeatureHint | None:
    y, calls = _traced(model, lambda: model.forward_features(x))
    y = _first_tensor(y)
    info = getattr(model, "feature_info", None) or []
    last = info[-1].get("module") if info and isinstance(info[-1], dict) else None
    last = last if last in dict(model.named_modules()) else None
    batch = x.shape[0]
    if getattr(model, "output_fmt", None) == "NHWC":
        return FeatureHint("timm", last, "nhwc") if last and isinstance(y, Tensor) and y.ndim == 4 else None
    if _tokens(y, batch):
        prefix = getattr(model, "num_prefix_tokens", None)
        return FeatureHint("timm", last or "", "tokens", int(prefix) if isinstance(prefix, int) else None)
    if _spatial(y, batch):
        name = _producer(calls, y, prefer=last)
        return FeatureHint("timm", name, "nchw") if name else None
    return None


# -- torchvision --------------------------------------------------------------------------------------
def _graph_node_names(model: nn.Module) -> list[str] | None:
    """torchvision's eval-mode graph node names, or None when the model cannot be traced (a user's
    change that torch.fx does not follow; the generic rule then decides)."""
    from torchvision.models.feature_extraction import get_graph_node_names

    training = [(m, m.training) for m in model.modules()]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer warns about unused arguments (GoogLeNet, Inception)
            return list(get_graph_node_names(model)[1])
    except Exception:  # torch.fx raises many types on what it cannot trace; the generic rule is the answer
        return None
    finally:
        for m, mode in training:  # get_graph_node_names switches the whole model between train and eval
            m.training = mode


def _node_modules(nodes: list[str], modules: set[str]) -> list[str | None]:
    """For each graph node, the outermost module whose output it is: the shortest prefix P of its name
    that is a module and whose last node (the last one named P or P.*) is this node."""
    last: dict[str, int] = {}
    for i, node in enumerate(nodes):
        parts = node.split(".")
        for k in range(1, len(parts) + 1):
            last[".".join(parts[:k])] = i
    out: list[str | None] = []
    for i, node in enumerate(nodes):
        parts = node.split(".")
        prefixes = (".".join(parts[:k]) for k in range(1, len(parts) + 1))
        out.append(next((p for p in prefixes if p in modules and last[p] == i), None))
    return out


_POOL_OPS = {"adaptive_avg_pool2d", "adaptive_max_pool2d", "mean", "amax"}
_POOL_MODULES = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def _is_pooling(node: str, module: nn.Module | None) -> bool:
    """Whether a graph node pools a map: an adaptive pooling module (a VGG's ``avgpool``, which resizes
    to 7 x 7, is one) or a pooling function or ``mean`` called in the model's own forward."""
    if module is not None:
        return isinstance(module, _POOL_MODULES)
    op = node.rsplit(".", 1)[-1]
    op = op.rsplit("_", 1)[0] if op.rsplit("_", 1)[-1].isdigit() else op
    return op in _POOL_OPS


def _torchvision(model: nn.Module, x: Tensor) -> FeatureHint | None:
    fpn = getattr(getattr(model, "backbone", None), "fpn", None)
    if fpn is not None and len(getattr(fpn, "layer_blocks", ())):  # a detector (R-CNN, RetinaNet, FCOS): its
        return FeatureHint("torchvision", "backbone.fpn.layer_blocks.0", "nchw")  # finest FPN map, what the heads read
    nodes = _graph_node_names(model)
    if not nodes:
        return None
    _, calls = _traced(model, lambda: model(x))
    shapes = {c.name: c.shape for c in calls}
    batch = x.shape[0]
    owners = _node_modules(nodes, set(shapes))
    modules = dict(model.named_modules())
    pools = [i for i, node in enumerate(nodes) if _is_pooling(node, modules.get(node))]
    # the head pools what comes before its global pooling (the last one: squeeze-excitation blocks pool
    # too); without one (a ViT reads its class token) walk back from the logits
    end = pools[-1] if pools else len(nodes)
    nhwc = False
    for name in reversed(owners[:end]):
        shape = shapes.get(name) if name else None
        if shape is None or shape[0] != batch:
            continue
        module = modules[name]
        if _is_permute_to_nchw(module):  # a Swin's stages keep channels last and turn to NCHW here
            nhwc = True
            continue
        if isinstance(module, _PER_POSITION):  # its final norm: the map is that of the blocks before it
            continue
        if len(shape) == 4 and min(shape[1:3] if nhwc else shape[-2:]) > 1:
            return FeatureHint("torchvision", name, "nhwc" if nhwc else "nchw")
        if len(shape) == 3 and shape[1] > 1:
            prefix = 1 if isinstance(getattr(model, "class_token", None), Tensor) else None  # its ViT
            return FeatureHint("torchvision", name, "tokens", prefix)
    return None


#: modules that act on each position alone after a network's last block (a Swin's final LayerNorm)
_PER_POSITION = (nn.LayerNorm, nn.Identity, nn.Dropout)


def _is_permute_to_nchw(module: nn.Module) -> bool:
    return type(module).__name__ == "Permute" and list(getattr(module, "dims", ())) == [0, 3, 1, 2]


# -- Hugging Face transformers -------------------------------------------------------------------------
def _transformers(model: nn.Module, x: Tensor) -> FeatureHint | None:
    prefix_name = getattr(model, "base_model_prefix", "") or ""
    base = getattr(model, prefix_name, None) if prefix_name else None
    if not isinstance(base, nn.Module):
        return None
    held: dict[str, Any] = {}
    handle = base.register_forward_hook(lambda _m, _a, out: held.setdefault("out", out))
    try:
        _, calls = _traced(model, lambda: model(x))
    finally:
        handle.remove()
    out = held.get("out")
    y = getattr(out, "last_hidden_state", None)
    y = y if isinstance(y, Tensor) else _first_tensor(out)
    batch = x.shape[0]
    if _spatial(y, batch):
        name = _producer(calls, y)
        return FeatureHint("transformers", name, "nchw") if name else None
    if _tokens(y, batch):
        return FeatureHint("transformers", prefix_name, "tokens", _config_prefix(model.config, y, x))
    return None


def _config_prefix(config: Any, tokens: Tensor, x: Tensor) -> int | None:
    """The leading non-patch tokens of the last hidden state by the config: its token count minus the
    patches of the grid ``patch_size`` (times 2 per patch merge between ``depths`` stages) makes of the
    input; None when the config does not say or the count is not 0 to 8."""
    patch = getattr(config, "patch_size", None)
    patch = patch[0] if isinstance(patch, list | tuple) and patch else patch
    if not isinstance(patch, int) or patch <= 0:
        return None
    depths = getattr(config, "depths", None)
    stride = patch * 2 ** (len(depths) - 1) if isinstance(depths, list | tuple) and depths else patch
    h, w = x.shape[-2] // stride, x.shape[-1] // stride
    prefix = tokens.shape[1] - h * w
    return prefix if 0 <= prefix <= 8 else None
