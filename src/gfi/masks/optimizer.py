r"""Projected gradient descent on a mask parameter: the one optimisation loop of every mask method.

Every mask method (GFI's two stages, the pixel mask, Meaningful Perturbation, Extremal
Perturbation) minimises a sum of per-row losses over a parameter theta whose rows are independent
(one row per image, target, area, ...)::

    theta_0     = start
    theta_{t+1} = P( U(theta_t, grad_theta sum_r L_r(theta_t, t), eta_t) )

with

* ``L_r(theta, t)`` the method's objective (its equation: GFI Eq. 8 and 9, the pixel mask Eq. 3 and
  5, Fong & Vedaldi 2017 Eq. 3-4, Fong et al. 2019's preservation game), the only part a method
  writes;
* ``U`` the update: Adam (Kingma & Ba 2015; element-wise, so the rows stay independent) or SGD with
  momentum and dampening (Extremal Perturbation's), each written here as torch's ``torch.optim.Adam``
  and ``torch.optim.SGD`` compute it on one tensor (the same operations in the same order: the same
  floats to the last bit, tested), without an ``Optimizer`` object, whose first step imports
  ``torch._dynamo`` (about a second of every command's start);
* ``eta_t = lr * factor^floor(t / every)`` (:class:`StepDecay`; none: constant);
* ``P`` the projection onto the feasible set: a clamp to ``[lo, hi]`` (GFI's ``w >= 0``, a mask's
  ``[0, 1]``) or any in-place function of theta.

Beyond the papers, a row may leave the loop once its objective has settled (:class:`EarlyExit`): it
keeps its theta, and later iterations evaluate the objective on the other rows only. Because the
update is element-wise and the schedule shared, every other row's iterations are exactly those of
the full schedule.

The loop records every iteration's per-row losses (NaN for the rows that have left) and calls a
progress step after each iteration. Design read from TorchRay's ``extremal_perturbation`` and
pytorch-grad-cam's optimisation loops; the code is this project's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

__all__ = ["EarlyExit", "MaskOptimizer", "Optimized", "StepDecay", "plateaued"]

#: the method's objective: ``objective(theta, t)`` -> per-row losses (rows, ...), or (losses, masks)
#: with masks (rows, ..., H, W) for the ``peak`` rule of :class:`EarlyExit`. ``theta`` holds the rows
#: still running (all of them unless an :class:`EarlyExit` let some leave).
Objective = Callable[[Tensor, int], Tensor | tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class StepDecay:
    """The learning rate times ``factor`` every ``every`` iterations: ``lr * factor^floor(t / every)``."""

    every: int
    factor: float


@dataclass(frozen=True)
class EarlyExit:
    r"""When a row leaves the loop (beyond the papers). Every ``every`` iterations (not after the
    last) each running row is checked; a row whose entries (e.g. an image's K targets) have all
    settled leaves:

    * ``loss`` rule: :func:`plateaued` on the row's own losses, the mean of the last ``every``
      improved on the mean of the ``every`` before by at most ``tol`` times its magnitude;
    * ``peak`` rule: the maximum of every one of the row's masks moved at most ``px`` pixels over
      the last ``windows`` checks (each earlier check against the latest).
    """

    rule: Literal["loss", "peak"] = "loss"
    every: int = 5
    tol: float = 0.005
    windows: int = 3
    px: float = 15.0

    def settled(self, losses: list[Tensor], peaks: list[Tensor], active: Tensor) -> Tensor:
        """(len(active),) bool: which running rows have settled. ``losses``: every iteration's
        (rows, ...) losses so far; ``peaks``: per check, (rows, ..., 2) position of each mask's
        maximum (``peak`` rule); ``active``: the indices of the running rows."""
        if self.rule == "loss":
            if len(losses) < 2 * self.every:
                return torch.zeros(len(active), dtype=torch.bool, device=active.device)
            recent = torch.stack(losses[-2 * self.every:])[:, active]  # (2 every, rows_active, ...)
            return _improved_little(recent, self.every, self.tol).reshape(len(active), -1).all(-1)
        n = self.windows
        if len(peaks) < n + 1:
            return torch.zeros(len(active), dtype=torch.bool, device=active.device)
        recent = torch.stack(peaks[-(n + 1):])[:, active]  # (n + 1, rows_active, ..., 2)
        moved = (recent[:-1] - recent[-1:]).norm(dim=-1)  # each earlier check against the latest
        return (moved <= self.px).all(0).reshape(len(active), -1).all(-1)


def plateaued(losses: Tensor, every: int, tol: float) -> Tensor:
    r"""The ``loss`` rule of :class:`EarlyExit` for a whole batch, on the losses (T, ...) so far.

    With :math:`\bar L_{cur}` the mean of the last ``every`` losses and :math:`\bar L_{prev}` the
    mean of the ``every`` before, true (a 0-d bool tensor, left on the device) when
    :math:`\bar L_{prev} - \bar L_{cur} \le tol \, |\bar L_{prev}|` for every row; false while
    fewer than ``2 * every`` losses exist.
    """
    if losses.shape[0] < 2 * every:
        return torch.zeros((), dtype=torch.bool, device=losses.device)
    return _improved_little(losses[-2 * every:], every, tol).all()


def _improved_little(recent: Tensor, every: int, tol: float) -> Tensor:
    """Per element of the last two windows ``recent`` (2 every, ...): whether the mean loss of the
    second window improved on the first by at most ``tol`` times the first's magnitude."""
    cur, prev = recent[every:].mean(0), recent[:every].mean(0)
    return (prev - cur) <= tol * prev.abs()


@dataclass
class Optimized:
    """What :meth:`MaskOptimizer.run` found.

    Attributes:
        param: theta after the last iteration, every row (a row that left holds its value then).
        losses: (T, rows, ...) every iteration's losses, NaN for the rows that had left; None when
            no iteration ran. T is below ``iterations`` when every row left early.
        state: the optimiser's state of theta (Adam's moments), to continue it elsewhere.
    """

    param: Tensor
    losses: Tensor | None
    state: dict


class MaskOptimizer:
    """Projected gradient descent on a mask parameter (see the module's docstring for the update).

    Args:
        lr: the learning rate (at iteration 0).
        kind: ``"adam"`` (Adam, torch's defaults otherwise) or ``"sgd"`` (SGD with ``momentum``,
            dampening equal to the momentum, as Extremal Perturbation).
        momentum: SGD's momentum and dampening.
        decay: the learning-rate schedule (None: constant).
        project: after every step, theta is clamped to ``(lo, hi)`` (either may be None), or
            ``project(theta)`` changes it in place (under ``torch.no_grad``); None: no projection.
        early_exit: when a row leaves the loop (None: every row runs every iteration).
        progress: called after every iteration (e.g. an explainer's progress step).
    """

    def __init__(self, lr: float, *, kind: Literal["adam", "sgd"] = "adam", momentum: float = 0.0,
                 decay: StepDecay | None = None,
                 project: tuple[float | None, float | None] | Callable[[Tensor], object] | None = None,
                 early_exit: EarlyExit | None = None, progress: Callable[[], object] | None = None) -> None:
        if kind not in ("adam", "sgd"):
            raise ValueError(f"kind must be 'adam' or 'sgd', got {kind!r}")
        self.lr, self.kind, self.momentum, self.decay = lr, kind, momentum, decay
        self.project, self.early_exit, self.progress = project, early_exit, progress

    def _step(self, theta: Tensor, state: dict, lr: float) -> None:
        """One update of ``theta`` by its gradient, in place, with the optimiser's ``state``: Adam's
        (``step``, a float32 scalar tensor as torch keeps it, ``exp_avg``, ``exp_avg_sq``; betas 0.9,
        0.999, eps 1e-8) or SGD's ``momentum_buffer``: torch's single-tensor updates, op for op."""
        grad = theta.grad
        if grad is None:  # theta did not reach the loss: torch's optimisers leave it, and their state, alone
            return
        if self.kind == "sgd":
            if self.momentum:
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = grad.detach().clone()
                else:
                    buf.mul_(self.momentum).add_(grad, alpha=1 - self.momentum)  # dampening = momentum
                grad = buf
            theta.add_(grad, alpha=-lr)
            return
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        if not state:
            state.update(step=torch.tensor(0.0, dtype=torch.float32), exp_avg=torch.zeros_like(theta),
                         exp_avg_sq=torch.zeros_like(theta))
        state["step"] += 1
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step = state["step"].item()
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = lr / bias_correction1
        denom = (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(eps)
        theta.addcdiv_(exp_avg, denom, value=-step_size)

    def _projected(self, theta: Tensor) -> None:
        if self.project is None:
            return
        if callable(self.project):
            self.project(theta)
        else:
            lo, hi = self.project
            theta.clamp_(min=lo, max=hi)

    def run(self, start: Tensor, objective: Objective, iterations: int, *, state: dict | None = None,
            restrict: Callable[[Tensor], object] | None = None) -> Optimized:
        """Minimise ``objective`` from ``start`` (rows, ...) for ``iterations`` steps.

        ``state``: the optimiser's state to continue (e.g. Adam's moments from another run, shaped
        as ``start``). ``restrict(active)``: called when rows leave, with the indices of the rows
        still running; from then on ``objective`` receives those rows of theta only (needed with
        ``early_exit``)."""
        if self.early_exit is not None and restrict is None:
            raise ValueError("early_exit lets rows leave the loop: give restrict= to tell the objective which remain")
        theta = start.detach().clone().requires_grad_(True)
        opt_state: dict = dict(state) if state else {}
        lr = self.lr
        rows = theta.shape[0]
        active = torch.arange(rows, device=theta.device)  # the rows still optimised
        left = torch.zeros(rows, dtype=torch.bool, device=theta.device)  # those that left
        held = theta  # their theta, set when they leave (Adam moves a zero-gradient row by its moments)
        exit_ = self.early_exit
        losses: list[Tensor] = []
        peaks: list[Tensor] = []  # per check: (rows, ..., 2) position of each mask's maximum (peak rule)
        for it in range(iterations):
            everyone = len(active) == rows
            out = objective(theta if everyone else theta[active], it)
            loss, mask = out if isinstance(out, tuple) else (out, None)
            theta.grad = None
            loss.sum().backward()
            with torch.no_grad():
                self._step(theta, opt_state, lr)
                if self.decay is not None and (it + 1) % self.decay.every == 0:  # torch's StepLR: lr * factor
                    lr = lr * self.decay.factor
                self._projected(theta)
                if not everyone:
                    theta[left] = held[left]
            losses.append(loss.detach() if everyone else
                          loss.new_full((rows, *loss.shape[1:]), float("nan")).index_copy(0, active, loss.detach()))
            if self.progress is not None:
                self.progress()
            # the loop's only synchronisation: once per window, and only with an early exit
            if exit_ is None or (it + 1) % exit_.every or it + 1 >= iterations:
                continue
            if exit_.rule == "peak":
                if mask is None:
                    raise ValueError("the peak rule needs the objective to return (losses, masks)")
                flat = mask.detach().flatten(-2).argmax(-1)
                peak = torch.stack((flat // mask.shape[-1], flat % mask.shape[-1]), -1).to(mask.dtype)
                peaks.append(peak.new_full((rows, *peak.shape[1:]), float("nan")).index_copy(0, active, peak))
            settled = exit_.settled(losses, peaks, active)
            if bool(settled.all()):
                break
            if bool(settled.any()):
                active = active[~settled]
                left = torch.ones(rows, dtype=torch.bool, device=theta.device).index_fill(0, active, False)
                held = theta.detach().clone()
                restrict(active)
        theta.grad = None
        return Optimized(theta.detach(), torch.stack(losses) if losses else None, opt_state)
