"""Extra forward arguments: what a model takes besides the images (Captum's ``additional_forward_args``).

``explainer.explain(images, targets, forward_args=(scale,), forward_kwargs={"mode": "x"})`` calls
the model as ``model(normalised_images, scale, mode="x")`` in every forward pass the method makes
(and in the probes that find its layers). The rule for each argument, positional or keyword:

* not a tensor, or a 0-dim tensor: passed as it is to every forward;
* a tensor whose first dimension is 1: one value for every image; expanded (``Tensor.expand``, no
  copy) to the rows of each forward, whatever their number (GFI's kept and removed images of K
  targets, RISE's masked copies, SmoothGrad's noisy samples);
* a tensor whose first dimension is B, the number of images of a call with B > 1: one value per
  image. Methods lay their rows out in different ways, so such a call explains its images one at a
  time (each with its own row of the argument, expanded as above) and concatenates the
  explanations: correct for every method, at the cost of batching (B calls instead of one; GFI's
  stage 1 and 2 then run B times on one image each);
* any other tensor: passed as it is (it has no batch dimension gfi could follow). A tensor meant
  as one value for all images whose first dimension happens to be 1 or B is read by the rules
  above: give a scalar as a Python number or a 0-dim tensor.

Tensors are detached (the methods never need gradients of the caller's arguments, and a
backward pass must not write into them) and moved to the model's device.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from gfi.errors import UsageError

__all__ = ["ForwardArgs"]


@dataclass(frozen=True)
class ForwardArgs:
    """Positional ``args`` (after the images) and keyword ``kwargs`` of every forward of the model."""

    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, args: Any = None, kwargs: Mapping[str, Any] | None = None,
           device: torch.device | None = None) -> ForwardArgs:
        """``args`` as Captum reads ``additional_forward_args`` (None: none; a tuple: the positional
        arguments; anything else: one positional argument) and ``kwargs`` (a mapping of keyword
        arguments), tensors detached and moved to ``device``."""
        if args is None:
            args = ()
        elif not isinstance(args, tuple):
            args = (args,)
        if kwargs is None:
            kwargs = {}
        if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
            raise UsageError(f"forward_kwargs must be a mapping of argument names to values, got "
                             f"{type(kwargs).__name__}; positional arguments go in forward_args=(...)")

        def own(v: Any) -> Any:
            if isinstance(v, Tensor):
                v = v.detach()
                v = v.to(device) if device is not None else v
                if v.is_inference():  # an inference tensor cannot enter the methods' autograd graphs
                    with torch.inference_mode(False):
                        v = v.clone()
            return v

        return cls(tuple(own(a) for a in args), {k: own(v) for k, v in kwargs.items()})

    def __bool__(self) -> bool:
        return bool(self.args) or bool(self.kwargs)

    def _values(self) -> list[Any]:
        return [*self.args, *self.kwargs.values()]

    def per_image(self, batch: int) -> bool:
        """Whether an argument has one row per image of a ``batch`` of more than one image (the
        call is then explained one image at a time)."""
        return batch > 1 and any(_rows(v) == batch for v in self._values())

    def image(self, i: int, batch: int) -> ForwardArgs:
        """The arguments of image ``i`` of ``batch``: each tensor with ``batch`` rows cut to its row i
        (kept as a batch of 1), the others as they are."""
        def cut(v: Any) -> Any:
            return v[i:i + 1] if _rows(v) == batch else v

        return ForwardArgs(tuple(cut(a) for a in self.args), {k: cut(v) for k, v in self.kwargs.items()})

    def for_rows(self, n: int) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The arguments of one forward of ``n`` rows: tensors of first dimension 1 expanded to n."""
        def grow(v: Any) -> Any:
            return v.expand(n, *v.shape[1:]) if _rows(v) == 1 and n != 1 else v

        return tuple(grow(a) for a in self.args), {k: grow(v) for k, v in self.kwargs.items()}

    def pre_hook(self, _module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple, dict]:
        """A forward pre-hook (``with_kwargs=True``) on the model: its images, then these arguments."""
        if not args or not isinstance(args[0], Tensor):
            raise UsageError("with forward arguments the model must be called with the images as its first "
                             "positional argument")
        extra, named = self.for_rows(args[0].shape[0])
        clash = sorted(set(named) & set(kwargs))
        if clash:
            raise UsageError(f"forward_kwargs {clash} are also passed by gfi's caller; give each argument once")
        return (*args, *extra), {**kwargs, **named}


def _rows(v: Any) -> int | None:
    """The first dimension of a tensor of at least one dimension, else None."""
    return int(v.shape[0]) if isinstance(v, Tensor) and v.ndim >= 1 else None
