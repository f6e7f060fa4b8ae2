"""Named layers: resolving them, reading their activations, and stopping a forward pass early.

A layer is named by its module name in ``model.named_modules()``. ``"name"`` means the module's
output; ``"name:input"`` means its (first) input, which reaches activations that have no module of
their own, e.g. the ReLU output inside torchvision's ResNet ``BasicBlock`` (its ReLU module is
called twice, so its output hook would see two different tensors). Hooks are registered for one
call and always removed (context managers); activations are cloned so in-place ops downstream
(torchvision's ``ReLU(inplace=True)``) cannot change them.

Threads: a model's mode, its parameters' ``requires_grad`` flags and its hooks are shared by every
thread that uses it, so the sections that change them (:func:`frozen`, :func:`capture`,
:func:`run_with_forward_hooks`) hold the model's re-entrant lock (:func:`model_lock`): two
explainers on one model in two threads take turns, and the model is left exactly as it was. A hook
of :func:`capture` records only the forward passes of the thread that registered it.
"""

from __future__ import annotations

import difflib
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from gfi.errors import GFIError
from gfi.targets import TargetGrid
from gfi.targets import _batch_of as output_rows


class LayerNotFoundError(GFIError, ValueError):
    """A layer name that the model does not have."""


@dataclass(frozen=True)
class LayerRef:
    """A module name plus whether its input or output is meant."""

    name: str
    use_input: bool = False

    @classmethod
    def parse(cls, spec: str | LayerRef) -> LayerRef:
        if isinstance(spec, LayerRef):
            return spec
        if not isinstance(spec, str) or not spec.strip():
            raise LayerNotFoundError(f"a layer must be a module name string, got {spec!r}")
        name, sep, what = spec.partition(":")
        if sep and what not in ("input", "output"):
            raise LayerNotFoundError(f"layer {spec!r}: the part after ':' must be 'input' or 'output'")
        return cls(name, what == "input")

    def __str__(self) -> str:
        return f"{self.name}:input" if self.use_input else self.name


def resolve_module(model: nn.Module, ref: LayerRef) -> nn.Module:
    """The module named by ``ref``; a clear error listing the nearest valid names otherwise."""
    modules = dict(model.named_modules())
    if ref.name in modules and ref.name != "":
        return modules[ref.name]
    names = [n for n in modules if n]
    near = difflib.get_close_matches(ref.name, names, n=6, cutoff=0.5)
    hint = f" Nearest names: {', '.join(near)}." if near else ""
    raise LayerNotFoundError(
        f"layer {ref.name!r} is not a module of {type(model).__name__}.{hint} "
        "List every name with `gfi layers MODEL` or model.named_modules()."
    )


_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The re-entrant lock of ``model`` (one per module object, made on first use, dropped with it).

    gfi holds it while it changes what other threads would see of the model: its mode and
    parameter flags (:func:`frozen`, so every :meth:`~gfi.methods.base.Explainer.explain`) and its
    hooks (:func:`capture`, :func:`run_with_forward_hooks`). Concurrent calls on one model therefore
    run one after the other; to run them in parallel give each thread its own copy
    (``copy.deepcopy(model)``). Hold it yourself (``with model_lock(model):``) to keep gfi off the
    model while you change it in another thread, e.g. to train it."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


class StopForward(Exception):
    """Raised inside a hook to end a forward pass once the wanted activations are read."""


@contextmanager
def capture(
    model: nn.Module,
    layers: Sequence[LayerRef],
    *,
    stop: bool = False,
    clone: bool = True,
) -> Iterator[dict[LayerRef, Tensor]]:
    """Record the activations of ``layers`` during forward passes inside the block.

    With ``stop=True`` the forward pass raises :class:`StopForward` as soon as every layer has
    been seen (the block's caller runs it through :func:`run_until`). Only the first call of a
    module per forward pass is recorded, and only in the calling thread (a forward pass of the
    model in another thread passes the hooks untouched); the block holds :func:`model_lock`.
    """
    store: dict[LayerRef, Tensor] = {}
    wanted = list(dict.fromkeys(layers))
    handles = []
    owner = threading.get_ident()

    def make_hook(ref: LayerRef):
        def record(value) -> None:
            if ref in store or threading.get_ident() != owner:
                return
            if isinstance(value, tuple):
                value = value[0]
            if not isinstance(value, Tensor):
                raise LayerNotFoundError(f"layer {ref} produced {type(value).__name__}, not a tensor; choose a layer "
                                         "whose output (or input, NAME:input) is one tensor (`gfi layers MODEL`)")
            store[ref] = value.clone() if clone else value
            if stop and len(store) == len(wanted):
                raise StopForward

        if ref.use_input:
            return lambda _m, args: record(args[0] if args else None)
        return lambda _m, _args, out: record(out)

    with model_lock(model), _removing(handles):
        for ref in wanted:
            module = resolve_module(model, ref)
            hook = make_hook(ref)
            if ref.use_input:
                handles.append(module.register_forward_pre_hook(hook))
            else:
                handles.append(module.register_forward_hook(hook))
        yield store


@contextmanager
def _removing(handles: list) -> Iterator[None]:
    """Remove every hook handle in ``handles`` (filled inside the block) on exit, whatever happens."""
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def run_until(forward, x: Tensor) -> Tensor | None:
    """Call ``forward(x)``, treating :class:`StopForward` as the normal end; returns the output or None."""
    try:
        return forward(x)
    except StopForward:
        return None


class ModelWithForward(Protocol):
    """What :func:`layer_gradients` needs of a classifier: the wrapped ``model`` (whose module names
    the layers use), a call that maps images to logits, and ``as_map`` that turns a layer's
    activation into a (B, C, h, w) map (``gfi.Classifier`` is one)."""

    model: nn.Module

    def __call__(self, x: Tensor) -> Tensor: ...

    def as_map(self, activation: Tensor) -> Tensor: ...


def layer_gradients(classifier: ModelWithForward, images: Tensor, targets: Tensor | TargetGrid,
                    layer: LayerRef) -> tuple[Tensor, Tensor]:
    """Activations A of ``layer`` and d s / d A of each target's score s, one row per (image, target):
    (B*K, C, h, w) each (Grad-CAM's inputs; GFI's gradient start of stage 2). ``targets`` is (B, K)
    class indices, whose score is the logit y_c, or a :class:`~gfi.targets.TargetGrid`, whose plain
    class indices are read as logits and whose other targets as their own score. Both pass through
    ``classifier.as_map`` (a token model's tokens on their grid; the reshape is linear, so the
    reshaped gradient is the gradient of the map). A target whose score does not depend on the
    layer (a detection target with no matching box) has a zero gradient.

    Call with the model frozen: the input carries the graph, so no parameter gets a gradient. Both
    come back in the images' dtype (a half- or double-precision model's own are cast)."""
    grid = targets if isinstance(targets, TargetGrid) else TargetGrid.of_indices(targets)
    b, k = grid.shape
    multilabel = getattr(classifier, "multilabel", False)
    x = images.detach().requires_grad_(True)
    with torch.enable_grad(), capture(classifier.model, [layer], clone=False) as store:
        out = classifier(x)
        act = store[layer]
        if k > 1 and (act.shape[0] != b or output_rows(out) != b):
            # a layer or an output without one row per image: the image once per target
            store.clear()
            out = classifier(images.detach().repeat_interleave(k, 0).requires_grad_(True))
            act = store[layer]
        if act.shape[0] == b * k:  # one row per target (K = 1, or the images repeated)
            grad = gradient_of(grid.score(out, "logit", multilabel).sum(), act)
            act = act.detach()
        else:
            # one forward of the B images; each of the K targets is one backward from the outputs to
            # the layer (the targets of an image share its activations: d s_bk / d A_b)
            scores = grid.score_each(out, "logit", multilabel)  # (B, K), any output a target reads
            grad = torch.stack([gradient_of(scores[:, j].sum(), act, retain=j < k - 1) for j in range(k)], 1)
            act, grad = act.detach().repeat_interleave(k, 0), grad.flatten(0, 1)
    as_map = classifier.as_map
    return as_map(act).to(images.dtype), as_map(grad).to(images.dtype)


def gradient_of(score: Tensor, x: Tensor, retain: bool = False) -> Tensor:
    """d score / d x for a scalar ``score``; zeros where the score does not depend on x (e.g. a
    detection target with no matching box, whose score is a constant 0). ``retain`` keeps the graph
    for another gradient of the same forward pass."""
    grad = (torch.autograd.grad(score, x, allow_unused=True, retain_graph=retain)[0] if score.requires_grad
            else None)
    return torch.zeros_like(x) if grad is None else grad


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no parameter gradients inside the block; every module's mode and every
    parameter's ``requires_grad`` flag is restored afterwards, whatever happens.

    The block holds the model's lock (:func:`model_lock`): a second thread entering ``frozen`` on
    the same model waits until the first has left and restored it, so it never records the first
    one's frozen state as the model's own. Nested blocks in one thread are fine."""
    with model_lock(model):
        modes = [(m, m.training) for m in model.modules()]
        flags = [(p, p.requires_grad) for p in model.parameters()]
        try:
            model.eval()
            for p, _ in flags:
                p.requires_grad_(False)
            yield model
        finally:
            for m, mode in modes:
                m.training = mode
            for p, flag in flags:
                p.requires_grad_(flag)


@contextmanager
def channels_last(model: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """The model's weights in channels-last (NHWC) layout inside the block; on exit every
    parameter and buffer is the tensor it was before (the user's model is left as it was)."""
    if not enabled:
        yield model
        return
    params = [(q, q.data) for q in model.parameters()]
    buffers = [(m, name, b) for m in model.modules() for name, b in m._buffers.items()]
    try:
        model.to(memory_format=torch.channels_last)
        yield model
    finally:
        for q, data in params:
            q.data = data
        for m, name, b in buffers:
            m._buffers[name] = b


def trace_shapes(model: nn.Module, x: Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """(name, output shape) of every module in the order its forward *finishes*, for one input.

    Used to choose layers automatically and to list them (``gfi layers``). A module that returns a
    tuple (a Hugging Face block) is listed with its first tensor, the one :func:`capture` reads.
    """
    order: list[tuple[str, tuple[int, ...]]] = []

    def hook(name: str):
        def record(_m, _a, out):
            if isinstance(out, tuple) and out:
                out = out[0]
            if isinstance(out, Tensor):
                order.append((name, tuple(out.shape)))
        return record

    run_with_forward_hooks(model, x, {module: hook(name) for name, module in model.named_modules() if name})
    return order


def run_with_forward_hooks(model: nn.Module, x: Tensor, hooks: dict[nn.Module, object]) -> None:
    """One forward pass of ``x`` without a graph, with ``hooks[module]`` as each module's forward hook;
    every hook is removed afterwards, whatever happens. Holds :func:`model_lock` throughout; the
    hooks see only this thread's forward pass."""
    owner = threading.get_ident()

    def mine(hook):
        return lambda m, args, out: hook(m, args, out) if threading.get_ident() == owner else None

    handles: list = []
    with model_lock(model), _removing(handles), torch.no_grad():
        handles.extend(module.register_forward_hook(mine(h)) for module, h in hooks.items())
        model(x)
