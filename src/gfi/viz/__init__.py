"""Overlays and figures."""

from gfi.viz.overlay import overlay, save_explanation_figure, to_original_size

__all__ = ["overlay", "save_explanation_figure", "to_original_size"]
