"""Image loading and dataset readers."""

from gfi.data.images import ImageLoadError, find_images, load_image

__all__ = ["ImageLoadError", "find_images", "load_image"]
