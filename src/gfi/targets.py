r"""Targets: what a map explains. A target turns the model's output for N images into one
differentiable score per image, (N,) (the shape pytorch-grad-cam's and Captum's targets have).

* :class:`ClassTarget` ``(c)``: class c read the way each method reads a class natively (a plain
  int means this): the logit for Grad-CAM, CAM, the gradient methods, integrated gradients, LRP and
  extremal perturbation; the probability f_c (softmax, or sigmoid for a multi-label model) for RISE,
  Meaningful Perturbation, GFI and pixel-mask. Every other target is one explicit score, the same
  for every method.
* :class:`Logit`, :class:`Softmax`, :class:`LogSoftmax`, :class:`Sigmoid` ``(c)``: class c's logit,
  softmax probability, log-probability, sigmoid (multi-label) probability; pytorch-grad-cam's
  ``ClassifierOutputTarget`` / ``ClassifierOutputSoftmaxTarget`` / ... and Captum's int target
  (= :class:`Logit` of the raw output).
* :class:`OutputIndex` ``(idx)``: one entry of any output, ``output[:, *idx]`` (a regression output,
  Captum's tuple target).
* :class:`SegmentationTarget` ``(c, mask)``: class c's logits of a semantic-segmentation output
  (N, C, H, W) summed over a mask (pytorch-grad-cam's ``SemanticSegmentationTarget``).
* :class:`DetectionTarget` ``(box, label)``: the score of the detection (torchvision's detection
  models: a list of dicts with ``boxes``, ``labels``, ``scores``) of that label that best matches
  the box, 0 when none overlaps it enough (pytorch-grad-cam's ``FasterRCNNBoxScoreTarget``).
* :class:`Contrastive` ``(c, others, beta)``: :math:`y_c - \beta \frac{1}{|O|}\sum_{j \in O} y_j`,
  "why c rather than the others", the same for every method that takes a class score.
* :class:`CallableTarget` ``(fn)``: any function ``output -> (N,)``; a plain callable given as a
  target is wrapped in one.

Methods consume a :class:`TargetGrid`: B images x K targets, made by
:func:`gfi.methods.base.as_targets`. When every target is a plain class index the grid keeps them as
a (B, K) tensor and reads them with one gather (:attr:`TargetGrid.indices`), exactly as before
targets were objects; otherwise each target is called on the rows of the output that are its own
(a loop over the B x K targets, never over channels or pixels).

Every target has :meth:`Target.describe`, a short stable text (``"class:243"``, ``"softmax:243"``,
``"box:10,20,100,200:3"``) for records and file names, and ``class_index``, the class it is about
(None for an output index or a callable).
"""

from __future__ import annotations

import functools
import hashlib
import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from gfi.errors import TargetError
from gfi.objectives import class_scores

__all__ = ["CallableTarget", "ClassTarget", "Contrastive", "DetectionTarget", "LogSoftmax", "Logit",
           "OutputIndex", "Reading", "SegmentationTarget", "Sigmoid", "Softmax", "Target", "TargetGrid",
           "as_target", "class_index_of", "describe_output", "split_rows"]

#: how a method reads a plain class index: the logit, or the probability f_c (softmax; sigmoid for a
#: multi-label model)
Reading = Literal["logit", "prob"]


def describe_output(output: Any) -> str:
    """A model output in a few words, for error messages: ``a tensor of shape (2, 21, 64, 64)``,
    ``a list of 2 dict``."""
    if isinstance(output, Tensor):
        return f"a tensor of shape {tuple(output.shape)}"
    if isinstance(output, list | tuple):
        kinds = sorted({type(o).__name__ for o in output})
        return f"a {type(output).__name__} of {len(output)} {'/'.join(kinds) or 'items'}"
    return f"a {type(output).__name__}"


def _index(value: Any, what: str) -> int:
    """``value`` as an int (numpy and 0-d integer tensors too); bools, floats and strings are refused."""
    if isinstance(value, bool | str | bytes):
        raise TargetError(f"{what} must be an int, got {value!r}")
    if isinstance(value, Tensor):
        if value.ndim != 0 or value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
            raise TargetError(f"{what} must be an int, got a {value.dtype} tensor of shape {tuple(value.shape)}")
        return int(value)
    if not isinstance(value, numbers.Integral):
        raise TargetError(f"{what} must be an int, got a {type(value).__name__} ({value!r})")
    return int(value)


def _class_scores(output: Any, who: str) -> Tensor:
    """``output`` if it is (N, classes) scores; else a one-line :class:`TargetError` naming the fix."""
    if not isinstance(output, Tensor) or output.ndim != 2:
        raise TargetError(f"target {who} reads (batch, classes) scores, but the model returned "
                          f"{describe_output(output)}; for a segmentation output use SegmentationTarget, for a "
                          "detection model DetectionTarget, for any other output OutputIndex or a callable "
                          "(gfi.targets)")
    return output


class Target(ABC):
    """One differentiable score per image from the model's output: ``target(output) -> (N,)``.

    Subclasses set :attr:`probability` when the score is a probability in [0, 1] (GFI then reads
    Eq. 9 in its log form, docs/METHOD.md "Targets"), implement ``__call__`` and :meth:`describe`,
    and set ``class_index`` when the target is about one class."""

    #: the score is a probability in [0, 1]
    probability: ClassVar[bool] = False
    #: the class the target is about (names, records), or None
    class_index: int | None = None

    @abstractmethod
    def __call__(self, output: Any) -> Tensor:
        """(N,) scores of the model's output for N images."""

    @abstractmethod
    def describe(self) -> str:
        """A short stable text naming the target (records, file names, the map store's key)."""

    def read(self, reading: Reading, multilabel: bool) -> Target:
        """The explicit target this one is under a method's native ``reading`` of a class index:
        itself, except for :class:`ClassTarget` (and what contains one)."""
        return self

    def classes(self) -> tuple[int, ...]:
        """Every class index the target reads (checked against the model's classes)."""
        return () if self.class_index is None else (self.class_index,)

    def log(self, output: Any) -> Tensor:
        """log s for a probability score (GFI's log form of Eq. 9); subclasses compute it stably."""
        s = self(output).float()
        return torch.log(s.clamp_min(torch.finfo(s.dtype).tiny))

    def log1m(self, output: Any) -> Tensor:
        """log(1 - s) for a probability score (GFI's log form of Eq. 9)."""
        s = self(output).float()
        return torch.log1p(-s.clamp(max=1 - torch.finfo(s.dtype).eps))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()!r})"


class _ClassScore(Target):
    """A score of one class of (N, classes) outputs."""

    kind: ClassVar[str] = ""

    def __init__(self, c: int) -> None:
        self.class_index = _index(c, f"{type(self).__name__}'s class")
        if self.class_index < 0:
            raise TargetError(f"{type(self).__name__}'s class must be >= 0, got {self.class_index}")

    #: the name errors give it (a plain class index read as this score is named as the index)
    _shown: str | None = None

    def _column(self, output: Any) -> Tensor:
        who = self._shown or self.describe()
        z = _class_scores(output, who)
        if self.class_index >= z.shape[1]:
            raise TargetError(f"target {who} is out of range: the model returns {z.shape[1]} scores "
                              f"(0..{z.shape[1] - 1})")
        return z

    def describe(self) -> str:
        return f"{self.kind}:{self.class_index}"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.class_index == self.class_index

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.class_index))


class Logit(_ClassScore):
    """Class c's logit y_c (the raw output): Captum's int target, pytorch-grad-cam's
    ``ClassifierOutputTarget``."""

    kind = "logit"

    def __call__(self, output: Any) -> Tensor:
        z = self._column(output)
        return z.gather(1, z.new_full((z.shape[0], 1), self.class_index, dtype=torch.long)).squeeze(1)


class Softmax(_ClassScore):
    """Class c's softmax probability (pytorch-grad-cam's ``ClassifierOutputSoftmaxTarget``), in float32,
    computed as :func:`gfi.objectives.target_terms` computes f_c (``exp(y_c - logsumexp(y))``), so that
    a method reads ``Softmax(c)`` exactly as its own reading of class c when that is f_c."""

    kind = "softmax"
    probability = True

    def __call__(self, output: Any) -> Tensor:
        return self.log(output).exp()

    def log(self, output: Any) -> Tensor:
        z = self._column(output).float()
        return z[:, self.class_index] - z.logsumexp(-1)

    def log1m(self, output: Any) -> Tensor:
        z = self._column(output).float()
        others = z.index_fill(1, torch.tensor([self.class_index], device=z.device), float("-inf"))
        return others.logsumexp(-1) - z.logsumexp(-1)


class LogSoftmax(_ClassScore):
    """Class c's log-probability log softmax(y)_c, in float32 (not a probability: it is <= 0)."""

    kind = "logsoftmax"

    def __call__(self, output: Any) -> Tensor:
        return self._column(output).float().log_softmax(-1)[:, self.class_index]


class Sigmoid(_ClassScore):
    """Class c's sigmoid probability, the score of a multi-label model, in float32."""

    kind = "sigmoid"
    probability = True

    def __call__(self, output: Any) -> Tensor:
        return torch.sigmoid(self._column(output).float()[:, self.class_index])

    def log(self, output: Any) -> Tensor:
        return F.logsigmoid(self._column(output).float()[:, self.class_index])

    def log1m(self, output: Any) -> Tensor:
        return F.logsigmoid(-self._column(output).float()[:, self.class_index])


class ClassTarget(_ClassScore):
    """Class c as each method reads a class natively (what a plain int target means): the logit
    (:class:`Logit`) for the gradient and CAM methods, integrated gradients, LRP and extremal
    perturbation; the probability (:class:`Softmax`, :class:`Sigmoid` for a multi-label model) for
    RISE, Meaningful Perturbation, GFI and pixel-mask. Called directly, it is the logit."""

    kind = "class"

    def __call__(self, output: Any) -> Tensor:
        return self.read("logit", False)(output)

    def read(self, reading: Reading, multilabel: bool) -> Target:
        kind = Logit if reading == "logit" else Sigmoid if multilabel else Softmax
        score = kind(self.class_index)
        score._shown = self.describe()
        return score


class OutputIndex(Target):
    """One entry of each image's output, ``output[:, *idx]``: a regression output (``OutputIndex(0)``
    of (N, outputs)), any multi-dimensional output (``OutputIndex((2, 5))`` of (N, A, B)); Captum's
    tuple target. ``()`` takes a (N,) output as it is."""

    def __init__(self, idx: int | Sequence[int]) -> None:
        items = (idx,) if not isinstance(idx, Sequence) or isinstance(idx, str | bytes) else tuple(idx)
        self.idx = tuple(_index(i, "OutputIndex's index") for i in items)

    def __call__(self, output: Any) -> Tensor:
        if not isinstance(output, Tensor):
            raise TargetError(f"target {self.describe()} indexes a tensor output, but the model returned "
                              f"{describe_output(output)}")
        if output.ndim != 1 + len(self.idx):
            raise TargetError(f"target {self.describe()} gives {len(self.idx)} index(es), but the model's output "
                              f"{tuple(output.shape)} has {output.ndim - 1} dim(s) after the batch: give one index "
                              "per dim, e.g. OutputIndex((0, 2))")
        for i, n in zip(self.idx, output.shape[1:], strict=True):
            if not -n <= i < n:
                raise TargetError(f"target {self.describe()} is out of range for the model's output "
                                  f"{tuple(output.shape)}")
        return output[(slice(None), *self.idx)]

    def describe(self) -> str:
        return "output:" + ",".join(map(str, self.idx))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OutputIndex) and other.idx == self.idx

    def __hash__(self) -> int:
        return hash(("output", self.idx))


def _segmentation_output(output: Any, who: str) -> Tensor:
    if isinstance(output, dict) and "out" in output:
        output = output["out"]  # torchvision's segmentation models
    if not isinstance(output, Tensor) or output.ndim != 4:
        raise TargetError(f"target {who} reads (batch, classes, H, W) segmentation scores, but the model "
                          f"returned {describe_output(output)}")
    return output


class SegmentationTarget(Target):
    """Class c's logits of a semantic-segmentation output (N, C, H, W) summed over ``mask``
    (pytorch-grad-cam's ``SemanticSegmentationTarget``; ``reduction="mean"``: their mean over the
    mask, a score on the scale of one pixel's logit).

    ``mask`` is (H, W), bool or float weights >= 0, at the output's resolution; a mask of another
    size is resized to it (nearest for a bool or integer mask, bilinear for weights). None: every
    pixel. A torchvision model's ``{"out": ...}`` is read as its ``"out"``.
    """

    def __init__(self, c: int, mask: Any = None, reduction: Literal["sum", "mean"] = "sum") -> None:
        self.class_index = _index(c, "SegmentationTarget's class")
        if self.class_index < 0:
            raise TargetError(f"SegmentationTarget's class must be >= 0, got {self.class_index}")
        if reduction not in ("sum", "mean"):
            raise TargetError(f"SegmentationTarget's reduction must be 'sum' or 'mean', got {reduction!r}")
        self.reduction = reduction
        self.mask = None if mask is None else self._check_mask(mask)

    @staticmethod
    def _check_mask(mask: Any) -> Tensor:
        if not isinstance(mask, Tensor):
            try:
                mask = torch.as_tensor(mask)
            except (TypeError, ValueError, RuntimeError) as exc:
                raise TargetError(f"SegmentationTarget's mask must be an (H, W) array, got "
                                  f"{type(mask).__name__}") from exc
        if mask.ndim != 2 or mask.is_complex():
            raise TargetError(f"SegmentationTarget's mask must be (H, W), got shape {tuple(mask.shape)}")
        m = mask.detach().float()
        if not torch.isfinite(m).all() or (m < 0).any():
            raise TargetError("SegmentationTarget's mask must be finite weights >= 0 (or bool)")
        if not (m > 0).any():
            raise TargetError("SegmentationTarget's mask is empty: no pixel is in it")
        return mask.detach().bool() if not mask.is_floating_point() else m

    def _mask_for(self, z: Tensor) -> Tensor:
        size = tuple(z.shape[-2:])
        m = self.mask
        if m is None:
            return z.new_ones(size)
        if tuple(m.shape) != size:
            mode = "bilinear" if m.is_floating_point() else "nearest"
            m = F.interpolate(m.float()[None, None], size=size, mode=mode,
                              **({"align_corners": False} if mode == "bilinear" else {}))[0, 0]
        return m.to(device=z.device, dtype=z.dtype)

    def __call__(self, output: Any) -> Tensor:
        z = _segmentation_output(output, self.describe())
        if self.class_index >= z.shape[1]:
            raise TargetError(f"target {self.describe()} is out of range: the model segments {z.shape[1]} classes")
        m = self._mask_for(z)
        s = (z[:, self.class_index] * m).sum((-2, -1))
        return s / m.sum() if self.reduction == "mean" else s

    def describe(self) -> str:
        if self.mask is None:
            where = "all"
        else:
            m = self.mask.cpu().contiguous()
            raw = m.numpy().tobytes() + str((tuple(m.shape), m.dtype)).encode()
            where = hashlib.sha256(raw).hexdigest()[:10]
        return f"mask:{where}:{self.class_index}" + (":mean" if self.reduction == "mean" else "")


def _box_iou(box: Tensor, boxes: Tensor) -> Tensor:
    """IoU of one (4,) box (x0, y0, x1, y1) with each of (M, 4) boxes."""
    lt = torch.maximum(box[:2], boxes[:, :2])
    rb = torch.minimum(box[2:], boxes[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + areas - inter).clamp_min(torch.finfo(boxes.dtype).tiny)


class DetectionTarget(Target):
    """The score of a detection of a torchvision detection model (its output: a list of N dicts with
    ``boxes`` (M, 4) as x0, y0, x1, y1 in the input's pixels, ``labels`` (M,), ``scores`` (M,)): among
    the detections labelled ``label``, the one whose box overlaps ``box`` most, if that IoU is at
    least ``iou``; 0 when there is none (pytorch-grad-cam's ``FasterRCNNBoxScoreTarget``).
    Differentiable through the detection's score; the box is in the model's input pixels."""

    def __init__(self, box: Sequence[float], label: int, iou: float = 0.5) -> None:
        try:
            values = tuple(float(v) for v in torch.as_tensor(box, dtype=torch.float64).reshape(-1).tolist())
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TargetError(f"DetectionTarget's box must be 4 numbers (x0, y0, x1, y1), got {box!r}") from exc
        if len(values) != 4 or not all(math.isfinite(v) for v in values) or not (
                values[2] > values[0] and values[3] > values[1]):
            raise TargetError(f"DetectionTarget's box must be 4 finite numbers x0, y0, x1, y1 with x1 > x0 and "
                              f"y1 > y0, got {box!r}")
        self.box = values
        self.class_index = _index(label, "DetectionTarget's label")
        if not isinstance(iou, numbers.Real) or isinstance(iou, bool) or not 0 < float(iou) <= 1:
            raise TargetError(f"DetectionTarget's iou must be in (0, 1], got {iou!r}")
        self.iou = float(iou)

    def __call__(self, output: Any) -> Tensor:
        if not isinstance(output, list | tuple) or not all(
                isinstance(d, dict) and {"boxes", "labels", "scores"} <= set(d) for d in output):
            raise TargetError(f"target {self.describe()} reads a detection model's output (a list of dicts with "
                              f"boxes, labels and scores, torchvision's), but the model returned "
                              f"{describe_output(output)}")
        return torch.stack([self._one(d) for d in output]) if output else torch.zeros(0)

    def _one(self, d: dict) -> Tensor:
        scores = d["scores"]
        hit = (d["labels"] == self.class_index).nonzero().squeeze(1)
        if hit.numel():
            box = torch.tensor(self.box, device=d["boxes"].device, dtype=d["boxes"].dtype)
            iou = _box_iou(box, d["boxes"][hit].detach())
            best = int(iou.argmax())
            if float(iou[best]) >= self.iou:
                return scores[hit[best]]
        return scores.sum() * 0 if scores.numel() else scores.new_zeros(())  # 0, in the graph when it can be

    def describe(self) -> str:
        box = ",".join(f"{v:g}" for v in self.box)
        return f"box:{box}:{self.class_index}" + (f":iou{self.iou:g}" if self.iou != 0.5 else "")


class Contrastive(Target):
    r"""Why c rather than the others: :math:`s_c - \beta \frac{1}{|O|} \sum_{j \in O} s_j`, with s the
    ``base`` score (default :class:`Logit`: :math:`y_c - \beta\,\mathrm{mean}_j\, y_j`, the contrastive
    target every method that takes a class score accepts). ``target`` and ``others`` are class
    indices (read with ``base``) or targets; ``beta`` >= 0.

    For the logit (a linear score) the gradient is the difference of gradients, so Grad-CAM's channel
    weights are :math:`w_c - \beta\,\mathrm{mean}_j\, w_j` and CAM's class weights likewise."""

    def __init__(self, target: int | Target, others: Sequence[int | Target], beta: float = 1.0,
                 base: type[_ClassScore] = Logit) -> None:
        if not (isinstance(base, type) and issubclass(base, _ClassScore)):
            raise TargetError(f"Contrastive's base must be a class score (Logit, Softmax, LogSoftmax, Sigmoid), "
                              f"got {base!r}")
        self.base = base
        self.target = self._part(target)
        if isinstance(others, Tensor):
            others = others.reshape(-1).tolist()
        if isinstance(others, str | bytes) or not isinstance(others, Sequence) or not len(others):
            raise TargetError(f"Contrastive's others must be a non-empty list of classes or targets, got {others!r}")
        self.others = tuple(self._part(o) for o in others)
        if not isinstance(beta, numbers.Real) or isinstance(beta, bool) or not math.isfinite(beta) or beta < 0:
            raise TargetError(f"Contrastive's beta must be a finite number >= 0, got {beta!r}")
        self.beta = float(beta)
        self.class_index = self.target.class_index

    def _part(self, value: Any) -> Target:
        if isinstance(value, Target):
            return value
        return self.base(_index(value, "a class of Contrastive"))

    @classmethod
    def among(cls, classes: Sequence[int], beta: float = 1.0, base: type[_ClassScore] = Logit) -> list[Contrastive]:
        """One image's K classes each against the other K - 1: ``[Contrastive(c, others of c, beta), ...]``."""
        classes = list(classes)
        if len(classes) < 2:
            raise TargetError(f"Contrastive.among needs at least 2 classes, got {classes}")
        return [cls(c, classes[:i] + classes[i + 1:], beta, base) for i, c in enumerate(classes)]

    def __call__(self, output: Any) -> Tensor:
        rest = torch.stack([o(output) for o in self.others]).mean(0)
        return self.target(output) - self.beta * rest

    def read(self, reading: Reading, multilabel: bool) -> Target:
        parts = [self.target.read(reading, multilabel), *(o.read(reading, multilabel) for o in self.others)]
        if all(p is q for p, q in zip(parts, [self.target, *self.others], strict=True)):
            return self
        return Contrastive(parts[0], parts[1:], self.beta, self.base)

    def classes(self) -> tuple[int, ...]:
        return tuple(c for t in (self.target, *self.others) for c in t.classes())

    def describe(self) -> str:
        return f"{self.target.describe()}-{self.beta:g}*mean({','.join(o.describe() for o in self.others)})"


class CallableTarget(Target):
    """Any function ``output -> (N,)`` scores (a lambda, pytorch-grad-cam's target objects, a
    module). ``name`` is its :meth:`describe` (default: the function's name): give one that tells
    your functions apart, since records and the map store know a callable only by it. ``probability``:
    the function returns a probability in [0, 1]."""

    def __init__(self, fn: Callable[[Any], Tensor], name: str | None = None, probability: bool = False) -> None:
        if not callable(fn) or isinstance(fn, type):
            raise TargetError(f"CallableTarget needs a function of the model's output, got {fn!r}")
        self.fn = fn
        self.name = name or getattr(fn, "__qualname__", None) or type(fn).__name__
        self.probability = bool(probability)  # type: ignore[misc]

    def __call__(self, output: Any) -> Tensor:
        s = self.fn(output)
        if not isinstance(s, Tensor):
            s = torch.as_tensor(s)
        return s

    def describe(self) -> str:
        return f"callable:{self.name}"


def as_target(value: Any, where: str) -> Target:
    """``value`` as a target: a :class:`Target` as it is, a callable wrapped in a
    :class:`CallableTarget`, an int as a :class:`ClassTarget`; a string, a bool, a float or a class
    (``Softmax`` rather than ``Softmax(3)``) is a one-line :class:`TargetError`."""
    if isinstance(value, Target):
        return value
    if isinstance(value, type):
        raise TargetError(f"{where} is the class {value.__name__}, not a target: give an instance, "
                          f"e.g. {value.__name__}(243)")
    if callable(value) and not isinstance(value, Tensor):
        return CallableTarget(value)
    return ClassTarget(class_index_of(value, where))


def class_index_of(value: Any, where: str) -> int:
    """``value`` as one plain class index: an int (a numpy or 0-d integer tensor too); a string, a
    bool or a float is refused, never converted. ``where`` names it in the message (``targets=...``,
    ``target ... of image 2``)."""
    if isinstance(value, str | bytes):
        digits = value.strip() if isinstance(value, str) and value.strip().isdigit() else None
        raise TargetError(f"{where} is a string, which gfi does not read as a class: give an int class index "
                          f"({f'{digits}, not {value!r}' if digits else 'e.g. 243'}), or look a class name up with "
                          "classifier.class_index(name) (`gfi classes PATTERN` lists the names)")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral | Tensor):
        raise TargetError(f"{where} is a {type(value).__name__}, not a class index; give ints")
    if isinstance(value, Tensor) and (value.ndim != 0 or value.is_floating_point() or value.is_complex()
                                      or value.dtype == torch.bool):
        raise TargetError(f"{where} is a {value.dtype} tensor of shape {tuple(value.shape)}, not one integer "
                          "class index")
    return int(value)


def _rows_of(output: Any, sel: Tensor) -> Any:
    """The rows ``sel`` (a 1-D long tensor) of a model's output: a tensor's rows, a list's items, a
    dict of either (each value's rows)."""
    if isinstance(output, Tensor):
        return output.index_select(0, sel.to(output.device))
    if isinstance(output, list | tuple):
        return [output[i] for i in sel.tolist()]
    if isinstance(output, dict):
        return {k: _rows_of(v, sel) for k, v in output.items()}
    raise TargetError(f"cannot take the rows of the model's output, {describe_output(output)}: a target reads a "
                      "tensor, a list (one item per image) or a dict of those")


def split_rows(output: Any, n: int) -> tuple[Any, Any]:
    """The first ``n`` rows of a model's output and the rest (a tensor's rows, a list's items, a dict
    of either), e.g. the outputs for the kept and for the removed images of one batch."""
    if isinstance(output, Tensor | list | tuple):
        return output[:n], output[n:]
    if isinstance(output, dict):
        parts = {k: split_rows(v, n) for k, v in output.items()}
        return {k: v[0] for k, v in parts.items()}, {k: v[1] for k, v in parts.items()}
    raise TargetError(f"cannot take the rows of the model's output, {describe_output(output)}")


def _batch_of(output: Any) -> int:
    if isinstance(output, Tensor):
        return output.shape[0]
    if isinstance(output, list | tuple):
        return len(output)
    if isinstance(output, dict) and output:
        return _batch_of(next(iter(output.values())))
    raise TargetError(f"the model returned {describe_output(output)}, which has no batch of rows to score")


class TargetGrid:
    """B images x K targets, as every method consumes them (:func:`gfi.methods.base.as_targets`).

    ``rows``: B sequences of K :class:`Target`; ``indices``: their (B, K) class indices when every
    target is a :class:`ClassTarget` (the fast path: scores are one gather), else None.

    A method scores an output whose rows belong to the grid's targets with :meth:`score` (``rows``:
    each output row's flat target number b * K + k; default one row per target in order) or
    :meth:`score_each` (each output row by every target of its image)."""

    def __init__(self, rows: Sequence[Sequence[Target]] | None = None, indices: Tensor | None = None) -> None:
        if rows is None:
            if indices is None or indices.ndim != 2:
                raise ValueError("a TargetGrid needs B rows of K targets, or (B, K) class indices")
            self._rows: tuple[tuple[Target, ...], ...] | None = None  # made from the indices when asked
            self.shape = (int(indices.shape[0]), int(indices.shape[1]))
        else:
            self._rows = tuple(tuple(r) for r in rows)
            widths = {len(r) for r in self._rows}
            if len(widths) > 1:
                raise TargetError(f"every image needs the same number of targets, got counts {sorted(widths)}; "
                                  "explain images with different counts in separate calls")
            self.shape = (len(self._rows), widths.pop() if widths else 0)
            if indices is not None and tuple(indices.shape) != self.shape:
                raise ValueError(f"indices {tuple(indices.shape)} do not match the grid {self.shape}")
        self.indices = indices

    @classmethod
    def of_indices(cls, indices: Tensor) -> TargetGrid:
        """The grid of plain class indices (B, K): every target a :class:`ClassTarget`."""
        return cls(None, indices)

    @property
    def rows(self) -> tuple[tuple[Target, ...], ...]:
        """B tuples of K targets."""
        if self._rows is None:
            self._rows = tuple(tuple(ClassTarget(c) for c in row) for row in self.indices.tolist())
        return self._rows

    @property
    def flat(self) -> list[Target]:
        """The B x K targets, image by image."""
        return [t for row in self.rows for t in row]

    def __iter__(self) -> Iterator[tuple[Target, ...]]:
        return iter(self.rows)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def device(self) -> torch.device:
        return self.indices.device if self.indices is not None else torch.device("cpu")

    def classes(self, device: torch.device | str | None = None) -> Tensor:
        """(B, K) long: each target's class index, -1 where it is about no class."""
        if self.indices is not None:
            return self.indices if device is None else self.indices.to(device)
        values = [[-1 if t.class_index is None else t.class_index for t in row] for row in self.rows]
        return torch.tensor(values, dtype=torch.long, device=device).reshape(self.shape)

    def describe(self) -> list[list[str]]:
        """B lists of K :meth:`Target.describe` texts."""
        return [[t.describe() for t in row] for row in self.rows]

    def logit_classes(self) -> Tensor | None:
        """(B, K) class indices when every target is a class's logit as each method reads it (a
        :class:`ClassTarget` under the logit reading, or a :class:`Logit`), else None: what a method
        that can only start from one output unit (LRP) takes."""
        if self.indices is not None:
            return self.indices
        if all(type(t) in (ClassTarget, Logit) for t in self.flat):
            return self.classes()
        return None

    # -- selections ------------------------------------------------------------------------------
    def images(self, which: Tensor | slice) -> TargetGrid:
        """The grid of some images: ``which`` a slice, a bool mask or long indices over the B images."""
        if isinstance(which, slice):
            keep = list(range(self.shape[0]))[which]
        else:
            which = which.to("cpu")
            keep = which.nonzero().squeeze(1).tolist() if which.dtype == torch.bool else which.reshape(-1).tolist()
        if self.indices is not None:
            return TargetGrid(None, self.indices[torch.tensor(keep, dtype=torch.long, device=self.indices.device)])
        return TargetGrid([self.rows[i] for i in keep])

    def columns(self, start: int, stop: int) -> TargetGrid:
        """Targets ``start:stop`` of every image."""
        if self.indices is not None:
            return TargetGrid(None, self.indices[:, start:stop])
        return TargetGrid([r[start:stop] for r in self.rows])

    def read(self, reading: Reading, multilabel: bool) -> TargetGrid:
        """The grid of explicit targets under a method's native ``reading`` of a class index (no fast path)."""
        return TargetGrid([[t.read(reading, multilabel) for t in row] for row in self.rows])

    # -- scores ----------------------------------------------------------------------------------
    def score(self, output: Any, reading: Reading, multilabel: bool = False, rows: Tensor | None = None) -> Tensor:
        """(N,) the score of each output row under its target: ``rows`` (N,) gives each row's flat
        target number b * K + k (None: row i is target i, N = B * K). A plain class index is read
        the method's way (``reading``): ``"logit"`` the raw output, ``"prob"`` f_c in float32."""
        if self.indices is not None and isinstance(output, Tensor) and output.ndim == 2:
            idx = self.indices.reshape(-1)
            if rows is not None:
                idx = idx[rows.to(idx.device)]
            idx = idx.to(output.device).view(-1, 1)
            if reading == "logit":
                return output.gather(1, idx).squeeze(1)
            return class_scores(output.float(), multilabel).gather(1, idx).squeeze(1)
        return self.read(reading, multilabel).apply(output, lambda t, o: t(o), rows)

    def score_each(self, output: Any, reading: Reading, multilabel: bool = False,
                   images: Tensor | None = None) -> Tensor:
        """(N, K): each output row scored by every target of its image; ``images`` (N,) gives each
        row's image (None: row i is image i, N = B)."""
        b, k = self.shape
        n = _batch_of(output)
        images = torch.arange(b) if images is None else images.to("cpu")
        if images.numel() != n:
            raise ValueError(f"{images.numel()} image numbers for {n} output rows")
        if self.indices is not None and isinstance(output, Tensor) and output.ndim == 2:
            idx = self.indices.to(output.device)[images.to(output.device)]
            if reading == "logit":
                return output.gather(1, idx)
            return class_scores(output.float(), multilabel).gather(1, idx)
        read = self.read(reading, multilabel)
        return torch.stack([read.apply(output, lambda t, o: t(o), images * k + j) for j in range(k)], -1)

    def apply(self, output: Any, fn: Callable[[Target, Any], Tensor], rows: Tensor | None = None) -> Tensor:
        """(N,) ``fn(target, its rows of output)`` for every output row, in the rows' order: one call
        per target (over its rows), so a loop over the B x K targets, never over pixels or channels.
        Differentiable with respect to the output."""
        n = _batch_of(output)
        total = self.shape[0] * self.shape[1]
        rows = torch.arange(total) if rows is None else rows.to("cpu").reshape(-1)
        if rows.numel() != n:
            raise ValueError(f"{rows.numel()} target numbers for {n} output rows")
        flat = self.flat
        pieces, where = [], []
        for tid in rows.unique().tolist():
            sel = (rows == tid).nonzero().squeeze(1)
            s = fn(flat[tid], _rows_of(output, sel))
            if not isinstance(s, Tensor):
                s = torch.as_tensor(s)
            if s.shape != (sel.numel(),):
                raise TargetError(f"target {flat[tid].describe()} gave scores of shape {tuple(s.shape)} for "
                                  f"{sel.numel()} image(s); a target returns one score per image, (N,)")
            pieces.append(s)
            where.append(sel)
        if not pieces:
            return torch.zeros(0)
        device = next((p.device for p in pieces if p.requires_grad), pieces[0].device)
        dtype = functools.reduce(torch.promote_types, (p.dtype for p in pieces))
        if not dtype.is_floating_point:
            dtype = torch.float32
        values = torch.cat([p.to(device=device, dtype=dtype) for p in pieces])
        order = torch.cat(where).argsort().to(device)
        return values[order]
