"""gfi's explainers in pytorch-grad-cam's calling convention: ``GFICAM(model, target_layers=[...])``.

A front end over :func:`gfi.methods.resolve` that takes what pytorch-grad-cam 1.5.7's ``GradCAM``
takes and is called like it: ``cam(input_tensor, targets, aug_smooth=False, eigen_smooth=False)``
returns a float32 numpy array (N, H, W) in [0, 1] at the input size; ``cam.forward(input_tensor,
targets, eigen_smooth)`` (``BaseCAM.forward``'s order), ``cam.outputs``, ``cam.device``,
``cam.activations_and_grads.release()`` and ``with GFICAM(...) as cam:`` work, so pytorch-grad-cam's
own wrappers take it as their base method (``RefineCAM(model, layers, base_method=GFICAM)``,
``SESS(model, layers, base_method=GFICAM, iters1=2)``).

**Target layers.** Each target layer is GFI's inversion layer l0 and channel layer l1 alike: GFI
runs once per layer and the layers' maps are combined as pytorch-grad-cam combines its per-layer
CAMs (``BaseCAM.aggregate_multi_layers``): their mean, min-maxed per image. Each layer's map is
already min-maxed at the layer's resolution (Eq. 7) before it is upsampled, which is
``scale_cam_image``'s order, so two layers give ``MinMax((m_A + m_B) / 2)``. One layer gives
``MinMax(m)`` (monotone: it only stretches an upsampled map whose maximum is below 1 to reach 1,
as every GradCAM map does).

**Inputs** (the rule of :mod:`gfi.frontends`): when ``model`` is a :class:`gfi.Classifier`, the
inputs are pixels in [0, 1]. Any other ``nn.Module`` takes the tensors it takes itself (e.g.
normalised, as in pytorch-grad-cam's examples): with ``mean=`` and ``std=`` (the model's
normalisation, as in torchvision's ``Normalize``) the pixels are ``input_tensor * std + mean``,
exact for every method and background; without them each call rescales its batch by the batch's
min and max so that the model sees exactly those tensors (exact for GFI's blur background and the
CAM methods only). A constant batch, which has no range, is read as pixels 0.5 that the model sees
as the given values (pytorch-grad-cam's ARCC metric calls a CAM on ``input * cam``, all zeros for an
all-zero map). Any number of channels works; 3-D volumes (N, C, D, H, W) are refused in one line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gfi.errors import UsageError
from gfi.frontends.common import check_normalization, module_name, pixels_and_classifier
from gfi.masks.channel_mask import min_max, upsample
from gfi.methods.base import PIXEL_TOLERANCE, Explanation, RunOptions
from gfi.methods.spec import resolve
from gfi.models.classifier import Classifier
from gfi.models.layers import frozen
from gfi.settings import Settings
from gfi.targets import CallableTarget, Softmax, Target, class_index_of

__all__ = ["GFICAM", "first_component", "gfi_target"]

#: pytorch-grad-cam's default ``tta_transforms`` (``Compose([HorizontalFlip(), Multiply([0.9, 1, 1.1])])``),
#: in the order ttach iterates them: (flip, factor)
DEFAULT_AUGMENTATIONS: tuple[tuple[bool, float], ...] = tuple(
    (flip, factor) for flip in (False, True) for factor in (0.9, 1.0, 1.1))


class _Augmentation:
    """One of the default augmentations, with ttach's two methods: the input tensor (N, C, H, W)
    flipped left-right or not and multiplied by ``factor``; the map flipped back."""

    def __init__(self, flip: bool, factor: float) -> None:
        self.flip, self.factor = flip, factor

    def augment_image(self, x: Tensor) -> Tensor:
        return (x.flip(3) if self.flip else x) * self.factor

    def deaugment_mask(self, mask: Tensor) -> Tensor:
        return mask.flip(3) if self.flip else mask

    def __repr__(self) -> str:
        return f"_Augmentation(flip={self.flip}, factor={self.factor})"


class _NoHooks:
    """``cam.activations_and_grads``: GFICAM keeps no hooks between calls (gfi's hooks come off at
    the end of every pass), so :meth:`release` has nothing to do; pytorch-grad-cam's wrappers call it."""

    def release(self) -> None:
        return None


def first_component(wf: Tensor, reference: Tensor) -> Tensor:
    """Each image's weighted channels ``wf`` (B, C, h, w) projected on their first principal component:
    the positions are the samples and the channels the variables, each channel centred, and the
    projection is on the first right singular vector (what pytorch-grad-cam's ``get_2d_projection``
    computes for ``eigen_smooth``). A singular vector's sign is arbitrary, so it is chosen here to
    agree with ``reference`` (B, h, w) (a positive covariance), e.g. Eq. (6)'s sum ``sum_i w_i f_i``;
    a projection with zero covariance is left as the SVD gives it. Returns (B, h, w); one batched
    SVD, no loop over images."""
    b, _, h, w = wf.shape
    a = wf.nan_to_num(0.0).flatten(2).transpose(1, 2)  # (B, hw, C)
    a = a - a.mean(1, keepdim=True)
    _, _, vh = torch.linalg.svd(a, full_matrices=False)  # vh: (B, min(hw, C), C)
    proj = (a @ vh[:, 0, :, None]).squeeze(-1)  # (B, hw)
    ref = reference.flatten(1)
    agree = (proj * (ref - ref.mean(1, keepdim=True))).sum(1, keepdim=True)
    return (proj * torch.where(agree < 0, -1.0, 1.0).to(proj.dtype)).view(b, h, w)


def gfi_target(target: Callable[[Any], Any]) -> Callable[[Any], Tensor]:
    """pytorch-grad-cam's ``target`` as a gfi target. pytorch-grad-cam calls a target on one image's
    output (``outputs[i]``: a tensor row without the batch dimension, or the i-th dict of a
    detector's list) and takes its score, a 0-d or 1-element tensor. The function returned takes
    the output of a batch (a tensor with the batch first, or a list with one item per image) and
    returns the (N,) scores, one call of ``target`` per image, each still in the graph. A score of
    more than one element is a one-line :class:`~gfi.errors.UsageError` naming its shape."""
    name = type(target).__name__ if not hasattr(target, "__qualname__") else target.__qualname__

    def score(output: Any) -> Tensor:
        if not isinstance(output, Tensor | list | tuple):
            raise UsageError(f"GFICAM: the model returned a {type(output).__name__}; a pytorch-grad-cam target "
                             "reads a tensor (batch first) or a list with one item per image")
        rows = output if isinstance(output, list | tuple) else output.unbind(0)
        values = []
        for row in rows:
            s = target(row)
            s = s if isinstance(s, Tensor) else torch.as_tensor(s)
            if s.numel() != 1:
                raise UsageError(f"GFICAM: target {name} returned a score of shape {tuple(s.shape)} for one "
                                 "image; a target must return one number per image")
            values.append(s.reshape(()))
        return torch.stack(values) if values else torch.zeros(0)

    score.__qualname__ = name
    return score


def _peer_targets() -> dict[str, type]:
    """pytorch-grad-cam's target classes by name (empty when grad-cam is not installed)."""
    from importlib.util import find_spec

    if find_spec("pytorch_grad_cam") is None:
        return {}
    from pytorch_grad_cam.utils import model_targets

    names = ("ClassifierOutputTarget", "ClassifierOutputSoftmaxTarget", "SoftmaxOutputTarget",
             "RawScoresOutputTarget")
    return {n: getattr(model_targets, n) for n in names if hasattr(model_targets, n)}


class GFICAM:
    """Guided Feature Inversion (or any gfi method) called like pytorch-grad-cam's ``GradCAM``.

    Args:
        model: a :class:`gfi.Classifier` (inputs are pixels in [0, 1]) or the raw ``nn.Module``
            (inputs are the tensors it takes; see :mod:`gfi.frontends` for the exact rule). Its
            train/eval mode is left as it is (each pass runs in eval mode and restores it;
            pytorch-grad-cam leaves the model in eval mode).
        target_layers: a non-empty list of modules of ``model`` (found by identity in
            ``named_modules()``). Each is GFI's l0 and l1 (for ``method="gradcam"``, the layer
            Grad-CAM reads); the method runs once per layer and the maps are averaged as
            pytorch-grad-cam averages its layers (see the module's docstring).
        reshape_transform: passed to ``gfi.Classifier(..., reshape_transform=...)`` for a raw module
            when not None (for a ``gfi.Classifier``, give it to the Classifier itself).
        tta_transforms: the augmentations of ``aug_smooth`` (a ``ttach.Compose``, or any iterable of
            objects with ``augment_image`` and ``deaugment_mask``); None: pytorch-grad-cam's default,
            a left-right flip times the factors 0.9, 1, 1.1 (6 passes; ttach is not needed for it).
        method: any name of :data:`gfi.methods.registry.METHODS` (default ``"gfi"``).
        config: the method's settings object or a preset name.
        options: the :class:`gfi.RunOptions` to start from (how fast, never what the map is).
        mean, std: the model's input normalisation (one number per channel, or one for all; give
            both or neither; refused with a ``gfi.Classifier``, which has its own): the pixels are
            ``input_tensor * std + mean``, which must lie in [0, 1] (to 1e-3).
        clamp: with ``mean``/``std``, clamp the pixels to [0, 1] instead of refusing inputs outside;
            the model then sees the clamped images.
        **settings: overrides of the method's settings or of :class:`gfi.RunOptions` (e.g.
            ``iters1=2``); an unknown name is an error here, so a wrapper's misspelt keyword fails
            when the wrapper makes its base method.

    Attributes:
        outputs: the model's outputs on the last call's ``input_tensor`` (detached; after
            ``aug_smooth`` too, where pytorch-grad-cam leaves those of its last augmented copy).
        device: the device of the model's parameters (the CPU for a model without any); inputs
            are moved there.
    """

    def __init__(self, model: nn.Module, target_layers: Sequence[nn.Module],
                 reshape_transform: Callable | None = None, *, tta_transforms: Any = None, method: str = "gfi",
                 config: Settings | str | None = None, options: RunOptions | None = None,
                 mean: Sequence[float] | float | None = None, std: Sequence[float] | float | None = None,
                 clamp: bool = False, **settings: Any) -> None:
        if not isinstance(model, nn.Module):
            raise UsageError(f"GFICAM: model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(target_layers, nn.Module) or not isinstance(target_layers, Sequence) or not target_layers:
            got = ("a module, not a list" if isinstance(target_layers, nn.Module)
                   else "an empty list" if isinstance(target_layers, Sequence) else type(target_layers).__name__)
            raise UsageError(f"GFICAM: target_layers must be a list of the model's layers, got {got}; pass "
                             "target_layers=[layer], e.g. [model.layer4[-1]]")
        self.model = model
        self.target_layers = list(target_layers)
        self.reshape_transform = reshape_transform
        inner = model.model if isinstance(model, Classifier) else model
        self.layers = [module_name(inner, layer, who="GFICAM") for layer in self.target_layers]
        self.spec = resolve(method, config, settings, options=options)
        self.normalization = check_normalization(model, mean, std, clamp, who="GFICAM")
        self.clamp = clamp
        if tta_transforms is not None and not hasattr(tta_transforms, "__iter__"):
            raise UsageError(f"GFICAM: tta_transforms must be a ttach.Compose (or a list of augmentations), got "
                             f"{type(tta_transforms).__name__}")
        self.tta_transforms = tta_transforms
        param = next(iter(model.parameters()), None)
        self.device = param.device if param is not None else torch.device("cpu")
        self.outputs: Any = None
        self.activations_and_grads = _NoHooks()

    # -- pytorch-grad-cam's calls ---------------------------------------------------------------
    def __call__(self, input_tensor: Tensor, targets: Sequence[Any] | None = None, aug_smooth: bool = False,
                 eigen_smooth: bool = False) -> np.ndarray:
        """Maps of ``input_tensor`` (N, C, H, W) for ``targets``: a float32 array (N, H, W) in [0, 1].

        ``targets``: one per input (or None for each input's top-1 class), each a target of
        ``pytorch_grad_cam.utils.model_targets`` or any function of one image's model output that
        returns its score, as pytorch-grad-cam calls them:

        * ``ClassifierOutputTarget(c)``: class c, which each method scores in its own way: GFI with
          the class score f_c of Eq. (9) (the softmax probability, a sigmoid for a multi-label
          classifier), Grad-CAM with the logit (pytorch-grad-cam's reading);
        * ``ClassifierOutputSoftmaxTarget(c)``: c's softmax probability (:class:`gfi.targets.Softmax`;
          for GFI the same as class c);
        * any other (``ClassifierOutputReST``, ``BinaryClassifierOutputTarget``,
          ``SemanticSegmentationTarget``, ``FasterRCNNBoxScoreTarget``, ``FinerWeightedTarget``, a
          lambda): called on each image's output (a row of a tensor output, an item of a detector's
          list) by :func:`gfi_target`, a :class:`gfi.targets.CallableTarget` (GFI reads Eq. 9 for a
          score that is not a probability as docs/METHOD.md, "Targets", says);
        * ``SoftmaxOutputTarget`` and ``RawScoresOutputTarget`` (a score per class) are refused.

        A list of another length than N is an error (pytorch-grad-cam's ``zip`` would leave the
        images without a target with maps of zeros).

        ``aug_smooth``: the maps of the augmented inputs (``tta_transforms``; by default the input
        and its mirror image, each times 0.9, 1 and 1.1: 6 runs), each mapped back (unflipped) and
        averaged, with no new min-max (as pytorch-grad-cam does). A copy times 1.1 whose pixels
        leave [0, 1] under ``mean``/``std`` is clamped with ``clamp=True``, and otherwise rescaled
        by its own range (rule 3 of :mod:`gfi.frontends`: exact for GFI's blur background, Grad-CAM
        and CAM; for a method that fixes a pixel value, e.g. integrated gradients' black baseline,
        the copy's darkest value plays that role), except under GFI's ``background="mean"`` or
        ``"noise"``, where it is refused in one line.

        ``eigen_smooth``: each layer's map is the first principal component of GFI's weighted
        channels ``w_i f_i^{l1}(x)`` (Eq. 6 before the sum; :func:`first_component`, with the sign
        that agrees with Eq. 6's sum), rectified, min-maxed (Eq. 7) and upsampled, in place of Eq. 6's
        sum: pytorch-grad-cam's ``eigen_smooth`` applied to GFI's channel weights. It is not the
        mask that Eq. (9) scored. It needs a method with channel weights (gfi, gfi-stage1).
        """
        x = self._check_input(input_tensor)
        if not aug_smooth:
            return self.forward(x, targets, eigen_smooth)
        maps = []
        for t in self._augmentations():
            m = self._maps(t.augment_image(x), targets, eigen_smooth, augmented=True)
            maps.append(t.deaugment_mask(m[:, None])[:, 0])
        self.outputs = self._outputs(x)
        return torch.stack(maps).mean(0).cpu().numpy()

    def forward(self, input_tensor: Tensor, targets: Sequence[Any] | None = None,
                eigen_smooth: bool = False) -> np.ndarray:
        """The maps without ``aug_smooth``, in ``BaseCAM.forward``'s order of arguments."""
        x = self._check_input(input_tensor)
        maps = self._maps(x, targets, eigen_smooth)
        self.outputs = self._outputs(x)
        return maps.cpu().numpy()

    def __enter__(self) -> GFICAM:
        return self

    def __exit__(self, exc_type: Any, exc_value: Any, exc_tb: Any) -> None:
        """Nothing to release: gfi's hooks come off after every call. Exceptions propagate
        (pytorch-grad-cam's ``__exit__`` swallows an ``IndexError``)."""
        return None

    # -- the maps -------------------------------------------------------------------------------
    def _check_input(self, x: Any) -> Tensor:
        if isinstance(x, Tensor) and x.ndim == 5:
            raise UsageError(f"GFICAM explains (N, C, H, W) images, got {tuple(x.shape)}: GFI's mask and background "
                             "are 2-D (Eq. 2, 6-7), so 3-D volumes are not supported")
        if not isinstance(x, Tensor):
            raise UsageError(f"GFICAM: input_tensor must be a torch.Tensor (N, C, H, W), got {type(x).__name__}")
        return x.detach().to(self.device)

    def _outputs(self, x: Tensor) -> Any:
        with torch.no_grad(), frozen(self.model):
            return self.model(x)

    def _augmentations(self) -> Any:
        if self.tta_transforms is None:
            return [_Augmentation(flip, factor) for flip, factor in DEFAULT_AUGMENTATIONS]
        return self.tta_transforms

    def _maps(self, x: Tensor, targets: Sequence[Any] | None, eigen_smooth: bool, augmented: bool = False) -> Tensor:
        """(N, H, W) float32: the per-layer maps, their mean min-maxed per image."""
        classes = self._targets(targets, x.shape[0])
        clf, pixels = self._pixels(x, augmented)
        size = (int(x.shape[-2]), int(x.shape[-1]))
        per_layer = []
        for layer in self.layers:
            c = clf.with_layers(layer, layer)
            e = self.spec.explainer(c).explain(pixels, classes)
            per_layer.append(self._eigen_map(c, pixels, e, size) if eigen_smooth else self._map(e, size))
        return min_max(torch.stack(per_layer).mean(0))[0]

    @staticmethod
    def _map(e: Explanation, size: tuple[int, int]) -> Tensor:
        if tuple(e.maps.shape[-2:]) != size:
            e = e.resize_to(size)
        return e.maps[:, 0].float()

    def _eigen_map(self, clf: Classifier, pixels: Tensor, e: Explanation, size: tuple[int, int]) -> Tensor:
        if e.get("weights") is None:
            raise UsageError(f"GFICAM: eigen_smooth projects a layer's weighted channels, and method "
                             f"{self.spec.name!r} has no channel weights; use method='gfi' or 'gfi-stage1', or "
                             "call without eigen_smooth")
        with torch.no_grad(), frozen(clf.model):
            feats, _ = clf.activations(pixels.to(clf.device), [clf.channel_layer])
        f = feats[clf.channel_layer].float()
        wf = e.weights[:, 0, :, None, None].to(f) * f
        m = torch.relu(first_component(wf, wf.sum(1)))
        return upsample(min_max(m)[0], size)

    def _pixels(self, x: Tensor, augmented: bool) -> tuple[Classifier, Tensor]:
        """The classifier and pixels of ``x`` by the input rule of :mod:`gfi.frontends`, with the two
        readings GFICAM adds: a constant batch, and an augmented copy outside [0, 1]."""
        mean, std = self.normalization or (None, None)
        clamp = self.clamp
        if isinstance(self.model, Classifier):
            if augmented and x.numel() and (float(x.min()) < -PIXEL_TOLERANCE or float(x.max()) > 1 + PIXEL_TOLERANCE):
                raise UsageError("GFICAM: an aug_smooth copy of the pixels leaves [0, 1] (a gfi.Classifier takes "
                                 "pixels in [0, 1]); pass tta_transforms without factors above 1, e.g. "
                                 "ttach.Compose([ttach.HorizontalFlip(), ttach.Multiply([0.9, 1])])")
        elif mean is None and x.numel() and bool(x.min() == x.max()):
            mean, std = (0.5 - float(x.flatten()[0]),), (1.0,)  # pixels 0.5 that the model sees as x
        elif augmented and mean is not None and not clamp and x.numel():
            shape = (1, -1, 1, 1)
            p = x * torch.tensor(std, dtype=x.dtype, device=x.device).view(shape) \
                + torch.tensor(mean, dtype=x.dtype, device=x.device).view(shape)
            if float(p.min()) < -PIXEL_TOLERANCE or float(p.max()) > 1 + PIXEL_TOLERANCE:
                background = getattr(self.spec.config, "background", None)
                if background not in (None, "blur"):
                    raise UsageError(f"GFICAM: an aug_smooth copy (times a factor above 1) has pixels outside [0, 1] "
                                     f"under mean/std, which background={background!r} (a fixed pixel value) cannot "
                                     "explain exactly; use background='blur', clamp=True, or tta_transforms without "
                                     "factors above 1")
                mean = std = None  # rescaled by its own range (rule 3 of gfi.frontends)
        return pixels_and_classifier(self.model, x, layer=self.layers[0], reshape_transform=self.reshape_transform,
                                     mean=mean, std=std, clamp=clamp and mean is not None, who="GFICAM")

    @staticmethod
    def _targets(targets: Sequence[Any] | None, n: int) -> list[int | Target] | None:
        """pytorch-grad-cam's targets as N gfi targets (None: each image's top-1 class):
        ``ClassifierOutputTarget(c)`` as class c (each method's own reading of a class),
        ``ClassifierOutputSoftmaxTarget(c)`` as :class:`~gfi.targets.Softmax` ``(c)``, any other target
        callable through :func:`gfi_target`."""
        if targets is None:
            return None
        if not isinstance(targets, Sequence) or isinstance(targets, str | bytes):
            raise UsageError(f"GFICAM: targets must be a list of pytorch-grad-cam targets (one per input) or None, "
                             f"got {type(targets).__name__}")
        known = _peer_targets()
        out: list[int | Target] = []
        for t in targets:
            name = type(t).__name__
            if type(t) is known.get("ClassifierOutputTarget"):
                out.append(class_index_of(t.category, f"GFICAM: {name}'s category {t.category!r}"))
            elif type(t) is known.get("ClassifierOutputSoftmaxTarget"):
                out.append(Softmax(class_index_of(t.category, f"GFICAM: {name}'s category {t.category!r}")))
            elif type(t) in (known.get("SoftmaxOutputTarget"), known.get("RawScoresOutputTarget")):
                raise UsageError(f"GFICAM: {name} returns a score per class, not one per image (pytorch-grad-cam's "
                                 "GradCAM cannot backpropagate it either); pass ClassifierOutputTarget(c)")
            elif callable(t) and not isinstance(t, type | int | Tensor):
                out.append(CallableTarget(gfi_target(t), name=_describe(t)))
            else:
                raise UsageError(f"GFICAM: every target must be a pytorch-grad-cam target such as "
                                 f"ClassifierOutputTarget(c), or a function of one image's output, got {name}")
        if len(out) != n:
            raise UsageError(f"GFICAM: {len(out)} targets for {n} inputs; give one target per input (or None "
                             "for each input's top-1 class)")
        return out


def _describe(target: Any) -> str:
    """A name for a pytorch-grad-cam target object or a function: its class (or the function's name)
    with its simple attributes, e.g. ``ClassifierOutputReST(category=3)``."""
    if hasattr(target, "__qualname__"):
        return target.__qualname__
    simple = {k: v for k, v in vars(target).items() if isinstance(v, int | float | str | bool)} \
        if hasattr(target, "__dict__") else {}
    return f"{type(target).__name__}({', '.join(f'{k}={v!r}' for k, v in simple.items())})"
