"""The common interface of every method: ``explainer.explain(images, targets) -> Explanation``.

A method is a subclass of :class:`Explainer` that sets a few class attributes and implements
``_explain``:

* ``name``, ``summary``: its registry name and one line for ``gfi methods``;
* ``settings_class``: a frozen :class:`~gfi.settings.Settings` dataclass of what decides its maps
  (``self.config``; the map store keys on :meth:`Explainer.provenance`);
* ``presets``: its named settings besides ``"default"`` (e.g. ``"paper"``), accepted as
  ``config="paper"``, ``--preset paper`` and by :func:`gfi.methods.spec.resolve`
  (:meth:`Explainer.preset_names` lists them all);
* ``has_stage1``: its :class:`Explanation` carries GFI's class-agnostic ``stage1_map``;
* ``cheaper``: the documented cheaper settings of a slow method (``gfi compare`` uses them);
* ``test_settings``: the settings gfi's tests run it with (fast on a small model);
* what it supports (``supports_cnn``, ``supports_tokens``, ``supports_multilabel``,
  ``shares_across_targets``, ``any_device``: the table of ``gfi methods --table``) and needs
  (``needs_module``: an ``nn.Module`` rather than any callable).

How fast a map is computed (precision, memory layout, chunking, batching, compiling) is a
:class:`RunOptions` (``self.options``), the same for every method, and never changes a map beyond
float noise; anything that changes a map (GFI's early stop too) is a setting.
"""

from __future__ import annotations

import contextlib
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Literal, TypeVar

import torch
from torch import Tensor

from gfi.errors import InputError, NotApplicable, SettingsError, TargetError
from gfi.models.classifier import Classifier, channel_problem, shape_problem
from gfi.models.forward_args import ForwardArgs
from gfi.models.layers import LayerRef, frozen
from gfi.objectives import score_term
from gfi.settings import Settings, describe, setting
from gfi.targets import (
    ClassTarget,
    Target,
    TargetGrid,
    as_target,
    class_index_of,
    describe_output,
    split_rows,
)

S = TypeVar("S", bound=Settings)


@dataclass(frozen=True)
class RunOptions(Settings):
    """How fast a map is computed, never what it is (beyond float noise); every method accepts them."""

    autocast: Literal["none", "bf16"] = setting(
        "none", "precision of the network's forward and backward: none (float32) or bf16 autocast", group="speed")
    channels_last: bool = setting(
        False, "run the network on channels-last (NHWC) images and weights", group="speed")
    chunk: int = setting(
        0, "GFI with joint=contrastive: stage-2 targets per image computed at a time (0: all in one batch; "
           "joint=independent computes one at a time, joint=separate needs all at once)", low=0, group="speed")
    batch_size: int = setting(
        0, "images per forward of the sampling methods (smoothgrad, integrated-gradients, rise; 0: the "
           "method's own)", low=0, group="speed")
    compile: bool = setting(
        False, "torch.compile the network for its hook-free full forwards (GFI's stage 2, the perturbation "
               "methods' batches), compiled once per network and reused; warns and runs eagerly where it cannot "
               "compile", group="speed")


@dataclass(frozen=True)
class NoSettings(Settings):
    """The settings of a method that has none."""


@dataclass(frozen=True)
class LayerSettings(Settings):
    """Settings of a method that reads one named layer (``"name"`` or ``"name:input"``; a
    :class:`~gfi.models.layers.LayerRef` is accepted and kept as its text). Subclasses redeclare
    ``layer`` with their own help and add their fields."""

    layer: str | None = setting(None, "the layer the method reads (none: the method's own choice)")

    def __post_init__(self) -> None:
        if isinstance(self.layer, LayerRef):
            object.__setattr__(self, "layer", str(self.layer))
        super().__post_init__()
        if self.layer is not None:
            LayerRef.parse(self.layer)

    @property
    def layer_ref(self) -> LayerRef | None:
        return LayerRef.parse(self.layer) if self.layer is not None else None


def paper_values(cls: type[Settings]) -> dict[str, Any]:
    """The ``paper=`` value of every field of ``cls`` that has one."""
    return {i.name: i.paper for i in describe(cls) if i.has_paper}


def preset_settings(cls: type[S], name: str, overrides: Mapping[str, Any] | None = None) -> S:
    """``cls`` as preset ``name`` with ``overrides``: ``"default"``, the fields' defaults; ``"paper"``,
    every field's ``paper=`` value (the default where the paper gives none); another name, the
    defaults changed by ``cls.PRESET_CHANGES[name]`` (e.g. GFI's ``fast``)."""
    changes: Mapping[str, Mapping[str, Any]] = getattr(cls, "PRESET_CHANGES", {})
    if name == "default":
        base = cls()
    elif name == "paper":
        base = cls(**paper_values(cls))
    elif name in changes:
        base = cls().with_overrides(changes[name])
    else:
        raise SettingsError(f"unknown preset {name!r} of {cls.__name__}; choose "
                            f"{', '.join(['default', 'paper', *changes])}")
    return base.with_overrides(overrides)


#: what ``explain`` takes as targets: None (top-1), one target for every image, B of them, B lists of K,
#: or a (B,) / (B, K) tensor of class indices; a target is an int (a class) or a :class:`~gfi.targets.Target`
#: or any callable of the model's output
TargetsLike = (int | Target | Callable[..., Tensor] | Sequence[int | Target | Callable[..., Tensor]]
               | Sequence[Sequence[int | Target | Callable[..., Tensor]]] | Tensor | None)


@dataclass
class Explanation:
    """What every method knows about one batch. Tensors stay on the device they were computed on.
    A method with more to say returns a subclass holding it (its method-specific part):
    :class:`MaskExplanation` for methods that optimise a mask (their losses), and
    :class:`gfi.methods.gfi.GFIExplanation` for GFI (its stage-1 map, weights and the scores of
    the kept and removed images).

    Attributes:
        maps: (B, K, H, W) saliency in [0, 1] at the model's input size, one per image and target.
        targets: (B, K) class indices: the class each target is about (a class index, a class score,
            a contrastive target's class, a segmentation class, a detection label), -1 for a target
            about no class (an output index, a callable).
        method: the method's registry name.
        probs: (B, K) each target's score on the unmodified input: f_c(x) (the softmax probability,
            or sigmoid for a multi-label model) for a plain class index, the target's own score for
            a :class:`~gfi.targets.Target` (a logit, a contrastive difference, a detection's score).
        collapsed: (B, K) True where the final map was constant (nothing found): the map is then zeros.
        target_descriptions: B lists of K texts, each target's :meth:`~gfi.targets.Target.describe`
            (``"class:243"``, ``"box:10,20,100,200:3"``, ...).
    """

    maps: Tensor
    targets: Tensor
    method: str
    probs: Tensor | None = None
    collapsed: Tensor | None = None
    target_descriptions: list[list[str]] | None = None

    #: the fields holding (B, ..., H, W) maps, which :meth:`resize_to` resizes
    map_fields: ClassVar[tuple[str, ...]] = ("maps",)

    def get(self, name: str) -> Any:
        """A method-specific field by name, None when this explanation's method has none (e.g.
        ``e.get("stage1_map")`` on any method's explanation)."""
        return getattr(self, name, None)

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

    def resize_to(self, size: tuple[int, int]) -> Explanation:
        """A copy whose maps (and a method's other maps, e.g. GFI's stage-1 map) are bilinearly
        resized to ``size`` = (H, W), e.g. an image's own size, staying in [0, 1]: what overlays,
        ``.npy`` files and metrics use."""
        from gfi.masks.channel_mask import resize_maps

        return replace(self, **{f: resize_maps(getattr(self, f), size) for f in self.map_fields
                                if getattr(self, f) is not None})

    def __len__(self) -> int:
        return self.maps.shape[0]

    @staticmethod
    def cat(parts: Sequence[Explanation]) -> Explanation:
        """The explanations of consecutive batches as one (of the first part's type): every tensor
        field (batch first) concatenated along the batch, None where a part has none; loss histories
        ((T, B, ...)) along their batch dimension, a shorter one (an early stop) padded with NaN;
        other fields (the method) the first's."""
        def history(hs: list[Tensor]) -> Tensor:
            t = max(h.shape[0] for h in hs)
            return torch.cat([torch.cat([h, h.new_full((t - h.shape[0], *h.shape[1:]), float("nan"))]) for h in hs],
                             1)

        kind = type(parts[0])
        if any(type(p) is not kind for p in parts):
            raise TypeError(f"Explanation.cat: parts of different kinds {sorted({type(p).__name__ for p in parts})}")
        out = {}
        for f in fields(kind):
            values = [getattr(p, f.name) for p in parts]
            if f.name == "loss_history":
                out[f.name] = {key: history([v[key] for v in values]) for key in values[0]}
            elif isinstance(values[0], Tensor):
                out[f.name] = None if any(v is None for v in values) else torch.cat(values)
            elif f.name == "target_descriptions":
                out[f.name] = None if any(v is None for v in values) else [row for v in values for row in v]
            else:
                out[f.name] = values[0]
        return kind(**out)


@dataclass
class MaskExplanation(Explanation):
    """The explanation of a method that optimises a mask (:mod:`gfi.masks.optimizer`): Meaningful
    Perturbation, extremal perturbation, the pixel mask, GFI.

    Attributes:
        loss_history: per stage, (T, B) or (T, B, K) losses of every iteration.
    """

    loss_history: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class InversionExplanation(MaskExplanation):
    """The explanation of a method with a class-agnostic stage 1 (Alg. 1; ``has_stage1``): GFI and
    the pixel mask.

    Attributes:
        stage1_map: (B, H, W) the class-agnostic inversion map (Fig. 3b).
        stage1_collapsed: (B,) True where the stage-1 map was constant (then zeros).
    """

    stage1_map: Tensor | None = None
    stage1_collapsed: Tensor | None = None

    map_fields: ClassVar[tuple[str, ...]] = ("maps", "stage1_map")


def _class_index(value: Any, where: str) -> int:
    """``value`` as one class index (:func:`gfi.targets.class_index_of`)."""
    return class_index_of(value, where)


def as_targets(targets: TargetsLike, batch: int, device: torch.device, logits: Any = None,
               num_classes: int | None = None) -> TargetGrid:
    """Targets as the (B, K) :class:`~gfi.targets.TargetGrid` every method consumes; anything else
    is a one-line :class:`TargetError`.

    ``None`` = each image's top-1 class (needs ``logits``, (B, classes) scores); a :class:`TargetGrid`
    = itself (checked against the batch and the classes); an int or a target
    (a :class:`~gfi.targets.Target`, or any callable of the model's output, wrapped in a
    :class:`~gfi.targets.CallableTarget`) = that target for every image; a flat sequence (or 1-D
    tensor) of exactly B of those = one per image; a sequence of B sequences of K, or a (B, K)
    tensor = K per image (stage 1 of GFI runs once per image for all K). A plain int is
    :class:`~gfi.targets.ClassTarget`, each method's own reading of the class; when every target is
    one, the grid keeps them as a (B, K) tensor (:attr:`~gfi.targets.TargetGrid.indices`). Nothing
    is reinterpreted: a flat sequence of another length than B, a string (``"243"`` is not class 243,
    and never the classes 2, 4, 3), a bool, a float or a target class rather than an instance
    (``Softmax`` for ``Softmax(3)``) is refused, and so are class indices out of the model's
    ``num_classes`` and more plain class indices per image than it has classes.
    """
    t: Tensor | None = None
    rows: list[list[Target]] | None = None
    if isinstance(targets, TargetGrid):  # already a grid (one image's rows of a batch's)
        if targets.shape[0] != batch:
            raise TargetError(f"a grid of targets for {targets.shape[0]} image(s) does not fit a batch of {batch}")
        if targets.indices is None:
            rows = [list(r) for r in targets.rows]
        else:
            t = targets.indices.to(device)
    elif targets is None:
        if logits is None:
            raise ValueError("targets=None means top-1, which needs the model's logits")
        if not isinstance(logits, Tensor) or logits.ndim != 2:
            raise TargetError(f"targets=None means each image's top-1 class, for which the model must return a 2-D "
                              f"(batch, classes) score tensor; it returned {describe_output(logits)}: give a target "
                              "(gfi.targets: SegmentationTarget, DetectionTarget, OutputIndex, or a callable)")
        t = logits.argmax(-1, keepdim=True)
    elif isinstance(targets, Tensor):
        if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
            raise TargetError(f"targets must be integer class indices, got a {targets.dtype} tensor; "
                              "use targets.long() if its values are class indices")
        t = targets.to(device=device, dtype=torch.long)
        if t.ndim == 0:
            t = t.expand(batch).unsqueeze(1)
        elif t.ndim == 1:
            _flat_fits(t.shape[0], batch, "a 1-D tensor")
            t = t.unsqueeze(1)
    elif hasattr(targets, "__array__") and not isinstance(targets, numbers.Integral):  # a numpy array
        return as_targets(torch.as_tensor(targets), batch, device, logits, num_classes)
    elif not isinstance(targets, Sequence) or isinstance(targets, str | bytes):
        rows = [[as_target(targets, f"targets={targets!r}")]] * batch
    else:
        seq = list(targets)
        nested = [isinstance(s, Sequence | Tensor) and not isinstance(s, str | bytes) and
                  not (isinstance(s, Tensor) and s.ndim == 0) for s in seq]
        if seq and all(nested):
            lens = {len(s) for s in seq}
            if len(lens) != 1:
                raise TargetError(f"every image needs the same number of targets, got counts {sorted(lens)}; "
                                  "explain images with different counts in separate calls")
            rows = [[as_target(c, f"target {c!r} of image {i}") for c in s] for i, s in enumerate(seq)]
        elif any(nested):
            raise TargetError("targets mix single targets and lists of targets; give one target per image "
                              "(a flat list of B) or K targets per image (B lists of K)")
        else:
            _flat_fits(len(seq), batch, "a flat list")
            rows = [[as_target(c, f"target {c!r} of image {i}")] for i, c in enumerate(seq)]
    if t is None and rows is not None and all(type(c) is ClassTarget for r in rows for c in r):
        t = torch.tensor([[c.class_index for c in r] for r in rows], dtype=torch.long,
                         device=device).reshape(len(rows), -1)
    if t is None:
        grid = TargetGrid(rows)
        if grid.shape[0] != batch or grid.shape[1] == 0:
            raise TargetError(f"targets for {grid.shape[0]} image(s) x {grid.shape[1]} do not fit a batch of "
                              f"{batch} images; give one target per image or K per image")
        if num_classes is not None:
            bad = sorted({c for r in rows for tg in r for c in tg.classes() if not 0 <= c < num_classes})
            if bad:
                raise TargetError(f"target class(es) {bad} out of range: the model has {num_classes} classes "
                                  f"(0..{num_classes - 1})")
        return grid
    if t.ndim != 2 or t.shape[0] != batch or t.shape[1] == 0:
        raise TargetError(f"targets of shape {tuple(t.shape)} do not fit a batch of {batch} images; "
                          "give (B,) or (B, K) class indices")
    if num_classes is not None and t.shape[1] > num_classes:
        raise TargetError(f"{t.shape[1]} targets per image, but the model has only {num_classes} classes: at most "
                          f"{num_classes} distinct targets per image")
    if num_classes is not None and ((t < 0) | (t >= num_classes)).any():
        bad = t[(t < 0) | (t >= num_classes)].unique().tolist()
        raise TargetError(f"target class(es) {bad} out of range: the model has {num_classes} classes "
                          f"(0..{num_classes - 1})")
    return TargetGrid.of_indices(t.contiguous())


def target_score_terms(grid: TargetGrid, output: Any, score: Literal["prob", "log"],
                       multilabel: bool) -> tuple[Tensor, Tensor]:
    """Eq. (9)'s class terms (gain, loss), each (B, K), of a grid's targets from the model's output for
    2 x B x K images (the kept images, then the removed; row b * K + k of each half is target (b, k)):
    each target's own score through :func:`gfi.objectives.score_term`, a plain class index read as
    f_c (what :func:`gfi.objectives.target_terms` computes from the logits)."""
    grid = grid.read("prob", multilabel)
    kept, removed = split_rows(output, grid.shape[0] * grid.shape[1])
    log = score == "log"
    gain = grid.apply(kept, lambda t, o: score_term(t, o, log, removed=False))
    loss = grid.apply(removed, lambda t, o: score_term(t, o, log, removed=True))
    return gain.view(grid.shape), loss.view(grid.shape)


def _flat_fits(n: int, batch: int, what: str) -> None:
    """A flat sequence of targets gives one class per image: it must have ``batch`` entries."""
    if n != batch:
        raise TargetError(f"targets: {what} gives one class per image, so it needs {batch} entries for {batch} "
                          f"image(s), got {n}; for the same classes on every image give a list per image "
                          f"({'[[c1, c2, ...]] * ' + str(batch)}) or a ({batch}, K) tensor")


PIXEL_TOLERANCE = 1e-3  # resampling round-off; anything further out is the wrong scale


def check_images(images: Tensor, channels: int = 3) -> Tensor:
    """``images`` if they are a finite (B, C, H, W) float batch in [0, 1] with C = ``channels`` (the
    classifier's); else a one-line error naming the fix (e.g. pixels in 0..255, a grey image for an
    RGB model, a 3-D volume)."""
    if not isinstance(images, Tensor) or images.ndim != 4:
        raise InputError(shape_problem(images, channels))
    if images.shape[1] != channels:
        raise InputError(channel_problem(images.shape[1], channels))
    if not torch.is_floating_point(images):
        raise InputError(f"images must be floating point in [0, 1], got {images.dtype}")
    if not torch.isfinite(images).all():
        raise InputError("images contain NaN or inf")
    if images.numel():
        lo, hi = float(images.detach().min()), float(images.detach().max())
        if lo < -PIXEL_TOLERANCE:
            raise InputError(f"images must be in [0, 1]; got min {lo:.4g}: pass images before normalisation "
                             "(the Classifier applies the model's mean and std itself)")
        if hi > 1 + PIXEL_TOLERANCE:
            raise InputError(f"images must be in [0, 1]; got max {hi:.4g}"
                             + (": divide by 255" if hi > 2 else ": clamp them to [0, 1]"))
    return images


class Explainer(ABC):
    """Base class of every method: one object per method, one verb, :meth:`explain`.

    ``Method(classifier, config=None, *, options=None, **overrides)``: ``config`` is a
    ``settings_class`` object or a preset name (None: the defaults); ``overrides`` name fields of
    ``settings_class`` or of :class:`RunOptions`, and each goes to its own.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    settings_class: ClassVar[type[Settings]] = NoSettings
    presets: ClassVar[tuple[str, ...]] = ()
    has_stage1: ClassVar[bool] = False
    cheaper: ClassVar[dict[str, Any]] = {}
    #: settings under which it runs in well under a second on a small test model (a 32 x 32 CNN) and
    #: still puts its maximum where the model looks: gfi's tests run every method with them
    #: (tests/methods/test_registry.py and the others that loop over the registry), so a new method
    #: brings its own in its own file
    test_settings: ClassVar[dict[str, Any]] = {}
    # What the method supports, for the generated table in docs/METHOD.md (`gfi methods --table`);
    # tests/methods/test_support.py checks each claim by running the method.
    #: which CNNs it runs on ("yes": any)
    supports_cnn: ClassVar[str] = "yes"
    #: runs on a token model (ViT, DeiT, Swin) through the Classifier's reshape_transform
    supports_tokens: ClassVar[bool] = True
    #: runs on a multi-label (sigmoid) classifier
    supports_multilabel: ClassVar[bool] = True
    #: what K targets of one image share in one call: "all" (no pass depends on the target),
    #: "stage 1" (the class-agnostic stage runs once), "first forward" (only the class-score pass;
    #: each target's rows are batched into the same passes)
    shares_across_targets: ClassVar[Literal["all", "stage 1", "first forward"]] = "first forward"
    #: its tensors stay on the model's device (CPU or GPU), with no host round trip inside
    any_device: ClassVar[bool] = True
    #: it hooks or inspects the model's modules (a named layer, the ReLUs, a rule per module), so it
    #: needs an ``nn.Module``; False: it only calls the model (gradients with respect to the pixels,
    #: perturbations), so a plain callable runs it too (Captum's ``forward_func``; gfi.frontends).
    #: True unless a method says otherwise: a plain callable is then refused in one line, never half run.
    needs_module: ClassVar[bool] = True
    #: it explains :mod:`gfi.targets` objects (a class score, a segmentation or detection target, a
    #: contrastive difference, a callable), reading them through :meth:`_target_grid`; False: plain
    #: class indices only, through :meth:`_targets_and_probs` (other targets are refused before any work)
    target_objects: ClassVar[bool] = False

    def __init__(self, classifier: Classifier, config: Settings | str | None = None, *,
                 options: RunOptions | None = None, **overrides: Any) -> None:
        if not isinstance(classifier, Classifier):
            raise TypeError("wrap the model first: gfi.Classifier(model, ...) or gfi.load_model(name)")
        self.classifier = classifier
        self.config, self.options = self.resolve(config, options, overrides)

    @classmethod
    def preset_names(cls) -> tuple[str, ...]:
        """The presets this method accepts: ``"default"`` (its fields' defaults), then :attr:`presets`."""
        return tuple(dict.fromkeys(("default", *cls.presets)))

    @classmethod
    def check_preset(cls, name: str) -> None:
        """A :class:`~gfi.errors.SettingsError` naming this method's presets unless ``name`` is one."""
        if name not in cls.preset_names():
            raise SettingsError(f"{cls.name or cls.__name__} has no preset {name!r}; its presets: "
                                f"{', '.join(cls.preset_names())}")

    @classmethod
    def preset_config(cls, name: str) -> Settings:
        """The settings of preset ``name`` (one of :meth:`preset_names`; :func:`preset_settings`)."""
        cls.check_preset(name)
        return preset_settings(cls.settings_class, name)

    @classmethod
    def resolve(cls, config: Settings | str | None, options: RunOptions | None,
                overrides: Mapping[str, Any]) -> tuple[Settings, RunOptions]:
        """``(settings, run options)`` from the constructor's arguments: the one place where a
        method's settings and the run options are told apart (callers use
        :func:`gfi.methods.spec.resolve`; a method whose settings are partly fixed overrides this).
        An unknown key is a :class:`~gfi.errors.SettingsError` that names it and lists the valid ones."""
        own, run = cls.settings_class.names(), RunOptions.names()
        unknown = [k for k in overrides if k not in own and k not in run]
        if unknown:
            raise SettingsError(
                f"{cls.name or cls.__name__} has no setting {', '.join(map(repr, unknown))}; its settings: "
                f"{', '.join(own) or '(none)'}; run options: {', '.join(run)}")
        if config is None:
            config = cls.settings_class()
        elif isinstance(config, str):
            cls.check_preset(config)
            config = cls.preset_config(config)
        elif not isinstance(config, cls.settings_class):
            raise SettingsError(f"{cls.name} takes {cls.settings_class.__name__} settings or a preset name, "
                                f"got {type(config).__name__}")
        if options is None:
            options = RunOptions()
        elif not isinstance(options, RunOptions):
            raise SettingsError(f"options must be a RunOptions, got {type(options).__name__}")
        return (config.with_overrides({k: v for k, v in overrides.items() if k in own}),
                options.with_overrides({k: v for k, v in overrides.items() if k in run and k not in own}))

    def provenance(self) -> dict[str, Any]:
        """What decides this explainer's maps: its name and settings (the map store keys on it)."""
        return {"method": self.name, "config": self.config.to_dict()}

    #: ``progress(done, total)``, called by the iterative and sampling methods as they go inside one
    #: :meth:`explain` call (iterations, mask batches, noise samples); None: silent. The CLI sets it
    #: to draw a progress bar within an image.
    progress: Callable[[int, int], Any] | None = None

    def _progress(self, total: int) -> Callable[[int], None]:
        """A step function for a loop of ``total`` steps: ``step(n)`` reports n more done."""
        done = [0]

        def step(n: int = 1) -> None:
            done[0] += n
            if self.progress is not None:
                self.progress(min(done[0], total), total)

        return step

    def explain(self, images: Tensor, targets: TargetsLike = None, *, forward_args: Any = None,
                forward_kwargs: Mapping[str, Any] | None = None) -> Explanation:
        """Maps for ``images`` (B, C, H, W) in [0, 1] at the model's input size, per target (C: the
        classifier's ``channels``).

        ``forward_args`` (Captum's ``additional_forward_args``: a tuple, or one value) and
        ``forward_kwargs`` (a mapping) go to every forward of the model after the images: non-tensors
        and batch-1 tensors to every row, a tensor with one row per image follows its image
        (:mod:`gfi.models.forward_args`; such a call explains its images one at a time).

        Works whatever the caller's grad mode (``torch.no_grad()``, ``torch.inference_mode()``):
        the methods need gradients with respect to their masks or inputs, never the caller's graph,
        so the images are detached and gradients are enabled inside. The model runs in eval mode
        without parameter gradients (a model left in train mode keeps its BatchNorm statistics and
        its mode; :func:`gfi.models.layers.frozen`). A batch of 0 images gives an empty
        :class:`Explanation`.

        Thread-safe: the call holds the model's lock (:func:`gfi.models.layers.model_lock`), so
        calls on one model from several threads run one after the other and the model is left as
        it was; give each thread its own copy of the model to run them in parallel.

        Targets are checked before any work (:func:`as_targets`: a string, a flat list of another
        length than B, or more targets than the model has classes is a one-line
        :class:`~gfi.errors.TargetError`), and so is their number against free memory
        (:func:`gfi.models.memory.target_cap`)."""
        images = check_images(images, self.classifier.channels)
        extra = ForwardArgs.of(forward_args, forward_kwargs, self.classifier.device)
        if extra.per_image(images.shape[0]):
            return self._one_image_at_a_time(images, targets, extra)
        with torch.inference_mode(False), torch.enable_grad(), frozen(self.classifier.model), \
                self.classifier.compiling(self.options.compile), self.classifier.passing(extra):
            images = images.detach().to(self.classifier.device)
            if images.is_inference():
                images = images.clone()  # an inference tensor cannot enter autograd
            if images.shape[0] == 0:
                return self._empty(images, targets)
            if targets is not None:
                self._check_targets(images, targets)
            return self._explain(images, targets)

    def _one_image_at_a_time(self, images: Tensor, targets: TargetsLike, extra: ForwardArgs) -> Explanation:
        """:meth:`explain` with forward arguments that hold one row per image: one call per image, each
        with its own row, and the explanations joined (:meth:`Explanation.cat`).

        Such a call cannot be batched the way the methods batch their images: each lays its rows out
        in its own way (GFI's stage 2 sends (2, B, K) kept and removed images, RISE B x N masked
        copies, SmoothGrad B x N noisy samples), and an argument would have to follow each image into
        every one. The result is the one a batch would give, at the cost of B calls instead of one.
        Targets are checked for the whole batch first (:func:`as_targets`; None stays each image's
        top-1)."""
        b = images.shape[0]
        rows = None if targets is None else as_targets(targets, b, images.device,
                                                       num_classes=self.classifier.num_classes)
        parts = []
        for i in range(b):
            one = extra.image(i, b)
            parts.append(self.explain(images[i:i + 1], None if rows is None else rows.images(slice(i, i + 1)),
                                      forward_args=one.args, forward_kwargs=dict(one.kwargs)))
        return Explanation.cat(parts)

    def _check_targets(self, images: Tensor, targets: TargetsLike) -> None:
        """Refuse, before any work, targets that are not class indices of the model for this batch
        (:func:`as_targets`), kinds of target the method cannot explain (:meth:`check_target`) and a
        number per image beyond what memory holds
        (:func:`gfi.models.memory.target_cap`; checked when B x K exceeds ``CHECKED_ROWS``)."""
        from gfi.models.memory import CHECKED_ROWS, target_cap

        b = images.shape[0]
        grid = as_targets(targets, b, images.device, num_classes=self.classifier.num_classes)
        if grid.indices is None:
            for target in {id(t): t for t in grid.flat}.values():
                self.check_target(target)
        k = grid.shape[1]
        if b * k <= CHECKED_ROWS:
            return
        cap = target_cap(self.classifier, b, tuple(images.shape[-2:]))
        if cap is not None and k > cap.most:
            h, w = images.shape[-2:]
            raise TargetError(cap.refusal(k, f"{b} image(s) of {h}x{w}",
                                          "explain fewer targets per call (or fewer images per call)"))

    def check_target(self, target: Target) -> None:
        """Refuse, before any work, a kind of target the method cannot explain (a one-line
        :class:`~gfi.errors.NotApplicable` naming why). A method with ``target_objects`` accepts every
        kind unless it says otherwise (CAM: class logits and their contrastive differences; LRP: class
        logits); one without takes plain class indices only."""
        if not self.target_objects and type(target) is not ClassTarget:
            raise NotApplicable(f"{self.name or type(self).__name__} explains plain class indices only, not "
                                f"{target.describe()}; gfi's own methods take any target (gfi.targets)")

    def _empty(self, images: Tensor, targets: TargetsLike) -> Explanation:
        k = 1
        if isinstance(targets, Tensor) and targets.ndim == 2:
            k = targets.shape[1]
        elif isinstance(targets, Sequence) and not isinstance(targets, str) and targets and \
                isinstance(targets[0], Sequence):
            k = len(targets[0])
        h, w = images.shape[-2:]
        return Explanation(maps=images.new_zeros(0, k, h, w), targets=torch.zeros(0, k, dtype=torch.long,
                           device=images.device), method=self.name, probs=images.new_zeros(0, k),
                           target_descriptions=[])

    __call__ = explain

    @abstractmethod
    def _explain(self, images: Tensor, targets: TargetsLike) -> Explanation: ...

    def _targets_and_probs(self, images: Tensor, targets: TargetsLike,
                           logits: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(B, K) class indices and the model's scores f_c for them on ``images``: for a method that
        reads plain class indices only (``target_objects`` False; a target object is refused before any
        work by :meth:`check_target`). A method that takes :mod:`gfi.targets` objects calls
        :meth:`_target_grid`."""
        grid, probs = self._target_grid(images, targets, logits)
        if grid.indices is None:
            raise NotApplicable(f"{self.name} explains plain class indices only, not "
                                f"{next(t.describe() for t in grid.flat if type(t) is not ClassTarget)}")
        return grid.indices, probs

    def _target_grid(self, images: Tensor, targets: TargetsLike, logits: Any = None) -> tuple[TargetGrid, Tensor]:
        """The (B, K) :class:`~gfi.targets.TargetGrid` and each target's score on ``images``
        (:attr:`Explanation.probs`) from the model's output ``logits`` (computed when None)."""
        if logits is None:
            with torch.no_grad():
                logits = self.classifier(images)
        classes = logits.shape[-1] if isinstance(logits, Tensor) and logits.ndim == 2 else self.classifier.num_classes
        grid = as_targets(targets, images.shape[0], images.device, logits, classes)
        if grid.indices is not None and isinstance(logits, Tensor) and logits.ndim == 2:
            return grid, self.classifier.scores(logits.float()).gather(1, grid.indices)
        with torch.no_grad():
            probs = grid.score_each(logits, "prob", self.classifier.multilabel).float()
        return grid, probs.to(images.device)

    def _fields(self, grid: TargetGrid, probs: Tensor) -> dict[str, Any]:
        """The :class:`Explanation` fields that say what was explained: ``targets`` (the class
        indices), ``target_descriptions`` and ``probs``."""
        return {"targets": grid.classes(probs.device), "target_descriptions": grid.describe(), "probs": probs}

    # -- run options ------------------------------------------------------------------------------
    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The ``autocast`` run option as a context manager (a no-op for ``"none"``)."""
        if self.options.autocast == "none":
            return contextlib.nullcontext()
        if device == getattr(self, "_autocast_checked", None):
            return torch.autocast(device.type, dtype=torch.bfloat16)
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise SettingsError(f"autocast='bf16' needs a GPU with bfloat16 support; "
                                f"{torch.cuda.get_device_name(device)} has none. Use autocast='none'.")
        if device.type not in ("cuda", "cpu"):
            raise SettingsError(f"autocast='bf16' is supported on cuda and cpu, not {device.type}; "
                                "use autocast='none'")
        self._autocast_checked = device  # checked once, not at every iteration
        return torch.autocast(device.type, dtype=torch.bfloat16)

    def _layout(self, x: Tensor) -> Tensor:
        """Images in the memory format the ``channels_last`` run option asks for."""
        return x.contiguous(memory_format=torch.channels_last) if self.options.channels_last else x

    def _batch_size(self, default: int) -> int:
        """Images per forward of a sampling method: the ``batch_size`` run option, else ``default``."""
        return self.options.batch_size or default
