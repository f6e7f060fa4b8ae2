"""Salient-object sets (SOD, ECSSD, DUT-OMRON, ...): a folder of images and a folder of binary
masks with the same stems. Folder names tried: ``images``/``Imgs``/``img`` and
``masks``/``GT``/``gt``. A mask is foreground where it is > half its maximum code (0/1 and 0/255
masks both work)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from gfi.data.images import IMAGE_SUFFIXES
from gfi.data.samples import DataError, Sample, safe_stem

IMAGE_DIRS = ("images", "Imgs", "imgs", "img", "Image")
MASK_DIRS = ("masks", "GT", "gt", "Mask", "mask")
MASK_SUFFIXES = (".png", ".bmp", ".jpg", ".tif", ".tiff", ".gif")


def read_mask(path: str | Path) -> Tensor:
    """An (H, W) bool mask from a 0/1 or 0/255 (or any two-level) image file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: mask file is missing")
    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("L") if img.mode not in ("L", "1", "P") else img)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path}: cannot read the mask ({exc})") from exc
    if arr.ndim != 2:
        raise DataError(f"{path}: a mask must have one channel, got shape {arr.shape}")
    top = int(arr.max())
    return torch.from_numpy(arr > top / 2) if top > 0 else torch.zeros(arr.shape, dtype=torch.bool)


class SalientObjects:
    """Images with ground-truth masks, in sorted order."""

    kind = "sod"
    class_names = None

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.image_dir = next((self.root / d for d in IMAGE_DIRS if (self.root / d).is_dir()), None)
        self.mask_dir = next((self.root / d for d in MASK_DIRS if (self.root / d).is_dir()), None)
        if self.image_dir is None or self.mask_dir is None:
            raise DataError(f"{self.root}: a salient-object set needs an image folder ({'/'.join(IMAGE_DIRS)}) "
                            f"and a mask folder ({'/'.join(MASK_DIRS)}) with the same stems")
        self.paths = sorted(p for p in self.image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise DataError(f"{self.image_dir}: no images")
        self.masks = {p.stem: p for p in self.mask_dir.iterdir() if p.suffix.lower() in MASK_SUFFIXES}

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def keys(self) -> list[str]:
        return [safe_stem(p) for p in self.paths]

    def __getitem__(self, i: int) -> Sample:
        path = self.paths[i]
        mask = self.masks.get(path.stem)
        if mask is None:
            raise DataError(f"{self.mask_dir / (path.stem + '.png')}: mask file is missing for {path.name}")
        return Sample(path, mask_path=mask, index=i)
