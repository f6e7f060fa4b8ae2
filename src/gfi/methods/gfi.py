r"""Guided Feature Inversion (Du, Liu, Song, Hu, KDD 2018), both stages.

Stage 1, guided feature inversion (Alg. 1; Eq. 2, 6, 7, 8)::

    m      = Upsample_bilinear(MinMax(sum_i w_i f^{l1}_i(x)))                     (6), (7)
    Phi    = x * m + p * (1 - m)                                                  (2)
    L_inv  = ||f^{l0}(Phi) - f^{l0}(x)||^2 + gamma ||w||_1 ,   w >= 0 by clipping  (8)

Stage 2, class-discriminative fine-tuning (Alg. 2; Eq. 4, 9), starting from stage 1's w::

    Phi_bg   = x * (1 - m) + p * m                                                (4)
    L_target = -f_c(Phi) + lambda f_c(Phi_bg) + delta ||w||_1 ,  w >= 0            (9)

with f_c the softmax probability of class c (the sigmoid of its logit for a multi-label model)
and the learning rate halved every 10 iterations.

Batching: w is a (B, K, C) tensor, one row per image and target. Every loss is a sum of
per-row terms and Adam is element-wise, so a batch gives the same result as B * K separate runs.
Stage 1 does not depend on the class and runs once per image (K = 1); stage 2 starts K copies.

Several targets of one image (``joint``, beyond the paper): ``independent`` (the default) explains
each as if alone, Eq. 9 as it is, one stage-2 pass per target, so that each map is bit for bit
its map alone; ``contrastive`` adds the terms that use the other targets' scores (the contrastive
start ``contrast_init``, ``contrast``, ``keep_others``); ``separate`` adds to those the overlap of
the targets' masks (``exclusion``). docs/METHOD.md, "Several targets of one image".

The readings of what the paper leaves open are :class:`GFIConfig` fields; their values and the
experiments behind them are in ``docs/METHOD.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from gfi.errors import NotApplicable, SettingsError, TargetError
from gfi.masks.backgrounds import make_background
from gfi.masks.channel_mask import KeptAndRemoved, Upsampler, channel_mask
from gfi.masks.optimizer import EarlyExit, MaskOptimizer, Optimized, StepDecay, plateaued
from gfi.methods.base import (
    Explainer,
    Explanation,
    InversionExplanation,
    RunOptions,
    TargetsLike,
    paper_values,
    preset_settings,
    target_score_terms,
)
from gfi.models.layers import LayerNotFoundError, capture, channels_last, frozen, layer_gradients, run_until
from gfi.objectives import (
    class_scores,
    contrast_term,
    inversion_error,
    l1_norm,
    mask_overlap,
    other_targets,
    others_removed_term,
    target_terms,
    total_variation,
)
from gfi.settings import Settings, setting
from gfi.targets import ClassTarget, TargetGrid

_log = logging.getLogger(__name__)

__all__ = ["PAPER_SETTINGS", "GFIConfig", "GFIExplanation", "GuidedFeatureInversion", "GuidedFeatureInversionStage1",
           "inversion_error", "l1_penalty", "plateaued", "target_terms"]


@dataclass
class GFIExplanation(InversionExplanation):
    """GFI's explanation: every method's fields, stage 1's inversion map, and what only GFI has.

    Attributes:
        weights: (B, K, C) the channel weights w after stage 2 (Eq. 8; stage 1's for ``gfi-stage1``).
        stage1_weights: (B, C) stage 1's weights (Eq. 6).
        prob_kept: (B, K) f_c of the kept image Phi(x, m) (Eq. 2) under the final mask.
        prob_removed: (B, K) f_c of the removed image Phi_bg(x, m) (Eq. 4) under the final mask.
    """

    weights: Tensor | None = None
    stage1_weights: Tensor | None = None
    prob_kept: Tensor | None = None
    prob_removed: Tensor | None = None


@dataclass(frozen=True)
class GFIConfig(Settings):
    """What decides a GFI map. ``GFIConfig.paper()`` is the paper; ``GFIConfig()`` the tuned default.

    Each field's help says what it is; the readings of what the paper leaves open, the values of
    the default and the experiments behind them are in docs/METHOD.md. Fields with ``stage=2`` are
    read by stage 2 only (with ``stage2=False`` they do not change the map). Stage 2's early stop
    (``early_stop*``) is a setting: it ends the optimisation early and so changes the map. How fast a
    map is computed (bf16, channels-last, chunking) is a :class:`~gfi.methods.base.RunOptions`.
    """

    gamma: float = setting(1.0, "weight of ||w||_1 in stage 1 (Eq. 8)", paper=10.0, low=0)
    delta: float = setting(1.0, "weight of ||w||_1 in stage 2 (Eq. 9; the paper uses 10 for its VOC model)",
                           paper=1.0, low=0, stage=2)
    lam: float = setting(1.0, "lambda, weight of the removed image's score in Eq. 9", paper=1.0, low=0, stage=2)
    w_init: float = setting(0.1, "initial value of every channel weight w_i", paper=0.1, low=0)
    lr1: float = setting(1e-2, "Adam learning rate of stage 1", paper=1e-2, low=0, low_open=True)
    lr2: float = setting(3e-3, "Adam learning rate of stage 2", paper=1e-2, low=0, low_open=True, stage=2)
    iters1: int = setting(10, "iterations of stage 1", paper=10, low=0)
    iters2: int = setting(30, "iterations of stage 2", paper=70, low=0, stage=2)
    lr_decay_every: int = setting(10, "stage 2 multiplies its learning rate by lr_decay every this many iterations",
                                  paper=10, low=1, stage=2)
    lr_decay: float = setting(0.5, "factor of stage 2's learning-rate decay", paper=0.5, low=0, low_open=True,
                              stage=2)
    background: Literal["blur", "mean", "noise"] = setting(
        "blur", "the background p of Eq. 2 and 4: a blur of the image, the mean colour (ImageNet's; a non-RGB "
                "model's own mean), or noise", paper="blur")
    blur_kernel: int = setting(11, "kernel size of stage 1's blurred background", paper=11, odd=True)
    blur_sigma: float = setting(5.0, "sigma of stage 1's blurred background", paper=5.0, low=0, low_open=True)
    blur_kernel2: int | None = setting(81, "kernel size of stage 2's blurred background (none: stage 1's)",
                                       paper=None, odd=True, stage=2)
    blur_sigma2: float | None = setting(20.0, "sigma of stage 2's blurred background (none: stage 1's)",
                                        paper=None, low=0, low_open=True, stage=2)
    noise_std: float = setting(0.2, "standard deviation of the noise background", low=0)
    inversion_error: Literal["sum", "relative"] = setting(
        "relative", "Eq. 8's inversion error: summed over the inversion layer's features, or relative to "
                    "their squared norm", paper="sum")
    l1_norm: Literal["sum", "mean"] = setting("mean", "||w||_1 summed over the channels, or their mean",
                                              paper="sum")
    l1_grad_at_zero: Literal["one", "zero"] = setting(
        "one", "subgradient of the L1 term at w_i = 0: one (||w||_1 = sum(w) on w >= 0) or zero (abs)",
        paper="one")
    score: Literal["prob", "log"] = setting(
        "log", "stage 2's class score: the probability f_c, or -log f_c(kept) - lambda log(1 - f_c(removed))",
        paper="prob", stage=2)
    area1: float = setting(4.0, "weight of the mask's mean area added to Eq. 8", paper=0.0, low=0)
    area2: float = setting(0.1, "weight of the mask's mean area added to Eq. 9", paper=0.0, low=0, stage=2)
    tv1: float = setting(0.0, "weight of the mask's total variation added to Eq. 8", paper=0.0, low=0)
    tv2: float = setting(0.0, "weight of the mask's total variation added to Eq. 9", paper=0.0, low=0, stage=2)
    joint: Literal["independent", "contrastive", "separate"] = setting(
        "independent", "what several targets of one image explained together mean: independent (each target's "
                       "map is its map alone), contrastive (why c rather than the other targets: contrast_init, "
                       "contrast, keep_others), separate (the targets are different objects: those and the "
                       "mask-overlap term exclusion)", paper="independent", stage=2)
    contrast: float = setting(0.0, "joint=contrastive or separate: weight of the other targets' scores on target "
                                   "c's kept image, added to Eq. 9 (all K targets of the image, whatever the chunk)",
                              paper=0.0, low=0, stage=2)
    keep_others: float = setting(0.0, "joint=contrastive or separate: weight of the other targets' scores on "
                                      "target c's removed image, added to Eq. 9 as -log f_c'(Phi_bg(x, m_c)) "
                                      "(removing c must not remove the others; all K targets of the image)",
                                 paper=0.0, low=0, stage=2)
    exclusion: float = setting(1000.0, "joint=separate: weight of the overlap of target c's mask with the image's "
                                       "other targets' masks, added to Eq. 9 as mean(m_c * m_c') over the others "
                                       "(different objects do not share pixels; needs all K targets in one batch, "
                                       "no --chunk)",
                               paper=0.0, low=0, stage=2)
    contrast_init: float = setting(0.5, "joint=contrastive or separate, with stage2_init=gradient: start target c "
                                        "from Grad-CAM's weights of the logit difference y_c - beta * mean of the "
                                        "other targets' logits, beta this value (1: contrastive Grad-CAM)",
                                   paper=0.0, low=0, stage=2)
    rivals: int = setting(10, "contrast each target with the model's own strongest rivals for the image: its top "
                              "this many other classes on the image (from the model's output, no other "
                              "information), less those that name the same object (rival_overlap); 0: off; "
                              "class-index targets only", paper=0, low=0, stage=2)
    rival_overlap: float = setting(0.5, "with rivals: a rival whose Grad-CAM map has a cosine similarity above this "
                                        "with the target's names the same object and is skipped", low=-1, high=1,
                                   stage=2)
    rival_init: float = setting(2.0, "with rivals and stage2_init=gradient: start target c from Grad-CAM's weights "
                                     "of y_c - beta * mean of its kept rivals' logits, beta this value",
                                low=0, stage=2)
    rival_min_prob: float = setting(1e-3, "with rivals: a target the model gives less than this probability on "
                                          "the image (softmax; sigmoid for a multi-label model) is explained "
                                          "without rivals (the image's own objects would be its rivals)",
                                    low=0, high=1, stage=2)
    rival_keep: float = setting(0.0, "with rivals: weight of the kept rivals' scores on target c's removed image, "
                                     "added to Eq. 9 as mean -log f_r(Phi_bg(x, m_c)) (removing c must not "
                                     "remove its rivals)", low=0, stage=2)
    rival_exclusion: float = setting(0.0, "with rivals: weight of the overlap of target c's mask with its kept "
                                          "rivals' Grad-CAM masks, added to Eq. 9 as mean(m_c * m_r)", low=0,
                                     stage=2)
    stage2_init: Literal["stage1", "gradient"] = setting(
        "gradient", "where stage 2 starts: stage 1's w, or Grad-CAM's channel weights at the channel layer",
        paper="stage1", stage=2)
    nonnegative: bool = setting(False, "clip stage 2's weights at 0 after every step (stage 1 always clips)",
                                paper=True, stage=2)
    stage2_step: Literal["absolute", "relative"] = setting(
        "absolute", "stage 2's Adam steps: on w itself (absolute, as the paper), or on theta with "
                    "w = w_start + |w_start| * theta (relative: each weight moves in units of its own start, so "
                    "a channel the start weighs near 0 stays near 0; needs fresh_optimizer)",
        paper="absolute", stage=2)
    fresh_optimizer: bool = setting(True, "stage 2 starts a new Adam rather than continuing stage 1's moments",
                                    paper=True, stage=2)
    early_stop: bool = setting(
        False, "end stage 2 of an image once its maps have settled (beyond the paper; it changes the map: "
               "docs/PERFORMANCE.md); finished images leave the batch", paper=False, stage=2)
    early_stop_rule: Literal["loss", "peak"] = setting(
        "loss", "with early_stop: settled = the window-mean loss improves by at most early_stop_tol (loss), or "
                "the map's maximum moved at most early_stop_px over early_stop_windows windows (peak)", stage=2)
    early_stop_every: int = setting(5, "with early_stop: iterations per window of the check", low=1, stage=2)
    early_stop_tol: float = setting(
        0.005, "with early_stop and the loss rule: relative improvement of the window-mean loss at or below which "
               "an image stops", low=0, stage=2)
    early_stop_windows: int = setting(
        3, "with early_stop and the peak rule: windows over which the maximum must stay put", low=1, stage=2)
    early_stop_px: float = setting(
        15.0, "with early_stop and the peak rule: how far (pixels of the model's input) the maximum may move "
              "and still count as put", low=0, stage=2)
    stage2: bool = setting(True, "run stage 2; false gives the stage-1 inversion map")
    seed: int = setting(0, "seed of the noise background")

    PRESETS: ClassVar[tuple[str, ...]] = ("paper", "default", "fast")
    #: presets that change the default in a few fields. ``fast``: a fifth of the default's passes
    #: (4 + 3 iterations at lr2 8e-3: 1 + 4 + 1 + 2 x 3 + 2 = 14 image passes for one target, against
    #: 74), chosen on the tuning half of the dev data (docs/PERFORMANCE.md, "A fast preset")
    PRESET_CHANGES: ClassVar[dict[str, dict[str, Any]]] = {"fast": {"iters1": 4, "iters2": 3, "lr2": 0.008}}

    #: the terms each ``joint`` mode adds to Eq. 9 (their weights); a mode leaves the others out
    JOINT_TERMS: ClassVar[dict[str, tuple[str, ...]]] = {
        "independent": (),
        "contrastive": ("contrast_init", "contrast", "keep_others"),
        "separate": ("contrast_init", "contrast", "keep_others", "exclusion"),
    }

    #: the fields read only with ``rivals`` > 0
    RIVAL_FIELDS: ClassVar[tuple[str, ...]] = ("rival_overlap", "rival_init", "rival_min_prob", "rival_keep",
                                               "rival_exclusion")

    #: the early-stop fields each rule reads (with ``early_stop`` off, none is read)
    EARLY_STOP_READS: ClassVar[dict[str, tuple[str, ...]]] = {
        "loss": ("early_stop_rule", "early_stop_every", "early_stop_tol"),
        "peak": ("early_stop_rule", "early_stop_every", "early_stop_windows", "early_stop_px"),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_early_stop()
        if not self.rivals:
            for name in self.RIVAL_FIELDS:
                if getattr(self, name) != _DEFAULTS[name]:
                    raise SettingsError(f"{name}={getattr(self, name):g} is read only with rivals > 0 (the model's "
                                        f"own top classes for the image); add --rivals N, or leave {name} out")
        read = self.JOINT_TERMS[self.joint]
        for name in self.JOINT_TERMS["separate"]:
            value = getattr(self, name)
            if name not in read and value != 0 and value != _DEFAULTS[name]:
                modes = [m for m, terms in self.JOINT_TERMS.items() if name in terms]
                raise SettingsError(
                    f"{name}={value:g} is read only with {' or '.join(f'joint={m}' for m in modes)} "
                    f"({_JOINT_MEANS[modes[0]]}); joint={self.joint} ignores it: choose joint={modes[0]} "
                    f"(--joint {modes[0]}), or leave {name} out")

    def _check_early_stop(self) -> None:
        """An early-stop field away from its default that the early stop as set does not read is refused
        (e.g. ``early_stop_tol`` without ``early_stop``): it would change nothing, silently."""
        read = self.EARLY_STOP_READS[self.early_stop_rule] if self.early_stop else ()
        for name in dict.fromkeys(self.EARLY_STOP_READS["loss"] + self.EARLY_STOP_READS["peak"]):
            value = getattr(self, name)
            if name in read or value == _DEFAULTS[name]:
                continue
            needs = {"early_stop": "true"}
            if name not in self.EARLY_STOP_READS["peak"]:
                needs["early_stop_rule"] = "loss"
            elif name not in self.EARLY_STOP_READS["loss"]:
                needs["early_stop_rule"] = "peak"
            missing = [f"--{k.replace('_', '-')} {v}" for k, v in needs.items() if str(getattr(self, k)).lower() != v]
            wanted = " and ".join(f"{k}={v}" for k, v in needs.items())
            raise SettingsError(f"{name}={value} is read only with {wanted}; add {' '.join(missing)}, "
                                f"or leave {name} out")

    def joint_weight(self, name: str) -> float:
        """The weight of the multi-target term ``name`` as stage 2 uses it: its value where ``joint``
        reads it (:attr:`JOINT_TERMS`), else 0."""
        return float(getattr(self, name)) if name in self.JOINT_TERMS[self.joint] else 0.0

    @classmethod
    def paper(cls, **overrides: Any) -> GFIConfig:
        """Exactly the paper's settings (Sec. 4.1.1, Alg. 1-2), plus ``overrides``."""
        return preset_settings(cls, "paper", overrides)

    @classmethod
    def fast(cls, **overrides: Any) -> GFIConfig:
        """The ``fast`` preset (under a fifth of the default's passes; :attr:`PRESET_CHANGES`), plus ``overrides``."""
        return preset_settings(cls, "fast", overrides)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> GFIConfig:
        """Preset ``name`` (``"paper"``, ``"default"`` or ``"fast"``) plus ``overrides``."""
        if name not in cls.PRESETS:
            raise SettingsError(f"unknown GFI preset {name!r}; choose one of {', '.join(cls.PRESETS)}")
        return preset_settings(cls, name, overrides)

    @property
    def stage2_blur(self) -> tuple[int, float]:
        """(kernel, sigma) of stage 2's blur: ``blur_kernel2``/``blur_sigma2``, or stage 1's where None."""
        return (self.blur_kernel if self.blur_kernel2 is None else self.blur_kernel2,
                self.blur_sigma if self.blur_sigma2 is None else self.blur_sigma2)


#: the defaults of the multi-target weights (a mode that ignores a weight accepts it at its default or 0)
_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(GFIConfig)
                             if f.name in GFIConfig.JOINT_TERMS["separate"] or f.name.startswith("early_stop_")
                             or f.name in GFIConfig.RIVAL_FIELDS}
_JOINT_MEANS = {"contrastive": "each target explained against the others",
                "separate": "the targets are different objects"}


#: The paper's settings (Sec. 4.1.1, Alg. 1 and 2): the ``paper=`` values of GFIConfig's fields.
#: Where the text is ambiguous, the reading named in docs/METHOD.md.
PAPER_SETTINGS: dict[str, Any] = paper_values(GFIConfig)


def l1_penalty(w: Tensor, cfg: GFIConfig) -> Tensor:
    """||w||_1 over the last dim (:func:`gfi.objectives.l1_norm`) read as ``cfg.l1_norm`` /
    ``cfg.l1_grad_at_zero`` / ``cfg.nonnegative``."""
    return l1_norm(w, mean=cfg.l1_norm == "mean", grad_at_zero=cfg.l1_grad_at_zero, nonnegative=cfg.nonnegative)


class GuidedFeatureInversion(Explainer):
    """Guided Feature Inversion: ``GuidedFeatureInversion(classifier, config).explain(images, targets)``.

    ``images`` is (B, C, H, W) in [0, 1]; ``targets`` is None (top-1), an int, B ints, or (B, K)
    indices. Returns an :class:`Explanation` with the class maps, the stage-1 map, w, the loss
    history and the target's score on the kept and on the removed image.
    """

    name = "gfi"
    target_objects = True  # any gfi.targets target, through the target grid
    summary = "Guided Feature Inversion (Du et al. 2018): stage 1 + class-discriminative stage 2"
    settings_class = GFIConfig
    presets = GFIConfig.PRESETS
    has_stage1 = True
    shares_across_targets = "stage 1"
    test_settings: ClassVar[dict[str, Any]] = {"iters1": 10, "iters2": 20}
    config: GFIConfig

    @classmethod
    def preset_config(cls, name: str) -> GFIConfig:
        return GFIConfig.preset(name)

    # ------------------------------------------------------------------------------------------
    def _explain(self, images: Tensor, targets: TargetsLike) -> Explanation:
        cfg, opts, clf = self.config, self.options, self.classifier
        inversion_layer, channel_layer = clf.inversion_layer, clf.channel_layer
        with frozen(clf.model), channels_last(clf.model, opts.channels_last):
            # One forward: f^{l0}(x), f^{l1}(x) and the logits. Nothing here needs a graph.
            with torch.no_grad(), self._autocast(images.device):
                feats, logits = clf.activations(self._layout(images), [inversion_layer, channel_layer], stop=False)
            feats = {k: v.to(images.dtype) for k, v in feats.items()}
            logits = logits.to(images.dtype) if isinstance(logits, Tensor) else logits
            t, probs = self._target_grid(images, targets, logits)
            self._check_target_terms(t)
            f_inversion, f_channel = feats[inversion_layer], feats[channel_layer]
            if f_channel.ndim != 4:
                raise NotApplicable(f"channel layer {channel_layer} gives a {f_channel.ndim}-D tensor; Eq. (6) needs "
                                    "(B, C, h, w): give the Classifier a reshape_transform (for (B, tokens, C): "
                                    "gfi.models.tokens.TokenGrid(prefix_tokens=..., grid=(h, w)))")
            p, p2 = self.backgrounds(images)
            # independent targets: one stage-2 pass per target, each exactly the passes of that target
            # alone (batched passes of several targets may round differently); else chunks of the run option
            step = 1 if cfg.joint == "independent" else (opts.chunk or t.shape[1])
            n_chunks = -(-t.shape[1] // step)
            self._step = self._progress(cfg.iters1 + (cfg.iters2 * n_chunks if cfg.stage2 else 0))
            w1, hist1, adam1 = self.stage1(images, p, f_inversion, f_channel)
            up = Upsampler(f_channel.shape[-2:], images.shape[-2:], device=images.device, dtype=f_channel.dtype)
            with torch.no_grad():
                m1, col1 = channel_mask(w1, f_channel, up)
            exclusion = cfg.joint_weight("exclusion")
            if cfg.stage2 and exclusion and step < t.shape[1]:
                raise SettingsError(f"exclusion={cfg.exclusion:g} (joint=separate) compares each target's mask with "
                                    f"all {t.shape[1]} targets' masks, which chunk={opts.chunk} splits into separate "
                                    "batches; drop chunk (fewer images per batch saves memory too) or set exclusion=0")
            # the contrastive start needs every target's gradient at once; an independent target needs only its own
            # a target's rivals come from the image's logits and the target alone, so an independent target's
            # are found with it (as alone); the contrastive start of all K needs them at once
            together = cfg.joint != "independent"
            with_rivals = bool(cfg.stage2 and cfg.rivals) and self._rivals_apply(t, logits)
            rivals_all = self.find_rivals(images, t.indices, logits) if with_rivals and together else None
            whole = self.gradient_weights(images, t, rivals_all, f_channel) if cfg.stage2 and \
                cfg.stage2_init == "gradient" and together else None
            # each row's other targets (all K, whatever the chunk), for the contrast terms of class indices
            others = other_targets(t.indices) if t.indices is not None else \
                torch.zeros(*t.shape, t.shape[1] - 1, dtype=torch.long, device=images.device)
            parts = []
            for k in range(0, t.shape[1], step):
                tk = t.columns(k, k + step)
                if not cfg.stage2:
                    wk, hk = w1.expand(-1, tk.shape[1], -1), None
                else:
                    rk = rivals_all.part(k, k + step) if rivals_all is not None else \
                        self.find_rivals(images, tk.indices, logits) if with_rivals else None
                    if cfg.stage2_init != "gradient":
                        start = w1.expand(-1, tk.shape[1], -1)
                    else:
                        start = whole[:, k:k + step] if whole is not None else \
                            self.gradient_weights(images, tk, rk, f_channel)
                    wk, hk = self.stage2(images, p2, f_channel, start, tk,
                                         adam_state=None if cfg.fresh_optimizer else adam1,
                                         others=others[:, k:k + step], rivals=rk)
                with torch.no_grad():
                    mk, colk = channel_mask(wk, f_channel, up, rectify=not cfg.nonnegative)
                    both = KeptAndRemoved(images, p2)(mk).flatten(0, 2)
                    with self._autocast(images.device):
                        out = clf(self._layout(both))
                    if tk.indices is not None and isinstance(out, Tensor) and out.ndim == 2:
                        z = out.float().view(2, *tk.shape, -1)
                        idx = tk.indices.unsqueeze(0).unsqueeze(-1).expand(2, *tk.shape, 1)
                        sk = class_scores(z, clf.multilabel).gather(-1, idx).squeeze(-1)
                    else:  # each target's own score (f_c for a class index) on the kept and the removed images
                        rows = torch.arange(tk.shape[0] * tk.shape[1]).repeat(2)
                        sk = tk.score(out, "prob", clf.multilabel, rows=rows).float().view(2, *tk.shape)
                parts.append((wk, hk, mk, colk, sk))
            w2 = torch.cat([q[0] for q in parts], 1)
            hist2 = _cat_histories([q[1] for q in parts]) if cfg.stage2 else None
            m, col = torch.cat([q[2] for q in parts], 1), torch.cat([q[3] for q in parts], 1)
            s = torch.cat([q[4] for q in parts], 2)  # (2, B, K): kept, removed
        history = {"stage1": hist1}
        if hist2 is not None:
            history["stage2"] = hist2
        return GFIExplanation(
            maps=m, method=self.name if cfg.stage2 else GuidedFeatureInversionStage1.name,
            stage1_map=m1[:, 0], weights=w2.detach(), stage1_weights=w1[:, 0].detach(),
            prob_kept=s[0], prob_removed=s[1], loss_history=history, collapsed=col,
            stage1_collapsed=col1[:, 0], **self._fields(t, probs),
        )

    def _check_target_terms(self, grid: TargetGrid) -> None:
        """Refuse what stage 2 cannot read of targets that are not plain class indices (the ``contrast`` and
        ``keep_others`` terms read the other targets' class probabilities), and say once that a score that
        is not a probability is read linearly in Eq. 9 (docs/METHOD.md, "Targets")."""
        cfg = self.config
        if not cfg.stage2 or grid.indices is not None:
            return
        terms = [n for n in ("contrast", "keep_others") if cfg.joint_weight(n)]
        if terms:
            raise TargetError(f"{' and '.join(f'{n}={getattr(cfg, n):g}' for n in terms)} read(s) the other targets' "
                              "class probabilities, so it needs plain class indices as targets; with "
                              f"{grid.flat[0].describe()} leave {' and '.join(terms)} at 0, or explain a Contrastive "
                              "target (gfi.targets.Contrastive)")
        linear = sorted({x.describe() for x in grid.read("prob", self.classifier.multilabel).flat
                         if not x.probability})
        if cfg.score == "log" and linear and not getattr(self, "_noted_linear", False):
            self._noted_linear = True
            _log.info("method gfi: %s %s not a probability, so Eq. 9 reads it linearly (-s(kept) + lambda s(removed)) "
                      "rather than in score=log's form (docs/METHOD.md, \"Targets\")", ", ".join(linear[:3]),
                      "is" if len(linear) == 1 else "are")

    def _rivals_apply(self, grid: TargetGrid, logits: Any) -> bool:
        """Whether ``rivals`` applies to these targets: plain class indices (ints or
        :class:`~gfi.targets.ClassTarget`) of a model whose output is (B, classes) scores. A rival is
        another class of the image, contrasted through its logit; any other target (a
        :class:`~gfi.targets.Contrastive` target names its own contrast, a softmax, segmentation or
        detection score has no class logits to rival) is explained without rivals, said once in the
        log (docs/METHOD.md, "Rivals")."""
        if grid.indices is not None and isinstance(logits, Tensor) and logits.ndim == 2:
            return True
        if not getattr(self, "_noted_no_rivals", False):
            self._noted_no_rivals = True
            _log.info("method gfi: rivals=%d applies to class indices; %s is explained without rivals (docs/METHOD.md, "
                      "\"Rivals\")", self.config.rivals,
                      next((x.describe() for x in grid.flat if type(x) is not ClassTarget), "this model's output"))
        return False

    # ------------------------------------------------------------------------------------------
    def backgrounds(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """p of stage 1 and of stage 2 (the same tensor unless stage 2 runs with another blur)."""
        cfg = self.config
        p = make_background(images, cfg.background, blur_kernel=cfg.blur_kernel, blur_sigma=cfg.blur_sigma,
                            noise_std=cfg.noise_std, generator=torch.Generator().manual_seed(cfg.seed),
                            mean=self.classifier.background_mean)
        kernel2, sigma2 = cfg.stage2_blur
        if not cfg.stage2 or cfg.background != "blur" or (kernel2, sigma2) == (cfg.blur_kernel, cfg.blur_sigma):
            return p, p
        return p, make_background(images, "blur", blur_kernel=kernel2, blur_sigma=sigma2)

    # ------------------------------------------------------------------------------------------
    _step: Callable[..., None] = staticmethod(lambda n=1: None)  # replaced per explain call

    def stage1(self, x: Tensor, p: Tensor, f_inversion: Tensor, f_channel: Tensor) -> tuple[Tensor, Tensor, dict]:
        """Alg. 1: minimise Eq. (8) over w >= 0 (projected Adam, :class:`~gfi.masks.optimizer.MaskOptimizer`).
        Returns w (B, 1, C), the losses (T, B) and Adam's final state (moments), which stage 2
        continues when ``fresh_optimizer`` is False.

        Each iteration runs the network only up to l0 (the forward stops there); the hook that
        reads l0 is registered once for the loop.
        """
        cfg, clf = self.config, self.classifier
        inversion_layer = clf.inversion_layer
        up = Upsampler(f_channel.shape[-2:], x.shape[-2:], device=x.device, dtype=f_channel.dtype)
        blend = KeptAndRemoved(x, p).kept
        w0 = torch.full((x.shape[0], 1, f_channel.shape[1]), cfg.w_init, device=x.device, dtype=f_channel.dtype)
        with capture(clf.model, [inversion_layer], stop=True, clone=False) as store:

            def eq8(w: Tensor, _it: int) -> Tensor:
                m, _ = channel_mask(w, f_channel, up)
                phi = blend(m)[:, 0]
                store.clear()
                with self._autocast(x.device):
                    run_until(clf, self._layout(phi))
                if inversion_layer not in store:
                    raise LayerNotFoundError(f"layer {inversion_layer} was not reached by the forward pass; choose a "
                                             "layer that the model's forward runs (`gfi layers MODEL`)")
                f_phi = clf.as_map(store[inversion_layer]).to(x.dtype)
                return self._stage1_loss(f_phi, f_inversion, w, m)

            res = MaskOptimizer(cfg.lr1, project=(0, None), progress=self._step).run(w0, eq8, cfg.iters1)
        return res.param, _history(res, (0, x.shape[0]), x.device), res.state

    def _stage1_loss(self, f_phi: Tensor, f_inversion: Tensor, w: Tensor, m: Tensor) -> Tensor:
        """Eq. (8) per image (plus the optional area and total-variation terms)."""
        cfg = self.config
        loss = (inversion_error(f_phi, f_inversion, cfg.inversion_error == "relative")
                + cfg.gamma * l1_penalty(w, cfg)[:, 0] + cfg.area1 * m.mean((-2, -1))[:, 0])
        return (loss + cfg.tv1 * total_variation(m, per_side=True)[:, 0]) if cfg.tv1 else loss

    def gradient_weights(self, x: Tensor, targets: Tensor | TargetGrid, rivals: Rivals | None = None,
                         f_channel: Tensor | None = None) -> Tensor:
        """Grad-CAM's channel weights at l1, clipped at 0 (``nonnegative``) and rescaled to mean |w| =
        ``w_init``: (B, K, C). A :mod:`gfi.targets` target's are those of its own score (a
        :class:`~gfi.targets.Contrastive` target starts from contrastive Grad-CAM). With ``joint``
        contrastive or separate, ``contrast_init`` = beta and K > 1 targets, target c's are those of the
        logit difference
        :math:`y_c - \\beta \\frac{1}{K-1} \\sum_{j \\ne c} y_j` (beyond the paper: channels the other
        targets share count less). With ``rivals`` (:meth:`find_rivals`), ``rival_init`` x the mean of
        the kept rivals' weights is subtracted too: the weights of
        :math:`y_c - \\beta_r \\frac{1}{|R_c|} \\sum_{r \\in R_c} y_r` (the targets' own weights are
        read from the rivals' gradient pass). Given the channel layer's features ``f_channel``
        (B, C, h, w), a target whose start with its rivals has an empty map (the rivals outweigh it at
        every pixel: ReLU of the weighted channels is 0 everywhere, which stage 2 cannot leave) starts
        without them."""
        if rivals is None:
            _, grad = layer_gradients(self.classifier, x, targets, self.classifier.channel_layer)
            w = grad.mean((2, 3)).view(*targets.shape, -1)
        else:
            w = rivals.own
        k = targets.shape[1]
        beta = self.config.joint_weight("contrast_init")
        if beta and k > 1:
            # the gradient is linear in the logit: d(y_c - beta mean_j y_j)/dA pooled = w_c - beta mean_j w_j
            w = w - beta * (w.sum(1, keepdim=True) - w) / (k - 1)
        if rivals is not None and self.config.rival_init:
            plain = w.clamp(min=0) if self.config.nonnegative else w
            w = w - self.config.rival_init * rivals.mean_weights()
            if self.config.nonnegative:
                w = w.clamp(min=0)
            if f_channel is not None:
                empty = torch.einsum("bkc,bchw->bkhw", w, f_channel).flatten(2).amax(-1) <= 0
                w = torch.where(empty.unsqueeze(-1), plain, w)
        elif self.config.nonnegative:
            w = w.clamp(min=0)
        mean = w.abs().mean(-1, keepdim=True)
        return torch.where(mean > 0, w * (self.config.w_init / mean.clamp_min(1e-30)),
                           torch.full_like(w, self.config.w_init))

    def find_rivals(self, x: Tensor, targets: Tensor, logits: Tensor) -> Rivals:
        """Each target's rivals (beyond the paper): the model's top ``rivals`` classes on the image other
        than the target (from ``logits``, the model's output on ``x``: no ground truth, nothing of the
        other targets), and which of them to keep: a rival whose Grad-CAM map (ReLU of the weighted
        channels at l1) has a cosine similarity above ``rival_overlap`` with the target's is taken for
        another name of the same object and skipped; a target of probability below ``rival_min_prob``
        keeps none. One gradient pass of the B x K x (1 + R) rows
        gives the targets' own Grad-CAM weights too. (B, K) targets give (B, K, R) rivals."""
        clf, cfg = self.classifier, self.config
        b, k = targets.shape
        r = min(cfg.rivals, logits.shape[-1] - 1)
        z = logits.detach().unsqueeze(1).expand(b, k, -1).scatter(-1, targets.unsqueeze(-1), float("-inf"))
        index = z.topk(r, -1).indices  # (B, K, R), strongest first
        rows = torch.cat([targets.unsqueeze(-1), index], -1)  # (B, K, 1 + R)
        act, grad = layer_gradients(clf, x, rows.view(b, -1), clf.channel_layer)
        w = grad.mean((2, 3)).view(b, k, r + 1, -1)
        feats = act.view(b, k, r + 1, *act.shape[1:])[:, :, 0]  # every row holds its image's activations
        cam = torch.einsum("bkrc,bkchw->bkrhw", w, feats).clamp(min=0).flatten(-2)
        similarity = torch.nn.functional.cosine_similarity(cam[:, :, :1], cam[:, :, 1:], dim=-1)  # 0 if empty
        # a class the model barely sees has no rivals: the image's own objects would be them
        seen = class_scores(logits.detach().float(), clf.multilabel).gather(-1, targets) >= cfg.rival_min_prob
        return Rivals(index=index, keep=(similarity <= cfg.rival_overlap) & seen.unsqueeze(-1),
                      similarity=similarity, weights=w[:, :, 1:], own=w[:, :, 0])

    def stage2(self, x: Tensor, p: Tensor, f_channel: Tensor, w_init: Tensor, targets: Tensor | TargetGrid,
               adam_state: dict | None = None, others: Tensor | None = None,
               rivals: Rivals | None = None) -> tuple[Tensor, Tensor]:
        """Alg. 2: minimise Eq. (9) from stage 1's w (projected Adam with the step-decayed learning
        rate, :class:`~gfi.masks.optimizer.MaskOptimizer`). Kept and removed images of all K targets
        go through the network in one batched forward of 2 * B * K images. Returns w (B, K, C) and
        the losses (T, B, K).

        With ``early_stop`` (:class:`~gfi.masks.optimizer.EarlyExit`), every ``early_stop_every``
        iterations each image still running is checked; an image whose K maps have all settled keeps
        its w and leaves the batch, so later iterations forward only the others (its losses are NaN
        from there). Adam is element-wise and the learning-rate schedule is shared, so every other
        image's iterations are exactly those of the full schedule.

        ``others`` (B, K, K') are each row's other targets for the ``contrast`` and ``keep_others``
        terms (default: the other rows of ``targets``; a chunk is given all of the image's).

        ``targets``: (B, K) class indices, or a :class:`~gfi.targets.TargetGrid` (a target other than a
        plain class index enters Eq. 9 as its own score: :func:`gfi.objectives.score_term`)."""
        cfg, clf = self.config, self.classifier
        up = Upsampler(f_channel.shape[-2:], x.shape[-2:], device=x.device, dtype=f_channel.dtype)
        targets = targets if isinstance(targets, TargetGrid) else TargetGrid.of_indices(targets)
        if others is None:
            others = other_targets(targets.indices) if targets.indices is not None else \
                torch.zeros(*targets.shape, targets.shape[1] - 1, dtype=torch.long, device=x.device)
        relative = cfg.stage2_step == "relative"
        if relative and adam_state:
            raise SettingsError("stage2_step='relative' optimises theta, not w, so it cannot continue stage 1's "
                                "Adam moments: use fresh_optimizer=True (the default) or stage2_step='absolute'")
        w_start = w_init.detach()
        scale = w_start.abs() if relative else None
        # the multi-target terms that cfg.joint adds to Eq. 9 (0: left out)
        contrast, keep_others, exclusion = (cfg.joint_weight(n) for n in ("contrast", "keep_others", "exclusion"))
        rival_keep = cfg.rival_keep if rivals is not None else 0.0
        rival_exclusion = cfg.rival_exclusion if rivals is not None else 0.0
        if rival_exclusion:  # the kept rivals' Grad-CAM masks, fixed: (B, K, R, H, W)
            with torch.no_grad():
                rival_masks = channel_mask(rivals.weights.flatten(1, 2), f_channel, up, rectify=True)[0].view(
                    *rivals.index.shape, *x.shape[-2:])
        # what the objective reads of the rows still running (all of them until early stop lets some leave)
        rows = {"kept_and_removed": KeptAndRemoved(x, p), "f_channel": f_channel, "targets": targets,
                "others": others, "w_start": w_start, "scale": scale,
                "rival_index": None if rivals is None else rivals.index,
                "rival_on": None if rivals is None else rivals.keep.to(x.dtype),
                "rival_masks": rival_masks if rival_exclusion else None}

        def keep(active: Tensor) -> None:
            rows.update({name: (v[active] if isinstance(v, Tensor) else v.images(active)
                                if isinstance(v, TargetGrid) else v) for name, v in rows.items()
                         if name != "kept_and_removed"},
                        kept_and_removed=KeptAndRemoved(x[active], p[active]))

        def eq9(theta: Tensor, _it: int) -> tuple[Tensor, Tensor]:
            # the optimised leaf: w itself, or theta with w = w_start + |w_start| * theta
            w = rows["w_start"] + rows["scale"] * theta if relative else theta
            t, o = rows["targets"], rows["others"]
            m, _ = channel_mask(w, rows["f_channel"], up, rectify=not cfg.nonnegative)
            both = rows["kept_and_removed"](m).flatten(0, 2)  # (2*B*K, C, H, W)
            with self._autocast(x.device):
                out = clf(self._layout(both))
            if t.indices is not None and isinstance(out, Tensor) and out.ndim == 2:
                z = out.to(x.dtype).view(2, *t.shape, -1)
                gain, removed = target_terms(z, t.indices, clf.multilabel, cfg.score)
            else:  # each target's own score (the contrast terms need class indices: _check_target_terms)
                gain, removed = (v.to(x.dtype) for v in target_score_terms(t, out, cfg.score, clf.multilabel))
            loss = -gain + cfg.lam * removed + cfg.delta * l1_penalty(w, cfg) + cfg.area2 * m.mean((-2, -1))
            if cfg.tv2:
                loss = loss + cfg.tv2 * total_variation(m, per_side=True)
            if contrast:
                loss = loss + contrast * contrast_term(z[0], o, clf.multilabel)
            if keep_others:
                loss = loss + keep_others * others_removed_term(z[1], o, clf.multilabel)
            if exclusion:
                loss = loss + exclusion * mask_overlap(m)
            if rival_keep:
                loss = loss + rival_keep * _rivals_mean(
                    -_log_scores(z[1], rows["rival_index"], clf.multilabel), rows["rival_on"])
            if rival_exclusion:
                loss = loss + rival_exclusion * _rivals_mean(
                    (m.unsqueeze(2) * rows["rival_masks"]).mean((-2, -1)), rows["rival_on"])
            return loss, m

        def nonnegative(theta: Tensor) -> None:
            if relative:  # w_start + s theta >= 0  <=>  theta >= -w_start / s
                theta.copy_(torch.maximum(theta, torch.where(scale > 0, -w_start / scale.clamp_min(1e-30), theta)))
            else:
                theta.clamp_(min=0)

        state = None
        if adam_state:  # continue stage 1's moments (each target row starts from its image's stage-1 state)
            state = {k: (v.expand_as(w_start).clone() if v.ndim else v.clone()) for k, v in adam_state.items()}
        optimizer = MaskOptimizer(cfg.lr2, decay=StepDecay(cfg.lr_decay_every, cfg.lr_decay),
                                  project=nonnegative if cfg.nonnegative else None,
                                  early_exit=self._early_exit(), progress=self._step)
        res = optimizer.run(torch.zeros_like(w_start) if relative else w_start, eq9, cfg.iters2, state=state,
                            restrict=keep)
        w = (w_start + scale * res.param) if relative else res.param
        return w, _history(res, (0, *targets.shape), x.device)

    def _early_exit(self) -> EarlyExit | None:
        """Stage 2's early stop as the optimiser's per-row exit (None: off)."""
        cfg = self.config
        if not cfg.early_stop:
            return None
        return EarlyExit(rule=cfg.early_stop_rule, every=cfg.early_stop_every, tol=cfg.early_stop_tol,
                         windows=cfg.early_stop_windows, px=cfg.early_stop_px)


@dataclass(frozen=True)
class Rivals:
    """Each target's rivals (:meth:`GuidedFeatureInversion.find_rivals`): ``index`` (B, K, R) the
    classes, strongest first; ``keep`` (B, K, R) which are contrasted (not another name of the
    target's object); ``similarity`` (B, K, R) the cosine similarity of their Grad-CAM maps with the
    target's; ``weights`` (B, K, R, C) their Grad-CAM channel weights; ``own`` (B, K, C) the targets'."""

    index: Tensor
    keep: Tensor
    similarity: Tensor
    weights: Tensor
    own: Tensor

    def part(self, start: int, stop: int) -> Rivals:
        """The rivals of targets ``start:stop``."""
        return Rivals(*(getattr(self, f.name)[:, start:stop] for f in fields(self)))

    def mean_weights(self) -> Tensor:
        """(B, K, C): the mean of the kept rivals' weights (0 where none is kept)."""
        keep = self.keep.to(self.weights.dtype)
        return (keep.unsqueeze(-1) * self.weights).sum(2) / keep.sum(-1, keepdim=True).clamp(min=1)


def _log_scores(logits: Tensor, index: Tensor, multilabel: bool) -> Tensor:
    """log f_r of classes ``index`` (B, K, R) from ``logits`` (B, K, n_classes)."""
    if multilabel:
        return torch.nn.functional.logsigmoid(logits.gather(-1, index))
    return logits.log_softmax(-1).gather(-1, index)


def _rivals_mean(values: Tensor, keep: Tensor) -> Tensor:
    """(B, K): the mean of ``values`` (B, K, R) over the kept rivals (0 where none is kept)."""
    return (values * keep).sum(-1) / keep.sum(-1).clamp(min=1)


def _cat_histories(hs: list[Tensor]) -> Tensor:
    """Stage-2 losses (T, B, k) of target chunks side by side; a chunk that stopped early (early
    stop) is padded with NaN."""
    t = max(h.shape[0] for h in hs)
    pad = [torch.cat([h, h.new_full((t - h.shape[0], *h.shape[1:]), float("nan"))]) for h in hs]
    return torch.cat(pad, -1)


def _history(res: Optimized, empty_shape: tuple[int, ...], device) -> Tensor:
    """The optimiser's losses, or an empty (0, ...) history when no iteration ran."""
    return res.losses if res.losses is not None else torch.zeros(empty_shape, device=device)


class GuidedFeatureInversionStage1(GuidedFeatureInversion):
    """Stage 1 only (Alg. 1): the class-agnostic inversion map (Fig. 3b, Sec. 4.4)."""

    name = "gfi-stage1"
    summary = "GFI stage 1 only: class-agnostic inversion map of the salient foreground (Alg. 1)"

    @classmethod
    def resolve(cls, config: GFIConfig | str | None, options: RunOptions | None,
                overrides: Mapping[str, Any]) -> tuple[GFIConfig, RunOptions]:
        """GFI's settings with ``stage2`` off: known from the arguments alone, before any model."""
        settings, run = super().resolve(config, options, overrides)
        return replace(settings, stage2=False), run
