"""The common interface of every method: ``explainer.explain(images, targets) -> Explanation``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import ClassVar

import torch
from torch import Tensor

from gfi.models.classifier import Classifier

TargetsLike = int | Sequence[int] | Sequence[Sequence[int]] | Tensor | None


@dataclass
class Explanation:
    """What a method knows about one batch. Tensors stay on the device they were computed on.

    Attributes:
        maps: (B, K, H, W) saliency in [0, 1] at the model's input size, one per image and target.
        targets: (B, K) class indices.
        method: the method's registry name.
        probs: (B, K) the model's score f_c(x) of each target on the unmodified input.
        stage1_map: (B, H, W) GFI's class-agnostic inversion map (Fig. 3b), when the method has one.
        weights: (B, K, C) GFI's channel weights w after stage 2 (or stage 1 for ``gfi-stage1``).
        stage1_weights: (B, C) w after stage 1.
        prob_kept: (B, K) f_c of the kept image Phi(x, m) (Eq. 2) under the final mask.
        prob_removed: (B, K) f_c of the removed image Phi_bg(x, m) (Eq. 4) under the final mask.
        loss_history: per stage, (T, B) or (T, B, K) losses of every iteration.
        collapsed: (B, K) True where the final map was constant (all w = 0): the map is then zeros.
        stage1_collapsed: (B,) the same for the stage-1 map.
    """

    maps: Tensor
    targets: Tensor
    method: str
    probs: Tensor | None = None
    stage1_map: Tensor | None = None
    weights: Tensor | None = None
    stage1_weights: Tensor | None = None
    prob_kept: Tensor | None = None
    prob_removed: Tensor | None = None
    loss_history: dict[str, Tensor] = field(default_factory=dict)
    collapsed: Tensor | None = None
    stage1_collapsed: Tensor | None = None

    def to(self, device: torch.device | str) -> Explanation:
        def move(v):
            if isinstance(v, Tensor):
                return v.to(device)
            if isinstance(v, dict):
                return {k: move(x) for k, x in v.items()}
            return v

        return replace(self, **{f.name: move(getattr(self, f.name)) for f in fields(self)})

    def cpu(self) -> Explanation:
        return self.to("cpu")

    def __len__(self) -> int:
        return self.maps.shape[0]


def as_targets(targets: TargetsLike, batch: int, device: torch.device, logits: Tensor | None = None,
               num_classes: int | None = None) -> Tensor:
    """Normalise targets to a (B, K) long tensor.

    ``None`` = each image's top-1 class (needs ``logits``); an int = that class for every image;
    a flat sequence of B ints = one class per image; a sequence of B sequences of K ints = K
    classes per image (stage 1 of GFI runs once per image for all K).
    """
    if targets is None:
        if logits is None:
            raise ValueError("targets=None means top-1, which needs the model's logits")
        t = logits.argmax(-1, keepdim=True)
    elif isinstance(targets, Tensor):
        t = targets.to(device=device, dtype=torch.long)
        if t.ndim == 0:
            t = t.expand(batch).unsqueeze(1)
        elif t.ndim == 1:
            t = t.unsqueeze(1) if t.shape[0] == batch else t.unsqueeze(0).expand(batch, -1)
    elif isinstance(targets, int):
        t = torch.full((batch, 1), targets, dtype=torch.long, device=device)
    else:
        seq = list(targets)
        if seq and all(isinstance(s, Sequence) and not isinstance(s, str) for s in seq):
            lens = {len(s) for s in seq}
            if len(lens) != 1:
                raise ValueError(f"every image needs the same number of targets, got counts {sorted(lens)}; "
                                 "explain images with different counts in separate calls")
            t = torch.tensor(seq, dtype=torch.long, device=device)
        else:
            t = torch.tensor([int(s) for s in seq], dtype=torch.long, device=device)
            t = t.unsqueeze(1) if t.shape[0] == batch else t.unsqueeze(0).expand(batch, -1)
    if t.ndim != 2 or t.shape[0] != batch or t.shape[1] == 0:
        raise ValueError(f"targets of shape {tuple(t.shape)} do not fit a batch of {batch} images; "
                         "give (B,) or (B, K) class indices")
    if num_classes is not None and ((t < 0) | (t >= num_classes)).any():
        bad = t[(t < 0) | (t >= num_classes)].unique().tolist()
        raise ValueError(f"target class(es) {bad} out of range: the model has {num_classes} classes "
                         f"(0..{num_classes - 1})")
    return t.contiguous()


def check_images(images: Tensor) -> Tensor:
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a (B, 3, H, W) tensor in [0, 1], got {shape}; "
                         "use Classifier.prepare() or gfi.data.load_image()")
    if not torch.is_floating_point(images):
        raise ValueError(f"images must be floating point in [0, 1], got {images.dtype}")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or inf")
    return images


class Explainer(ABC):
    """Base class of every method: one object per method, one verb, :meth:`explain`."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    def __init__(self, classifier: Classifier) -> None:
        if not isinstance(classifier, Classifier):
            raise TypeError("wrap the model first: gfi.Classifier(model, ...) or gfi.load_model(name)")
        self.classifier = classifier

    def explain(self, images: Tensor, targets: TargetsLike = None) -> Explanation:
        """Maps for ``images`` (B, 3, H, W) in [0, 1] at the model's input size, per target."""
        images = check_images(images)
        images = images.to(self.classifier.device)
        return self._explain(images, targets)

    __call__ = explain

    @abstractmethod
    def _explain(self, images: Tensor, targets: TargetsLike) -> Explanation: ...

    def _targets_and_probs(self, images: Tensor, targets: TargetsLike,
                           logits: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(B, K) targets and the model's scores for them on ``images``."""
        if logits is None:
            with torch.no_grad():
                logits = self.classifier(images)
        t = as_targets(targets, images.shape[0], images.device, logits, logits.shape[-1])
        probs = self.classifier.scores(logits.float()).gather(1, t)
        return t, probs
