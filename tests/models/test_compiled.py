"""The compile run option: compiled once per network, hook passes eager, a failure warns and runs eagerly."""

import warnings

import pytest
import torch
from torch import nn

from gfi.methods.gfi import GuidedFeatureInversion
from gfi.models import compiled
from gfi.models.layers import capture


class Broken(nn.Module):
    def forward(self, x):
        raise RuntimeError("no C++ compiler found\nmore detail")


def test_a_network_that_cannot_compile_warns_once_and_runs_eagerly(tiny, tiny_images, monkeypatch):
    monkeypatch.setattr(compiled, "_COMPILED", compiled.weakref.WeakKeyDictionary())
    monkeypatch.setattr(compiled, "_FAILED", compiled.weakref.WeakKeyDictionary())
    made = []
    monkeypatch.setattr(compiled.torch, "compile", lambda m: made.append(m) or Broken())
    eager = GuidedFeatureInversion(tiny, iters1=2, iters2=3).explain(tiny_images, [[0, 1], [2, 3]])
    with pytest.warns(RuntimeWarning, match=r"could not run TinyNet \(no C\+\+ compiler found\); running it eagerly"):
        first = GuidedFeatureInversion(tiny, iters1=2, iters2=3, compile=True).explain(tiny_images, [[0, 1], [2, 3]])
    assert torch.equal(first.maps, eager.maps)
    assert compiled.compile_failure(tiny.model) == "no C++ compiler found"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not again
        again = GuidedFeatureInversion(tiny, iters1=2, iters2=3, compile=True).explain(tiny_images, [[0, 1], [2, 3]])
    assert torch.equal(again.maps, eager.maps) and made == [tiny.model]


def test_compiled_form_is_made_once_and_hooked_passes_stay_eager(tiny, tiny_images, monkeypatch):
    monkeypatch.setattr(compiled, "_COMPILED", compiled.weakref.WeakKeyDictionary())
    calls = []

    class Spy(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            calls.append(x.shape[0])
            return self.inner(x)

    monkeypatch.setattr(compiled.torch, "compile", lambda m: Spy(m))
    assert compiled.compiled_module(tiny.model) is compiled.compiled_module(tiny.model)
    # joint=separate: both targets in one stage 2 (independent targets run one stage 2 each)
    GuidedFeatureInversion(tiny, iters1=2, iters2=3, compile=True, joint="separate").explain(
        tiny_images, [[0, 1], [2, 3]])
    # stage 2's 3 forwards of 2 * B * K = 8 and the final one; not the stage-1 passes (hooks), nor f(x)'s
    assert calls == [8, 8, 8, 8]
    with capture(tiny.model, [tiny.channel_layer]):
        assert compiled.has_hooks(tiny.model)
    assert not compiled.has_hooks(tiny.model)
    calls.clear()
    GuidedFeatureInversion(tiny, iters1=2, iters2=3).explain(tiny_images, 0)
    assert calls == []  # without the option the network is never the compiled one


def test_torch_compile_gives_the_eager_maps(tiny, tiny_images):
    """The real torch.compile (inductor on this CPU) on the tiny network: the same maps."""
    eager = GuidedFeatureInversion(tiny, iters1=2, iters2=3).explain(tiny_images, [[0, 1], [2, 3]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # it must compile here, not fall back
        fast = GuidedFeatureInversion(tiny, iters1=2, iters2=3, compile=True).explain(tiny_images, [[0, 1], [2, 3]])
    assert compiled.compile_failure(tiny.model) is None
    torch.testing.assert_close(fast.maps, eager.maps, atol=1e-5, rtol=1e-4)
