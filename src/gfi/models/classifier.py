"""``Classifier``: a user's ``nn.Module`` with its preprocessing, input size, class names and layers.

Methods receive images in pixel space [0, 1]; normalisation belongs to the model and happens
inside :meth:`Classifier.forward`, so blending (Eq. 2, 4) never needs to know about it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gfi.constants import IMAGENET_MEAN, IMAGENET_STD
from gfi.errors import InputError, NotApplicable, TargetError, UsageError
from gfi.models.compiled import run_compiled
from gfi.models.forward_args import ForwardArgs
from gfi.models.layers import (
    LayerNotFoundError,
    LayerRef,
    capture,
    frozen,
    resolve_module,
    run_until,
    trace_shapes,
)
from gfi.models.metadata import feature_hint
from gfi.models.tokens import TokenLayout, find_token_layout, nhwc_to_nchw
from gfi.objectives import class_scores

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Classifier", "NotAConvNetError", "auto_layers"]


class NotAConvNetError(NotApplicable):
    """The model has no spatial feature map to build a channel mask from (e.g. a ViT)."""


class Classifier(nn.Module):
    """A classifier taking (B, C, H, W) images in [0, 1] and returning (B, n_classes) scores.

    Args:
        model: any ``nn.Module`` mapping normalised images to logits.
        mean, std: the model's input normalisation (applied inside :meth:`forward`): one value per
            channel, or one value for all. Left out: ImageNet's for a 3-channel model; a model of
            another number of channels must give its own (``mean=0, std=1`` for none).
        channels: C, the number of channels the model takes. Left out, it is read from the model
            (timm's ``in_chans``, a Hugging Face ``config.num_channels``, else the ``in_channels``
            of its first ``Conv2d``), else from the length of ``mean``/``std``, else 3 (RGB); a
            mean or std whose length contradicts the model is a one-line error (give ``channels=``).
        input_size: (H, W) the image is resized to (the whole image, no crop).
        class_names: names of the output classes, for targets by name and for outputs.
        inversion_layer: l0, the layer whose features Eq. (8) inverts. ``None`` = automatic.
        channel_layer: l1, the layer whose channels Eq. (6) combines. ``None`` = automatic.
        multilabel: scores are sigmoids of the logits (the paper's VOC model), not a softmax.
        task: what the model's output is: ``"classification"`` (N, classes) scores; ``"segmentation"``
            per-pixel class scores (N, classes, H, W), explained for a
            :class:`~gfi.targets.SegmentationTarget`; ``"detection"`` torchvision's list of
            detections, explained for a :class:`~gfi.targets.DetectionTarget`. Folder jobs read it to
            know which targets the model takes (any model takes any target in ``explain``).
        name: a label for outputs.
        reshape_transform: how a layer's activation becomes the (B, C, h, w) map the layer methods
            need (pytorch-grad-cam's argument of that name): a callable (e.g.
            :class:`gfi.models.tokens.TokenGrid` for ViT tokens), None (activations are used as
            they are), or ``"auto"``: NCHW maps as they are, and for a token model (ViT, DeiT,
            Swin) the transform :func:`gfi.models.tokens.find_token_layout` finds.

    A model whose forward returns an object with ``.logits`` (Hugging Face's
    ``ImageClassifierOutput``) is unwrapped; :meth:`from_transformers` also reads its labels and
    its processor's normalisation and size.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        mean: Sequence[float] | float | None = None,
        std: Sequence[float] | float | None = None,
        channels: int | None = None,
        input_size: tuple[int, int] = (224, 224),
        class_names: Sequence[str] | None = None,
        inversion_layer: str | LayerRef | None = None,
        channel_layer: str | LayerRef | None = None,
        multilabel: bool = False,
        name: str = "custom",
        reshape_transform: Callable[[Tensor], Tensor] | Literal["auto"] | None = "auto",
        task: Literal["classification", "segmentation", "detection"] = "classification",
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.channels, mean, std = _channels_and_normalization(model, channels, mean, std)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.class_names = list(class_names) if class_names is not None else None
        self.multilabel = multilabel
        self.name = name
        if task not in ("classification", "segmentation", "detection"):
            raise UsageError(f"task must be 'classification', 'segmentation' or 'detection', got {task!r}")
        self.task = task
        self._inversion_layer = LayerRef.parse(inversion_layer) if inversion_layer is not None else None
        self._channel_layer = LayerRef.parse(channel_layer) if channel_layer is not None else None
        if not (reshape_transform is None or reshape_transform == "auto" or callable(reshape_transform)):
            raise UsageError(f"reshape_transform must be a callable, None or 'auto', got {reshape_transform!r}")
        self._reshape = reshape_transform
        self._found: _Found | None = None  # the automatic layer and token layout, found once (_find_layers)
        self._compile = False  # the compile run option, set for one explain call (:meth:`compiling`)
        for ref in (self._inversion_layer, self._channel_layer):
            if ref is not None:
                resolve_module(model, ref)

    @classmethod
    def from_transformers(cls, model: nn.Module, processor: Any = None, *, mean: Sequence[float] | None = None,
                          std: Sequence[float] | None = None, input_size: tuple[int, int] | None = None,
                          name: str | None = None, **kwargs: Any) -> Classifier:
        """A Hugging Face ``transformers`` image classifier (``AutoModelForImageClassification``):
        its forward's ``.logits``, the class names of ``model.config.id2label``, multi-label when
        ``config.problem_type == "multi_label_classification"``, and from ``processor`` (its
        ``AutoImageProcessor``) the normalisation (``image_mean``, ``image_std``) and the input size
        (``crop_size`` when it centre-crops, else ``size``: height/width or shortest_edge). ``mean``,
        ``std``, ``input_size`` override the processor's; without a processor they are required
        (``input_size`` defaults to ``config.image_size``). Other keywords go to :class:`Classifier`.
        """
        config = getattr(model, "config", None)
        if config is None:
            raise UsageError(f"from_transformers: {type(model).__name__} has no .config; is it a transformers model?")
        if processor is not None:
            if getattr(processor, "do_normalize", True):
                mean = mean if mean is not None else getattr(processor, "image_mean", None)
                std = std if std is not None else getattr(processor, "image_std", None)
            else:
                mean = mean if mean is not None else 0.0
                std = std if std is not None else 1.0
            input_size = input_size or _processor_size(processor)
        if input_size is None and getattr(config, "image_size", None):
            size = config.image_size
            input_size = tuple(size) if isinstance(size, list | tuple) else (int(size), int(size))
        if mean is None or std is None or input_size is None:
            raise UsageError("from_transformers: pass the model's image processor "
                             "(transformers.AutoImageProcessor.from_pretrained(PATH)) or mean=, std= and input_size=")
        labels = getattr(config, "id2label", None) or {}
        names = [str(labels[i]) for i in sorted(labels, key=int)] if labels else None
        multilabel = getattr(config, "problem_type", None) == "multi_label_classification"
        return cls(model.eval(), mean=_floats(mean, "mean"), std=_floats(std, "std"),
                   input_size=(int(input_size[0]), int(input_size[1])), class_names=names,
                   multilabel=kwargs.pop("multilabel", multilabel),
                   name=name or getattr(config, "name_or_path", "") or type(model).__name__, **kwargs)

    # -- layers -------------------------------------------------------------------------------
    @property
    def inversion_layer(self) -> LayerRef:
        """l0 (Eq. 8); chosen by :func:`auto_layers` when not given."""
        if self._inversion_layer is None:
            self._inversion_layer, auto_channel = auto_layers(self)
            if self._channel_layer is None:
                self._channel_layer = auto_channel
        return self._inversion_layer

    @property
    def channel_layer(self) -> LayerRef:
        """l1 (Eq. 6); chosen by :func:`auto_layers` when not given."""
        if self._channel_layer is None:
            inversion_layer, self._channel_layer = auto_layers(self)
            if self._inversion_layer is None:
                self._inversion_layer = inversion_layer
        return self._channel_layer

    def with_layers(self, inversion_layer=None, channel_layer=None) -> Classifier:
        """A shallow copy sharing the model, with other l0 / l1."""
        clone = Classifier.__new__(Classifier)
        clone.__dict__.update(self.__dict__)
        clone._modules = dict(self._modules)
        clone._buffers = dict(self._buffers)
        if inversion_layer is not None:
            clone._inversion_layer = LayerRef.parse(inversion_layer)
            resolve_module(self.model, clone._inversion_layer)
        if channel_layer is not None:
            clone._channel_layer = LayerRef.parse(channel_layer)
            resolve_module(self.model, clone._channel_layer)
        return clone

    @property
    def channels_last_model(self) -> bool:
        """Whether the model's stages keep channels last: timm's ``output_fmt == "NHWC"`` (its Swin), or
        automatic layers found in channels-last blocks (torchvision's Swin)."""
        if getattr(self.model, "output_fmt", None) == "NHWC":
            return True
        found = self._found
        return found is not None and found.layout is not None and found.layout.reshape_transform is nhwc_to_nchw

    @property
    def token_layout(self) -> TokenLayout | None:
        """The layer and reshape of a token model (found once, with :func:`auto_layers`), or None for a
        model whose automatic layer is a spatial map (or that has none)."""
        return self._layers_found().layout

    @property
    def auto_layers_source(self) -> str:
        """Where :func:`auto_layers` found l0 and l1: ``"timm"``, ``"torchvision"`` or ``"transformers"``
        (the library's own metadata, :mod:`gfi.models.metadata`), ``"generic"`` (the generic rule), or
        ``"none"`` (no layer found)."""
        return self._layers_found().source

    def probe_input(self) -> Tensor:
        """The grey image (batch 1, :attr:`channels`, ``input_size``) the layer rules trace, normalised
        and cast to the model's dtype as :meth:`forward` casts the methods' images."""
        h, w = self.input_size
        return self.normalize(torch.full((1, self.channels, h, w), 0.5, device=self.device)).to(self.dtype)

    @property
    def background_mean(self) -> tuple[float, ...]:
        """The colour of the ``"mean"`` background p (Eq. 2, 4), one value per channel: the ImageNet
        mean colour for a 3-channel model (the paper's), else the model's own normalisation mean
        (the pixel value its normalisation maps to 0)."""
        if self.channels == 3:
            return IMAGENET_MEAN
        return tuple(float(v) for v in self.mean.flatten().tolist())

    def _layers_found(self) -> _Found:
        if self._found is None:
            with frozen(self.model), _runnable(self.dtype, self.device):
                self._found = _find_layers(self.model, self.probe_input(), self.input_size,
                                           channels_last=getattr(self.model, "output_fmt", None) == "NHWC")
        return self._found

    @property
    def reshape_transform(self) -> Callable[[Tensor], Tensor] | None:
        """The transform :meth:`as_map` applies (for ``"auto"``: the token layout's, or None)."""
        if self._reshape == "auto":
            layout = self.token_layout
            return layout.reshape_transform if layout is not None else None
        return self._reshape

    def as_map(self, activation: Tensor) -> Tensor:
        """A layer's activation as the (B, C, h, w) map of Eq. (6) and Grad-CAM: the
        ``reshape_transform`` applied (for ``"auto"``, a CNN's NCHW maps are left alone without
        tracing the model). Linear, so gradients map the same way."""
        if self._reshape == "auto" and activation.ndim == 4 and not self.channels_last_model:
            return activation
        transform = self.reshape_transform
        return transform(activation) if transform is not None else activation

    # -- forward ------------------------------------------------------------------------------
    def normalize(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    @property
    def dtype(self) -> torch.dtype:
        """The floating-point type of the model's parameters (float32 for a model without any)."""
        for p in self.model.parameters():
            if p.is_floating_point():
                return p.dtype
        return torch.float32

    @contextmanager
    def compiling(self, enabled: bool = True) -> Iterator[Classifier]:
        """Within the block, full forwards with no hook on the network run its ``torch.compile``d
        form (:mod:`gfi.models.compiled`: compiled once per network, reused across calls; passes with
        hooks stay eager; a network that cannot compile warns once and runs eagerly)."""
        before, self._compile = self._compile, enabled
        try:
            yield self
        finally:
            self._compile = before

    @contextmanager
    def passing(self, extra: ForwardArgs | None) -> Iterator[Classifier]:
        """Within the block, every call of the model (the methods' forwards, the probes that find its
        layers and measure its memory) gets ``extra``'s arguments after the images, batch-1 tensors
        expanded to the rows of each call (:mod:`gfi.models.forward_args`). A forward pre-hook on
        the model, removed afterwards whatever happens; the compiled path (``compile``) runs eagerly
        meanwhile, as for any hooked pass."""
        if not extra:
            yield self
            return
        handle = self.model.register_forward_pre_hook(extra.pre_hook, with_kwargs=True)
        try:
            yield self
        finally:
            handle.remove()

    def forward(self, x: Tensor) -> Any:
        """The model's output for (B, C, H, W) images in [0, 1]: logits (B, classes) for a classifier.
        The normalised images are cast to the model's dtype (a float16, bfloat16 or float64 model takes
        the methods' float32 images), and a tensor output comes back in the images' dtype.

        Outputs that are not (B, classes) scores are passed on for a target to read
        (:mod:`gfi.targets`): an object with ``.logits`` (Hugging Face) and a dict's ``"out"``
        (torchvision's segmentation models) are unwrapped, a list (torchvision's detection models:
        one dict per image) and any other tensor are returned as they are. Anything else is
        :class:`~gfi.errors.NotApplicable`. Each image's top-1 class and :meth:`scores` need (B, classes)."""
        z = self.normalize(x)
        dtype = self.dtype
        with _runnable(dtype, z.device):
            z = z.to(dtype) if z.dtype != dtype else z
            out = run_compiled(self.model, z) if self._compile else self.model(z)
        if not isinstance(out, Tensor) and isinstance(getattr(out, "logits", None), Tensor):
            out = out.logits  # Hugging Face's ImageClassifierOutput
        elif isinstance(out, dict) and isinstance(out.get("out"), Tensor):
            out = out["out"]  # torchvision's segmentation models
        if isinstance(out, Tensor) and out.is_floating_point() and out.dtype != x.dtype:
            out = out.to(x.dtype)
        if not (isinstance(out, Tensor) and out.ndim >= 1) and not isinstance(out, list):
            raise NotApplicable(
                f"the model returned a {type(out).__name__}; gfi reads a tensor (batch, ...), an object with "
                ".logits, a dict with 'out' (torchvision segmentation) or a list of dicts (torchvision detection). "
                "Wrap it so that forward() returns one of those."
            )
        return out

    def scores(self, logits: Tensor) -> Tensor:
        """f_c of the paper for every class: softmax probabilities, or sigmoids for a multi-label model
        (:func:`gfi.objectives.class_scores`), of (B, classes) logits; a one-line
        :class:`~gfi.errors.NotApplicable` for an output that is not (batch, classes) scores."""
        if not isinstance(logits, Tensor) or logits.ndim != 2:
            shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise NotApplicable(
                f"the model must return a 2-D (batch, classes) score tensor for class probabilities; it returned "
                f"{shape}. Explain another output with a target (gfi.targets), or wrap the model so that "
                "forward() returns the logits.")
        return class_scores(logits, self.multilabel)

    def activations(self, x: Tensor, layers: Sequence[LayerRef], *, stop: bool = True,
                    clone: bool = True) -> tuple[dict[LayerRef, Tensor], Tensor | None]:
        """Activations of ``layers`` for images ``x`` in [0, 1], each as a map (:meth:`as_map`); with
        ``stop`` the forward pass ends at the last of them (the logits are then None)."""
        with capture(self.model, layers, stop=stop, clone=clone) as store:
            out = run_until(self.forward, x)
        missing = [str(r) for r in layers if r not in store]
        if missing:
            raise LayerNotFoundError(f"layers {missing} were not reached by the forward pass; choose layers that "
                                     "the model's forward runs (`gfi layers MODEL`)")
        return {ref: self.as_map(a) for ref, a in store.items()}, out

    # -- inputs -------------------------------------------------------------------------------
    def prepare(self, images: Tensor | Sequence[Tensor]) -> Tensor:
        """Resize (C, h, w) images in [0, 1] (or a batch) to ``input_size``: the whole image, no crop.
        Images of another number of channels than the model's are refused (one line), never converted."""
        if isinstance(images, Tensor) and images.ndim == 3:
            images = [images]
        if isinstance(images, Tensor):
            if images.ndim != 4:
                raise InputError(shape_problem(images, self.channels))
            if images.shape[1] != self.channels:
                raise InputError(channel_problem(images.shape[1], self.channels))
            batch = images
            if tuple(batch.shape[-2:]) != self.input_size:
                batch = F.interpolate(batch, size=self.input_size, mode="bilinear",
                                      align_corners=False, antialias=True)
            return batch.clamp(0, 1)
        out = [self.prepare(img.unsqueeze(0)) for img in images]
        if not out:
            raise InputError("no images given")
        return torch.cat(out)

    def class_index(self, target: int | str) -> int:
        """A class index from an index or a class name (case-insensitive, spaces collapsed): a
        class's full name or one of its comma-separated synonyms (``"tabby cat"`` is 281), else a
        whole word of exactly one class's name (``"greyhound"`` is 171, "Italian greyhound": no
        other ImageNet name holds that word). An ambiguous name is an error listing the candidates
        (``"crane"`` names two classes, ``"dog"`` is a word in 14), and so is an unknown one, with
        the nearest names and the way out (``gfi classes PATTERN``, or an index)."""
        n = self.num_classes
        if isinstance(target, int) or (isinstance(target, str) and target.strip().lstrip("-").isdigit()):
            idx = int(target)
            if n is not None and not 0 <= idx < n:
                raise TargetError(f"target class {idx} is out of range: {self.name} has {n} classes (0..{n - 1})")
            return idx
        if self.class_names is None:
            raise TargetError(f"target {target!r} is a name, but {self.name} has no class names; give an index")
        key = " ".join(target.strip().lower().split())
        names = [c.lower() for c in self.class_names]
        hits = [i for i, c in enumerate(names) if c == key]  # ImageNet has two classes named "crane"
        if len(hits) == 1:
            return hits[0]
        hits = hits or [i for i, c in enumerate(names) if key in (s.strip() for s in c.split(","))]
        if len(hits) == 1:
            return hits[0]
        if hits:
            shown = "; ".join(f"{i}: {self.class_names[i]}" for i in hits[:10])
            raise TargetError(f"class name {target!r} is ambiguous: it names {len(hits)} classes ({shown}); "
                              "give the full name or an index")
        words = [i for i, c in enumerate(names) if re.search(rf"\b{re.escape(key)}\b", c)]
        if len(words) == 1:  # a whole word of one class's name only: that class
            return words[0]
        if words:
            shown = "; ".join(f"{i}: {self.class_names[i]}" for i in words[:10])
            more = f" and {len(words) - 10} more" if len(words) > 10 else ""
            raise TargetError(f"{target!r} is not a class name of {self.name}, but a word in {len(words)}: "
                              f"{shown}{more}. Give one of them (a name, a synonym, or its index); "
                              f"`gfi classes {key}` lists them all")
        import difflib

        near = difflib.get_close_matches(key, [s.strip() for c in names for s in c.split(",")], n=5, cutoff=0.6)
        hint = f" Nearest: {', '.join(near)}." if near else ""
        raise TargetError(f"unknown class name {target!r} for {self.name}.{hint} `gfi classes PATTERN` lists "
                          "the names; an index works too")

    def find_classes(self, pattern: str = "") -> list[tuple[int, str]]:
        """(index, name) of the classes whose name contains ``pattern`` (case-insensitive; all for "")."""
        key = pattern.strip().lower()
        return [(i, c) for i, c in enumerate(self.class_names or []) if key in c.lower()]

    def class_name(self, index: int) -> str:
        if self.class_names is not None and 0 <= index < len(self.class_names):
            return self.class_names[index]
        return str(index)

    @property
    def num_classes(self) -> int | None:
        return len(self.class_names) if self.class_names is not None else None

    @property
    def device(self) -> torch.device:
        for p in self.model.parameters():
            return p.device
        return self.mean.device


@contextmanager
def _runnable(dtype: torch.dtype, device: torch.device) -> Iterator[None]:
    """A half-precision model that torch cannot run on this device is :class:`NotApplicable`, one line."""
    try:
        yield
    except RuntimeError as exc:
        if dtype in (torch.float16, torch.bfloat16) and "not implemented for" in str(exc):
            raise NotApplicable(f"the model is {str(dtype).removeprefix('torch.')}, and on {device.type} "
                                f"torch cannot run it ({str(exc).splitlines()[0]}); use model.float() or run "
                                "it on a GPU") from exc
        raise


def _processor_size(processor: Any) -> tuple[int, int] | None:
    """(H, W) a Hugging Face image processor feeds its model: the crop when it centre-crops, else
    its size (height/width; a shortest_edge is taken as a square)."""
    size = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
    size = size or getattr(processor, "size", None)
    if size is None:
        return None
    if isinstance(size, int):
        return size, size
    size = dict(size)
    if "height" in size and "width" in size:
        return int(size["height"]), int(size["width"])
    if "shortest_edge" in size:
        return int(size["shortest_edge"]), int(size["shortest_edge"])
    return None


def auto_layers(classifier: Classifier) -> tuple[LayerRef, LayerRef]:
    """Choose l0 and l1 for a model without a preset (documented in docs/METHOD.md).

    l0 is the paper's "last pooling layer before the first fully connected layer": the map the
    head pools. For a timm, torchvision or Hugging Face model, the library's own metadata says where
    that is (:mod:`gfi.models.metadata`: timm's ``forward_features`` and ``feature_info``,
    torchvision's graph node names, the base model's ``last_hidden_state`` and the config). Otherwise,
    and when the metadata leads to no map, the generic rule: the module that *last* produces a 4-D
    map of the input's batch with spatial size > 1 in a forward pass (the outermost module when several
    return the same tensor). l1 is l0 (the paper's AlexNet choice), the rule that also holds for
    networks whose last stage has a single resolution.

    A token model (transformer blocks of patch tokens: ViT, DeiT, Swin, also after a CNN stem)
    gets l0 = l1 = the input of its last transformer block, reshaped into a map
    (:func:`gfi.models.tokens.find_token_layout`), not its patch-embedding convolution or a 4-D
    attention tensor; a library's metadata says in which module to look for that block.

    Found once per model (a few forward passes of a grey image), then remembered by the classifier.
    """
    found = classifier._layers_found()
    if found.layer is None:
        raise NotAConvNetError(
            f"{type(classifier.model).__name__} has no 4-D (B, C, h, w) feature map with h, w > 1 and no "
            "transformer blocks of patch tokens, so a channel mask (Eq. 6) cannot be built. Name a layer "
            "(inversion_layer=, channel_layer=) and, if its output is not (B, C, h, w), a reshape_transform "
            "(gfi.models.tokens.TokenGrid(prefix_tokens=..., grid=(h, w)) for (B, tokens, C)).")
    return found.layer, found.layer


@dataclass(frozen=True)
class _Found:
    """The automatic layer (None: none found), the token layout read at it (None: a spatial map), and
    where the choice came from (:attr:`Classifier.auto_layers_source`)."""

    layer: LayerRef | None
    layout: TokenLayout | None
    source: str


def _find_layers(model: nn.Module, x: Tensor, input_size: tuple[int, int], *, channels_last: bool) -> _Found:
    """The rule of :func:`auto_layers` for the probe ``x`` (normalised, batch 1, the model's dtype)."""
    hint = feature_hint(model, x)
    if hint is not None:
        if hint.layout == "nchw":
            return _Found(LayerRef(hint.module), None, hint.source)
        layout = find_token_layout(model, x, input_size, within=hint.module or None, nhwc=hint.layout == "nhwc",
                                   prefix_tokens=hint.prefix_tokens)
        if layout is not None:
            return _Found(layout.layer, layout, hint.source)
    layout = find_token_layout(model, x, input_size)
    if layout is not None:
        return _Found(layout.layer, layout, "generic")
    order = trace_shapes(model, x)
    spatial = [n for n, s in order if len(s) == 4 and s[0] == x.shape[0] and s[-1] > 1 and s[-2] > 1]
    if spatial and not channels_last:
        return _Found(LayerRef(spatial[-1]), None, "generic")
    return _Found(None, None, "none")


def _floats(value: Any, label: str) -> tuple[float, ...]:
    """``mean`` or ``std`` (a number, a sequence or a tensor) as a flat tuple of finite floats."""
    try:
        values = tuple(float(v) for v in torch.as_tensor(value, dtype=torch.float64).reshape(-1).tolist())
    except (TypeError, ValueError, RuntimeError) as exc:
        raise UsageError(f"{label} must be one number per channel or one for all (e.g. {label}=0.5), "
                         f"got {value!r}") from exc
    if not values or not all(math.isfinite(v) for v in values):
        raise UsageError(f"{label} must be finite numbers, one per channel or one for all, got {value!r}")
    if label == "std" and min(values) <= 0:
        raise UsageError(f"std must be positive, got {value!r}")
    return values


def model_channels(model: nn.Module) -> tuple[int, str] | None:
    """(C, where it was read) for the number of channels ``model`` takes: timm's ``in_chans``, a
    Hugging Face ``config.num_channels``, else the ``in_channels`` of its first ``Conv2d`` (in
    registration order); None when the model says nothing (no convolution)."""
    n = getattr(model, "in_chans", None)
    if isinstance(n, int) and not isinstance(n, bool) and n > 0:
        return n, f"its in_chans is {n}"
    n = getattr(getattr(model, "config", None), "num_channels", None)
    if isinstance(n, int) and not isinstance(n, bool) and n > 0:
        return n, f"its config.num_channels is {n}"
    for name, module in model.named_modules():
        n = getattr(module, "in_channels", 0) if isinstance(module, nn.Conv2d) else 0
        if n > 0:
            return n, f"its first convolution ({name or type(model).__name__}) has in_channels={n}"
    return None


def _channels_and_normalization(model: nn.Module, channels: int | None, mean: Any,
                                std: Any) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """C and the per-channel mean and std of :class:`Classifier` (the rule of its docstring)."""
    if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int) or channels < 1):
        raise UsageError(f"channels must be a positive int (1 for grey, 3 for RGB), got {channels!r}")
    given = {label: _floats(v, label) for label, v in (("mean", mean), ("std", std)) if v is not None}
    vectors = {label: len(v) for label, v in given.items() if len(v) > 1}
    if len(set(vectors.values())) > 1:
        raise UsageError(f"mean has {vectors['mean']} values and std {vectors['std']}; give both one per channel "
                         "(or one for all)")
    found = model_channels(model) if channels is None else None
    if channels is not None:
        c, why = channels, f"channels={channels}"
    elif found is not None:
        c, why = found
    elif vectors:
        c = next(iter(vectors.values()))
        why = f"mean/std have {c} values"
    else:
        c, why = 3, "RGB is assumed (the model has no convolution that says otherwise)"
    out = {}
    for label, default in (("mean", IMAGENET_MEAN), ("std", IMAGENET_STD)):
        v = given.get(label)
        if v is None:
            if c != 3:
                raise UsageError(f"a {c}-channel model needs its own input normalisation ({why}): pass mean= and "
                                 "std= (one value per channel or one for all; mean=0, std=1 for none)")
            v = default
        if len(v) == 1 or (len(v) != c and len(set(v)) == 1):
            v = (v[0],) * c  # one value for every channel
        elif len(v) != c:
            raise UsageError(f"{label} has {len(v)} values, but the model takes {c} channel(s) ({why}); give {label} "
                             f"one value per channel or one for all, or pass channels={len(v)} if it takes {len(v)}")
        out[label] = v
    return c, out["mean"], out["std"]


def shape_problem(images: Any, channels: int) -> str:
    """The one-line refusal of ``images`` that are not a 4-D (B, C, H, W) tensor."""
    if not isinstance(images, Tensor):
        return (f"images must be a (B, {channels}, H, W) tensor in [0, 1], got {type(images).__name__}; "
                "use Classifier.prepare() or gfi.load_image()")
    shape = tuple(images.shape)
    if images.ndim == 5:
        return (f"images of shape {shape} are 3-D volumes (B, C, D, H, W), which gfi does not explain: it "
                f"takes 2-D images, a (B, {channels}, H, W) tensor in [0, 1], for a model of 2-D convolutions "
                "(explain a volume's slices as images with such a model)")
    return (f"images must be a (B, {channels}, H, W) tensor in [0, 1], got {shape}; use Classifier.prepare() "
            "or gfi.load_image()")


def channel_problem(got: int, want: int) -> str:
    """The one-line refusal of images with ``got`` channels for a model that takes ``want``."""
    if want == 1:
        fix = "convert them to grey (gfi.load_image(path, channels=1) reads any image file as grey)"
    elif got == 1:
        fix = f"repeat the grey channel (images.expand(-1, {want}, -1, -1)) if that is what the model expects"
    else:
        fix = (f"give images of {want} channels (gfi.load_image(path, channels={want}) reads .npy arrays and "
               "multi-band TIFFs)")
    return (f"images have {got} channel(s), but the model takes {want}: {fix}, or build the Classifier with "
            f"channels={got} if the model takes {got}")
