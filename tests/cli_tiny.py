"""A small CNN behind ``gfi explain`` for fast CLI tests: :func:`patch` makes the presets' loader
return it (the real ``read_state_dict``/``load_into`` still read ``--weights FILE``).

``python -m tests.cli_tiny explain ...`` runs the CLI with it in a subprocess; the environment
variable ``GFI_TINY_DELAY`` (seconds) slows every forward pass, for the interrupted-run test.
"""

from __future__ import annotations

import os
import sys
import time

import torch
from torch import nn

# class 3 has a name that must be escaped in HTML
CLASS_NAMES = ["zero", "one", "two", "<b>bold</b> & 'q'", "four", "five", "six", "seven", "eight", "nine"]


class SmallNet(nn.Module):
    """conv 3->8 -> ReLU -> conv 8->8 -> ReLU [l0 = l1 = relu2] -> avgpool 8 -> linear 128 -> 10.

    ``delay``: seconds to sleep per forward. ``nan_on_white``: rows of (nearly) white images get
    NaN logits. ``zero``: every parameter zero (every map collapses).
    """

    def __init__(self, seed: int = 0, delay: float = 0.0, nan_on_white: bool = False, zero: bool = False) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AvgPool2d(8)
        self.fc = nn.Linear(8 * 4 * 4, 10)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.zeros(p.shape) if zero else torch.randn(p.shape, generator=g) * 0.5)
        self.delay = delay
        self.nan_on_white = nan_on_white

    def forward(self, x):
        if self.delay:
            time.sleep(self.delay)
        out = self.fc(self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x))))).flatten(1))
        if self.nan_on_white:
            white = x.flatten(1).amin(1) > 0.98
            out = torch.where(white[:, None], torch.full_like(out, float("nan")), out)
        return out


class BadOutput(nn.Module):
    """A "classifier" whose output is a feature map, not (batch, classes) scores."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.relu2 = nn.ReLU()

    def forward(self, x):
        return self.relu2(self.conv(x))


def make(model: nn.Module | None = None, **kwargs):
    from gfi.models.classifier import Classifier

    return Classifier(model if model is not None else SmallNet(**kwargs), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                      input_size=(32, 32), inversion_layer="relu2", channel_layer="relu2",
                      class_names=CLASS_NAMES, name="tiny")


def patch(monkeypatch=None, model_factory=None, **kwargs) -> None:
    """Make ``gfi.models.presets.load_model`` build the tiny model (whatever the preset name)."""
    import gfi.models.presets as presets
    from gfi.models.weights import file_sha256, load_into, read_state_dict

    def load_model(name="tiny", *, weights="default", allow_pickle=False, download=False):
        model = model_factory() if model_factory else SmallNet(**kwargs)
        info = {"model": "tiny", "weights": "random", "sha256": None}
        if weights not in (None, "default", "random"):
            load_into(model, read_state_dict(weights, allow_pickle=allow_pickle), source=str(weights))
            info.update(weights=str(weights), sha256=file_sha256(weights))
        return make(model), info

    if monkeypatch is not None:
        monkeypatch.setattr(presets, "load_model", load_model)
    else:
        presets.load_model = load_model


if __name__ == "__main__":
    import signal

    # as in a terminal, whatever the test runner's shell did (a background job ignores SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    patch(delay=float(os.environ.get("GFI_TINY_DELAY", "0")))
    from gfi.cli import main

    sys.exit(main(sys.argv[1:]))
