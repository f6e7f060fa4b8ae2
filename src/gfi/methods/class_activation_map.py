"""The former name of :mod:`gfi.methods.cam` (CAM), kept so that old imports keep working."""

from gfi.methods.cam import CAM, CAMSettings, CAMStructureError

__all__ = ["CAM", "CAMSettings", "CAMStructureError"]
