"""``torch.compile`` of a classifier's network, made once per network and reused (the ``compile``
run option, beyond the paper).

* :func:`compiled_module`: the compiled form of a module, cached per module (a weak reference:
  it goes with the module), so every ``explain`` call and every batch of the same shape reuses one
  compiled graph; torch recompiles on its own for a new shape, dtype or layout.
* :func:`has_hooks`: whether any hook is registered on a module or below it. Passes that read or
  change a layer through hooks (stage 1's inversion layer, Grad-CAM, guided backprop, LRP) run the
  eager network, where the hooks are seen; only hook-free full forwards (GFI's stage 2, the
  perturbation methods' batches) take the compiled one.
* Where the network cannot be compiled (no C++ compiler, an operator dynamo cannot trace), the first
  call warns once, with torch's reason, and the network runs eagerly from then on.
"""

from __future__ import annotations

import warnings
import weakref

import torch
from torch import Tensor, nn

_COMPILED: weakref.WeakKeyDictionary[nn.Module, nn.Module] = weakref.WeakKeyDictionary()
_FAILED: weakref.WeakKeyDictionary[nn.Module, str] = weakref.WeakKeyDictionary()


def compiled_module(module: nn.Module) -> nn.Module | None:
    """``torch.compile(module)``, made once per module; None where compiling it failed before."""
    if module in _FAILED:
        return None
    if module not in _COMPILED:
        _COMPILED[module] = torch.compile(module)
    return _COMPILED[module]


def has_hooks(module: nn.Module) -> bool:
    """Whether a forward, forward-pre or backward hook is registered on ``module`` or a submodule."""
    return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
               for m in module.modules())


def run_compiled(module: nn.Module, x: Tensor) -> Tensor:
    """``module(x)`` through its compiled form where that works, else eagerly (warning once per module)."""
    fast = compiled_module(module)
    if fast is None or has_hooks(module):
        return module(x)
    try:
        return fast(x)
    except Exception as exc:  # reported, then the eager network runs: nothing is lost
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _FAILED[module] = reason
        _COMPILED.pop(module, None)
        warnings.warn(f"compile: torch.compile could not run {type(module).__name__} ({reason}); running it "
                      "eagerly (drop the compile option to silence this)", RuntimeWarning, stacklevel=3)
        return module(x)


def compile_failure(module: nn.Module) -> str | None:
    """Why compiling ``module`` failed, or None (not tried, or it worked)."""
    return _FAILED.get(module)
