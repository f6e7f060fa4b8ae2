r"""Guided Backpropagation (Springenberg et al., ICLR-W 2015) on gfi's own hooks.

The gradient ``d y_c / d x`` of the logit, except that at every rectifier the backward signal is
also rectified: for ``h = relu(z)``, ``dL/dz = 1[z > 0] * max(dL/dh, 0)`` (plain backprop keeps
negative ``dL/dh``; the "deconvnet" drops the ``1[z > 0]`` factor instead). ReLU6 (EfficientNet-Lite,
MobileNet) gets the same rule with its own local derivative ``1[0 < z < 6]``.

Saliency: ``max_channel |guided gradient|``, min-max normalised (the reduction of
:mod:`gfi.methods.gradient`, Simonyan et al. 2014; Springenberg et al. show the signed RGB image).

Why not Captum: ``captum.attr.GuidedBackprop`` overrides the backward of ``nn.ReLU`` modules only,
so on a ReLU6 network (the offline default EfficientNet-Lite) it silently returns the plain
gradient. Here a forward hook on every ``nn.ReLU``/``nn.ReLU6`` module registers a gradient hook
on its output that clamps the incoming gradient at 0; the local derivative is then applied by the
module's own backward. Hooks live only inside :func:`guided_relus` (a context manager).
A network with no such module (rectifiers called as functions, or other activations) is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import Tensor, nn

from gfi.errors import NotApplicable
from gfi.methods.gradient import Gradient

RECTIFIERS = (nn.ReLU, nn.ReLU6)


@contextmanager
def guided_relus(model: nn.Module) -> Iterator[int]:
    """Inside the block, the backward pass through every ReLU/ReLU6 module keeps only positive
    gradients. Yields the number of patched modules; every hook is removed on exit."""
    def clamp_output_grad(_m, _args, out):
        if isinstance(out, Tensor) and out.requires_grad:
            out.register_hook(lambda g: g.clamp(min=0))

    handles = [m.register_forward_hook(clamp_output_grad) for m in model.modules() if isinstance(m, RECTIFIERS)]
    try:
        yield len(handles)
    finally:
        for h in handles:
            h.remove()


class GuidedBackprop(Gradient):
    name = "guided-backprop"
    needs_module = True  # guides the backward pass through the model's nn.ReLU modules
    supports_tokens = False  # needs nn.ReLU modules to guide
    summary = "Guided Backpropagation (Springenberg et al. 2015): rectified backward signal, max |.| over colours"

    @contextmanager
    def backward_rule(self) -> Iterator[None]:
        model = self.classifier.model
        with guided_relus(model) as n:
            if n == 0:
                raise NotApplicable(
                    f"guided-backprop needs nn.ReLU or nn.ReLU6 modules; {type(model).__name__} has none "
                    "(rectifiers called as functions cannot be patched). Use 'gradient' or 'smoothgrad'.")
            yield
