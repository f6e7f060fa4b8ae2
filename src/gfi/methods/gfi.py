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

The readings of what the paper leaves open are :class:`GFIConfig` fields; their values and the
experiments behind them are in ``docs/METHOD.md``.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, fields, replace
from typing import ClassVar, Literal

import torch
from torch import Tensor

from gfi.masks.backgrounds import make_background
from gfi.masks.channel_mask import total_variation
from gfi.masks.fast import KeptAndRemoved, Upsampler, channel_mask_fast
from gfi.methods.base import Explainer, Explanation, TargetsLike
from gfi.models.classifier import Classifier
from gfi.models.layers import capture, channels_last, frozen, run_until


@dataclass(frozen=True)
class GFIConfig:
    """Every knob of the method. ``GFIConfig.paper()`` is the paper; ``GFIConfig()`` the default.

    Attributes:
        gamma: weight of ||w||_1 in stage 1 (Eq. 8). Paper: 10.
        delta: weight of ||w||_1 in stage 2 (Eq. 9). Paper: 1 (10 for the multi-label VOC model).
        lam: lambda, weight of the removed image's score in Eq. 9. Paper: 1.
        w_init: initial value of every w_i. Paper: 0.1.
        lr1, lr2: Adam learning rates of the two stages. Paper: 1e-2. Default lr2 = 3e-3: stage 2
            starts from Grad-CAM's weights, and on the tuning images every step it took away from
            them moved the map off the object's box (docs/METHOD.md).
        iters1, iters2: iterations of the two stages. Paper (text): 10 and 70.
        lr_decay_every, lr_decay: stage 2 multiplies the learning rate by ``lr_decay`` every
            ``lr_decay_every`` iterations. Paper: 10 and 0.5.
        background: p: ``"blur"`` (paper), ``"mean"`` (ImageNet mean colour) or ``"noise"``.
        blur_kernel, blur_sigma: the Gaussian blur of stage 1's p (see ``gfi.masks.backgrounds``).
            Paper: "radius 11", read as kernel 11, sigma 5 (for both stages).
        blur_kernel2, blur_sigma2: the blur of stage 2's p (Eq. 2 and 4 in Alg. 2; beyond the
            paper, which uses one p). None: stage 1's (the paper preset, so that its
            ``blur_kernel``/``blur_sigma`` set the one p of both stages). Default: kernel 81, sigma 20. A
            weak blur leaves a small object recognisable in Eq. (4)'s removed image, so Eq. (9)
            cannot reward a mask on it (the pickup in demo/dog_bike_truck.jpg). On the first 100
            tuning images sigma 5 / 11 / 20 gave localization error 35 / 32 / 31% and pointing 91 /
            89 / 89%; stage 1 keeps sigma 5, which found salient objects better (SOD F-beta 0.518
            against 0.492 with sigma 20; docs/METHOD.md).
        noise_std: standard deviation of the ``"noise"`` background.
        inversion_error: ``"sum"``: ||.||^2 summed over l0's features, as written;
            ``"relative"``: divided by ||f^{l0}(x)||^2, which makes gamma independent of the
            network's feature scale.
        l1_norm: ``"sum"``: ||w||_1 as written; ``"mean"``: divided by the number of channels.
        l1_grad_at_zero: at w_i = 0 the L1 term's subgradient is 1 (``"one"``: ||w||_1 = sum(w)
            on the feasible set w >= 0, so the term keeps pressing a zero weight down and clipping
            holds it there) or 0 (``"zero"``: torch's abs, a zero weight moves only if the data
            term pushes it up).
        score: stage 2's f_c: ``"prob"`` (the paper: softmax / sigmoid probability) or ``"log"``:
            ``-log f_c(Phi) - lambda log(1 - f_c(Phi_bg))``, which keeps a gradient when f_c is
            near 0 or 1.
        area1, area2: weight of the mask's mean, ``1/d sum_i m_i``, added to Eq. (8) and Eq. (9)
            (beyond the paper; paper: 0). Eq. (3) and (5) limit the area of m with this term;
            Eq. (8) and (9) replace it by ||w||_1, but after MinMax (Eq. 7) the mask is the same for
            w and for s * w, so ||w||_1 alone does not limit the area (it only thins out channels).
            This term restores Eq. (3)/(5)'s area constraint on the channel mask. Default
            area1 = 4: without it stage 1's map spreads over the background (its mean exceeds 0.5
            on 38 of the 100 SOD images, so twice the mean keeps nothing); docs/METHOD.md.
        tv1, tv2: weight of the mask's total variation (:func:`gfi.masks.channel_mask.total_variation`,
            its perimeter in units of the image's side) added to Eq. (8) and Eq. (9) (beyond the
            paper; paper and default: 0). A smoothness prior in the manner of Meaningful
            Perturbation's TV term: a mask of one compact region costs less than the same area in
            scattered blobs.
        stage2_init: where stage 2 starts: ``"stage1"`` (the paper: stage 1's w) or
            ``"gradient"`` (beyond the paper: w_i proportional to the positive part of the spatial
            mean of d logit_c / d f^{l1}_i(x), Grad-CAM's channel weights, rescaled to mean
            ``w_init``; one extra forward/backward).
        nonnegative: clip w at 0 after every step (the paper: w_i >= 0, Eq. 8-9). False lets
            stage 2's weights take either sign (beyond the paper), so a class map can subtract the
            channels of another object; the L1 term then uses |w|.
        fresh_optimizer: stage 2 starts a new Adam (Alg. 2 is a separate algorithm whose only
            input from Alg. 1 is w) rather than continuing stage 1's moments.
        stage2: run stage 2; False gives the stage-1 inversion map as the result.
        seed: seed of the noise background (the only random part).
        early_stop: end stage 2 before ``iters2`` once its loss stops improving (beyond the paper;
            off in both presets). Every ``early_stop_every`` iterations the mean loss of the last
            ``early_stop_every`` iterations, L_cur, is compared with that of the ``early_stop_every``
            before, L_prev; stage 2 stops when L_prev - L_cur <= ``early_stop_tol`` * |L_prev| for
            every image and target of the batch. The check is the only host-device
            synchronisation of the loop, once per window.
        early_stop_every: iterations per window of the early-stop check (>= 1).
        early_stop_tol: relative improvement of the window-mean loss below which stage 2 stops.
            0.005 is the largest value that kept the map's maximum within 15 px of the full
            schedule's on at least 95 percent of the tuning images (default preset; docs/PERFORMANCE.md).
        autocast: ``"none"`` (float32) or ``"bf16"``: the network's forward and backward under
            ``torch.autocast(dtype=bfloat16)`` (CUDA with bf16 support, or CPU); w, the mask and
            Adam stay float32.
        channels_last: run the network on channels-last (NHWC) images, the faster layout of
            cuDNN/oneDNN convolutions on many devices; the maths is unchanged.
        stage2_chunk: run stage 2 for at most this many targets of each image at a time (0: all
            K targets in one batch of 2 * B * K images). Every row of Eq. (9) and of Adam is
            independent, so the maps are the same; stage 1 is shared either way. On a CPU, where a
            large batch costs more per image, a small chunk keeps the stage-1 saving.
    """

    gamma: float = 1.0
    delta: float = 1.0
    lam: float = 1.0
    w_init: float = 0.1
    lr1: float = 1e-2
    lr2: float = 3e-3
    iters1: int = 10
    iters2: int = 30
    lr_decay_every: int = 10
    lr_decay: float = 0.5
    background: Literal["blur", "mean", "noise"] = "blur"
    blur_kernel: int = 11
    blur_sigma: float = 5.0
    blur_kernel2: int | None = 81
    blur_sigma2: float | None = 20.0
    noise_std: float = 0.2
    inversion_error: Literal["sum", "relative"] = "relative"
    l1_norm: Literal["sum", "mean"] = "mean"
    l1_grad_at_zero: Literal["one", "zero"] = "one"
    score: Literal["prob", "log"] = "log"
    area1: float = 4.0
    area2: float = 0.1
    tv1: float = 0.0
    tv2: float = 0.0
    stage2_init: Literal["stage1", "gradient"] = "gradient"
    nonnegative: bool = False
    fresh_optimizer: bool = True
    stage2: bool = True
    seed: int = 0
    # -- performance options (issue 5): off by default, none changes the equations --
    early_stop: bool = False
    early_stop_every: int = 5
    early_stop_tol: float = 0.005
    autocast: Literal["none", "bf16"] = "none"
    channels_last: bool = False
    stage2_chunk: int = 0

    PRESETS: ClassVar[tuple[str, ...]] = ("paper", "default")
    #: fields added after maps may have been cached, with the value that reproduces what the code
    #: did before they existed (the map store reads a missing field as this, else as the default)
    ADDED: ClassVar[dict[str, object]] = {"blur_kernel2": None, "blur_sigma2": None}
    #: fields that only stage 2 reads: with ``stage2=False`` they do not change the result
    STAGE2_FIELDS: ClassVar[frozenset[str]] = frozenset({
        "delta", "lam", "lr2", "iters2", "lr_decay_every", "lr_decay", "score", "area2", "tv2",
        "blur_kernel2", "blur_sigma2", "stage2_init",
        "nonnegative", "fresh_optimizer", "early_stop", "early_stop_every", "early_stop_tol", "stage2_chunk",
    })

    @classmethod
    def paper(cls, **overrides) -> GFIConfig:
        """Exactly the paper's settings (Sec. 4.1.1, Alg. 1-2), plus ``overrides``."""
        return cls(**{**PAPER_SETTINGS, **overrides})

    @classmethod
    def preset(cls, name: str, **overrides) -> GFIConfig:
        if name == "paper":
            return cls.paper(**overrides)
        if name == "default":
            return replace(cls(), **overrides)
        raise ValueError(f"unknown GFI preset {name!r}; choose one of {', '.join(cls.PRESETS)}")

    def __post_init__(self) -> None:
        for key in ("gamma", "delta", "lam", "w_init", "noise_std", "area1", "area2", "tv1", "tv2",
                    "early_stop_tol"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")
        optional = ("blur_kernel2", "blur_sigma2")  # None: stage 1's
        for key in ("lr1", "lr2", "blur_sigma", "blur_sigma2", "lr_decay"):
            if not (getattr(self, key) is None and key in optional) and not getattr(self, key) > 0:
                raise ValueError(f"{key} must be > 0, got {getattr(self, key)}")
        for key in ("iters1", "iters2", "lr_decay_every", "early_stop_every", "stage2_chunk"):
            if getattr(self, key) < 0 or (key in ("lr_decay_every", "early_stop_every") and getattr(self, key) == 0):
                raise ValueError(f"{key} must be a positive integer, got {getattr(self, key)}")
        choices = {"background": ("blur", "mean", "noise"), "inversion_error": ("sum", "relative"),
                   "l1_norm": ("sum", "mean"), "l1_grad_at_zero": ("one", "zero"), "score": ("prob", "log"),
                   "stage2_init": ("stage1", "gradient"), "autocast": ("none", "bf16")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {allowed}, got {getattr(self, key)!r}")
        for key in ("blur_kernel", "blur_kernel2"):
            if getattr(self, key) is None and key in optional:
                continue
            if getattr(self, key) < 1 or getattr(self, key) % 2 == 0:
                raise ValueError(f"{key} must be a positive odd integer, got {getattr(self, key)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def stage2_blur(self) -> tuple[int, float]:
        """(kernel, sigma) of stage 2's blur: ``blur_kernel2``/``blur_sigma2``, or stage 1's where None."""
        return (self.blur_kernel if self.blur_kernel2 is None else self.blur_kernel2,
                self.blur_sigma if self.blur_sigma2 is None else self.blur_sigma2)

    @classmethod
    def canonical(cls, settings: dict) -> dict:
        """Recorded settings (``to_dict`` of any version) as the values that decide the maps: a
        missing field is read as :attr:`ADDED` says, else as the default; stage 2's blur resolved."""
        defaults = {f.name: f.default for f in fields(cls)}
        out = {**defaults, **cls.ADDED, **settings}
        for key, stage1 in (("blur_kernel2", "blur_kernel"), ("blur_sigma2", "blur_sigma")):
            if out.get(key) is None:
                out[key] = out.get(stage1)
        return out


# The paper's settings (Sec. 4.1.1, Alg. 1 and 2). Where the text is ambiguous, the reading named
# in GFIConfig's docstring and docs/METHOD.md.
PAPER_SETTINGS: dict = dict(
    gamma=10.0, delta=1.0, lam=1.0, w_init=0.1, lr1=1e-2, lr2=1e-2, iters1=10, iters2=70,
    lr_decay_every=10, lr_decay=0.5, background="blur", blur_kernel=11, blur_sigma=5.0, blur_kernel2=None,
    blur_sigma2=None,
    inversion_error="sum", l1_norm="sum", l1_grad_at_zero="one", score="prob", area1=0.0, area2=0.0, tv1=0.0, tv2=0.0,
    stage2_init="stage1", nonnegative=True, fresh_optimizer=True,
)


def l1_penalty(w: Tensor, cfg: GFIConfig) -> Tensor:
    """||w||_1 over the last dim (w >= 0 after clipping), read as ``cfg.l1_norm``/``l1_grad_at_zero``."""
    norm = w.sum(-1) if cfg.l1_grad_at_zero == "one" and cfg.nonnegative else w.abs().sum(-1)
    return norm / w.shape[-1] if cfg.l1_norm == "mean" else norm


def inversion_error(f_phi: Tensor, f_x: Tensor, relative: bool) -> Tensor:
    """The first term of Eq. (8) per image: ||f^{l0}(Phi) - f^{l0}(x)||^2 (optionally / ||f^{l0}(x)||^2)."""
    err = (f_phi - f_x).pow(2).flatten(1).sum(1)
    if relative:
        err = err / f_x.pow(2).flatten(1).sum(1).clamp_min(torch.finfo(f_x.dtype).tiny)
    return err


def target_terms(logits: Tensor, targets: Tensor, multilabel: bool, score: str) -> tuple[Tensor, Tensor]:
    """The class terms of Eq. (9) for kept and removed images.

    ``logits`` is (2, B, K, n_classes) (kept, removed), ``targets`` (B, K). Returns
    ``(gain, loss)`` with Eq. (9) = -gain + lambda * loss + delta ||w||_1: for ``"prob"``,
    gain = f_c(Phi) and loss = f_c(Phi_bg); for ``"log"``, gain = log f_c(Phi) and
    loss = -log(1 - f_c(Phi_bg)).
    """
    idx = targets.unsqueeze(0).unsqueeze(-1).expand(2, *targets.shape, 1)
    z = logits.gather(-1, idx).squeeze(-1)  # (2, B, K)
    if multilabel:
        if score == "prob":
            s = torch.sigmoid(z)
            return s[0], s[1]
        return torch.nn.functional.logsigmoid(z[0]), -torch.nn.functional.logsigmoid(-z[1])
    lse = logits.logsumexp(-1)
    if score == "prob":
        s = (z - lse).exp()
        return s[0], s[1]
    others = logits[1].scatter(-1, targets.unsqueeze(-1), float("-inf")).logsumexp(-1)
    return z[0] - lse[0], -(others - lse[1])


class GuidedFeatureInversion(Explainer):
    """Guided Feature Inversion: ``GuidedFeatureInversion(classifier, config).explain(images, targets)``.

    ``images`` is (B, 3, H, W) in [0, 1]; ``targets`` is None (top-1), an int, B ints, or (B, K)
    indices. Returns an :class:`Explanation` with the class maps, the stage-1 map, w, the loss
    history and the target's score on the kept and on the removed image.
    """

    name = "gfi"
    summary = "Guided Feature Inversion (Du et al. 2018): stage 1 + class-discriminative stage 2"

    def __init__(self, classifier: Classifier, config: GFIConfig | str | None = None, **overrides) -> None:
        super().__init__(classifier)
        if config is None or isinstance(config, str):
            config = GFIConfig.preset(config or "default", **overrides)
        elif overrides:
            config = replace(config, **overrides)
        self.config = config

    # ------------------------------------------------------------------------------------------
    def _explain(self, images: Tensor, targets: TargetsLike) -> Explanation:
        cfg, clf = self.config, self.classifier
        l0, l1 = clf.inversion_layer, clf.channel_layer
        with frozen(clf.model), channels_last(clf.model, cfg.channels_last):
            # One forward: f^{l0}(x), f^{l1}(x) and the logits. Nothing here needs a graph.
            with torch.no_grad(), self._autocast(images.device):
                feats, logits = clf.activations(self._layout(images), [l0, l1], stop=False)
            feats, logits = {k: v.to(images.dtype) for k, v in feats.items()}, logits.to(images.dtype)
            t, probs = self._targets_and_probs(images, targets, logits)
            f_l0, f_l1 = feats[l0], feats[l1]
            if f_l1.ndim != 4:
                raise ValueError(f"channel layer {l1} gives a {f_l1.ndim}-D tensor; Eq. (6) needs (B, C, h, w)")
            p, p2 = self.backgrounds(images)
            w1, hist1, adam1 = self.stage1(images, p, f_l0, f_l1)
            up = Upsampler(f_l1.shape[-2:], images.shape[-2:], device=images.device, dtype=f_l1.dtype)
            with torch.no_grad():
                m1, col1 = channel_mask_fast(w1, f_l1, up)
            if cfg.stage2:
                w_start = self.gradient_weights(images, t) if cfg.stage2_init == "gradient" else w1
                w_start = w_start.expand(-1, t.shape[1], -1)
                step = cfg.stage2_chunk or t.shape[1]
                parts = [self.stage2(images, p2, f_l1, w_start[:, k:k + step], t[:, k:k + step],
                                     adam_state=None if cfg.fresh_optimizer else adam1)
                         for k in range(0, t.shape[1], step)]
                w2, hist2 = torch.cat([w for w, _ in parts], 1), _cat_histories([h for _, h in parts])
            else:
                w2, hist2 = w1.expand(-1, t.shape[1], -1), None
            with torch.no_grad():
                m, col = channel_mask_fast(w2, f_l1, up, rectify=not cfg.nonnegative)
                both = KeptAndRemoved(images, p2)(m).flatten(0, 2)
                with self._autocast(images.device):
                    z = clf(self._layout(both)).float().view(2, *t.shape, -1)
                s = clf.scores(z).gather(-1, t.unsqueeze(0).unsqueeze(-1).expand(2, *t.shape, 1)).squeeze(-1)
        history = {"stage1": hist1}
        if hist2 is not None:
            history["stage2"] = hist2
        return Explanation(
            maps=m, targets=t, method=self.name if cfg.stage2 else "gfi-stage1", probs=probs,
            stage1_map=m1[:, 0], weights=w2.detach(), stage1_weights=w1[:, 0].detach(),
            prob_kept=s[0], prob_removed=s[1], loss_history=history, collapsed=col,
            stage1_collapsed=col1[:, 0],
        )

    # ------------------------------------------------------------------------------------------
    def backgrounds(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """p of stage 1 and of stage 2 (the same tensor unless stage 2 runs with another blur)."""
        cfg = self.config
        p = make_background(images, cfg.background, blur_kernel=cfg.blur_kernel, blur_sigma=cfg.blur_sigma,
                            noise_std=cfg.noise_std, generator=torch.Generator().manual_seed(cfg.seed))
        kernel2, sigma2 = cfg.stage2_blur
        if not cfg.stage2 or cfg.background != "blur" or (kernel2, sigma2) == (cfg.blur_kernel, cfg.blur_sigma):
            return p, p
        return p, make_background(images, "blur", blur_kernel=kernel2, blur_sigma=sigma2)

    def _autocast(self, device: torch.device):
        """The ``autocast`` option as a context manager (a no-op for ``"none"``)."""
        if self.config.autocast == "none":
            return contextlib.nullcontext()
        if device == getattr(self, "_autocast_checked", None):
            return torch.autocast(device.type, dtype=torch.bfloat16)
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(f"autocast='bf16' needs a GPU with bfloat16 support; {torch.cuda.get_device_name(device)} "
                             "has none. Use autocast='none'.")
        if device.type not in ("cuda", "cpu"):
            raise ValueError(f"autocast='bf16' is supported on cuda and cpu, not {device.type}; use autocast='none'")
        self._autocast_checked = device  # checked once, not at every iteration
        return torch.autocast(device.type, dtype=torch.bfloat16)

    def _layout(self, x: Tensor) -> Tensor:
        """Images in the memory format the ``channels_last`` option asks for."""
        return x.contiguous(memory_format=torch.channels_last) if self.config.channels_last else x

    # ------------------------------------------------------------------------------------------
    def stage1(self, x: Tensor, p: Tensor, f_l0: Tensor, f_l1: Tensor) -> tuple[Tensor, Tensor, dict]:
        """Alg. 1: minimise Eq. (8) over w >= 0. Returns w (B, 1, C), the losses (T, B) and Adam's
        final state (moments), which stage 2 continues when ``fresh_optimizer`` is False.

        Each iteration runs the network only up to l0 (the forward stops there); the hook that
        reads l0 is registered once for the loop.
        """
        cfg, clf = self.config, self.classifier
        l0 = clf.inversion_layer
        up = Upsampler(f_l1.shape[-2:], x.shape[-2:], device=x.device, dtype=f_l1.dtype)
        blend = KeptAndRemoved(x, p).kept
        w = torch.full((x.shape[0], 1, f_l1.shape[1]), cfg.w_init, device=x.device, dtype=f_l1.dtype)
        w.requires_grad_(True)
        opt = torch.optim.Adam([w], lr=cfg.lr1)
        losses = []
        with capture(clf.model, [l0], stop=True, clone=False) as store:
            for _ in range(cfg.iters1):
                m, _ = channel_mask_fast(w, f_l1, up)
                phi = blend(m)[:, 0]
                store.clear()
                with self._autocast(x.device):
                    run_until(clf, self._layout(phi))
                if l0 not in store:
                    raise RuntimeError(f"layer {l0} was not reached by the forward pass")
                f_phi = store[l0].to(x.dtype)
                loss = self._stage1_loss(f_phi, f_l0, w, m)
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                opt.step()
                with torch.no_grad():
                    w.clamp_(min=0)
                losses.append(loss.detach())
        return w.detach(), _stack(losses, (0, x.shape[0]), x.device), dict(opt.state.get(w, {}))

    def _stage1_loss(self, f_phi: Tensor, f_l0: Tensor, w: Tensor, m: Tensor) -> Tensor:
        """Eq. (8) per image (plus the optional area and total-variation terms)."""
        cfg = self.config
        loss = (inversion_error(f_phi, f_l0, cfg.inversion_error == "relative")
                + cfg.gamma * l1_penalty(w, cfg)[:, 0] + cfg.area1 * m.mean((-2, -1))[:, 0])
        return (loss + cfg.tv1 * total_variation(m)[:, 0]) if cfg.tv1 else loss

    def gradient_weights(self, x: Tensor, targets: Tensor) -> Tensor:
        """Grad-CAM's channel weights at l1, clipped at 0 and rescaled to mean ``w_init``: (B, K, C)."""
        from gfi.methods.cam import layer_gradients

        _, grad = layer_gradients(self.classifier, x, targets, self.classifier.channel_layer)
        w = grad.mean((2, 3)).view(*targets.shape, -1)
        if self.config.nonnegative:
            w = w.clamp(min=0)
        mean = w.abs().mean(-1, keepdim=True)
        return torch.where(mean > 0, w * (self.config.w_init / mean.clamp_min(1e-30)),
                           torch.full_like(w, self.config.w_init))

    def stage2(self, x: Tensor, p: Tensor, f_l1: Tensor, w_init: Tensor, targets: Tensor,
               adam_state: dict | None = None) -> tuple[Tensor, Tensor]:
        """Alg. 2: minimise Eq. (9) from stage 1's w. Kept and removed images of all K targets go
        through the network in one batched forward of 2 * B * K images. Returns w (B, K, C) and
        the losses (T, B, K)."""
        cfg, clf = self.config, self.classifier
        up = Upsampler(f_l1.shape[-2:], x.shape[-2:], device=x.device, dtype=f_l1.dtype)
        kept_and_removed = KeptAndRemoved(x, p)
        w = w_init.detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=cfg.lr2)
        if adam_state:
            # continue stage 1's moments (each target row starts from its image's stage-1 state)
            opt.state[w] = {k: (v.expand_as(w).clone() if v.ndim else v.clone()) for k, v in adam_state.items()}
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_decay_every, gamma=cfg.lr_decay)
        losses = []
        every = cfg.early_stop_every
        for it in range(cfg.iters2):
            m, _ = channel_mask_fast(w, f_l1, up, rectify=not cfg.nonnegative)
            both = kept_and_removed(m).flatten(0, 2)  # (2*B*K, 3, H, W)
            with self._autocast(x.device):
                z = clf(self._layout(both)).to(x.dtype).view(2, *targets.shape, -1)
            gain, removed = target_terms(z, targets, clf.multilabel, cfg.score)
            loss = -gain + cfg.lam * removed + cfg.delta * l1_penalty(w, cfg) + cfg.area2 * m.mean((-2, -1))
            if cfg.tv2:
                loss = loss + cfg.tv2 * total_variation(m)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
            sched.step()
            if cfg.nonnegative:
                with torch.no_grad():
                    w.clamp_(min=0)
            losses.append(loss.detach())
            # the loop's only synchronisation: once per window, and only with early_stop
            if (cfg.early_stop and (it + 1) % every == 0 and it + 1 < cfg.iters2
                    and bool(plateaued(torch.stack(losses[-2 * every:]), every, cfg.early_stop_tol))):
                break
        return w.detach(), _stack(losses, (0, *targets.shape), x.device)


def plateaued(losses: Tensor, every: int, tol: float) -> Tensor:
    r"""The early-stop test of stage 2 on the losses (T, ...) of the iterations so far.

    With :math:`\bar L_{cur}` the mean of the last ``every`` losses and :math:`\bar L_{prev}` the
    mean of the ``every`` before, true (a 0-d bool tensor, left on the device) when
    :math:`\bar L_{prev} - \bar L_{cur} \le tol \, |\bar L_{prev}|` for every row; false while
    fewer than ``2 * every`` losses exist.
    """
    if losses.shape[0] < 2 * every:
        return torch.zeros((), dtype=torch.bool, device=losses.device)
    cur = losses[-every:].mean(0)
    prev = losses[-2 * every:-every].mean(0)
    return ((prev - cur) <= tol * prev.abs()).all()


def _cat_histories(hs: list[Tensor]) -> Tensor:
    """Stage-2 losses (T, B, k) of target chunks side by side; a chunk that stopped early (early
    stop) is padded with NaN."""
    t = max(h.shape[0] for h in hs)
    pad = [torch.cat([h, h.new_full((t - h.shape[0], *h.shape[1:]), float("nan"))]) for h in hs]
    return torch.cat(pad, -1)


def _stack(xs: list[Tensor], empty_shape: tuple[int, ...], device) -> Tensor:
    return torch.stack(xs) if xs else torch.zeros(empty_shape, device=device)


class GuidedFeatureInversionStage1(GuidedFeatureInversion):
    """Stage 1 only (Alg. 1): the class-agnostic inversion map (Fig. 3b, Sec. 4.4)."""

    name = "gfi-stage1"
    summary = "GFI stage 1 only: class-agnostic inversion map of the salient foreground (Alg. 1)"

    def __init__(self, classifier: Classifier, config: GFIConfig | str | None = None, **overrides) -> None:
        super().__init__(classifier, config, **overrides)
        self.config = replace(self.config, stage2=False)
