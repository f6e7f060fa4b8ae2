"""The exceptions gfi raises on purpose, under one base, so callers catch what they mean.

* :class:`GFIError`: every error gfi raises about the caller's input or environment; its message is
  one line that names the problem and the fix. The CLI prints it and exits with code 2.
* :class:`NotApplicable`: this method cannot run on this model (e.g. CAM without global average
  pooling, LRP without a rule for a layer, a channel mask on a model with no spatial features).
  ``gfi compare`` draws a panel saying why instead of failing.
* :class:`SettingsError`: a method or run setting is out of range, not finite, or unknown.
* :class:`UsageError`: a problem with the command line's options or files.
* :class:`InputError`: images that are not what a method takes (shape, dtype, values out of [0, 1]).
* :class:`TargetError`: targets that are not B (or B x K) class indices of the model (a string, a
  flat list of another length than the batch, more targets than the model has classes), or more
  targets than memory can hold; never reinterpreted.

Each specific error also derives from the built-in class it replaced (``ValueError`` mostly), so
``except ValueError`` in older callers keeps working.

This module imports nothing from gfi: every other module may import it.
"""

from __future__ import annotations


class GFIError(Exception):
    """Base of gfi's own errors: a one-line message naming the problem and the fix."""


class NotApplicable(GFIError, ValueError):
    """The method cannot run on this model; the message says why and what works instead."""


class SettingsError(GFIError, ValueError):
    """A setting is unknown, of the wrong type, not finite or out of range; the message names it."""


class UsageError(GFIError, ValueError):
    """A problem with the user's options or input files (the CLI's one-line error, exit code 2)."""


class TargetError(GFIError, ValueError):
    """Targets that cannot be read as class indices of the model for this batch; the message says how."""


class InputError(GFIError, ValueError):
    """Images a method cannot take (not a (B, C, H, W) float tensor in [0, 1] with the model's C channels);
    the message says how to fix them."""
