"""Open a dataset folder by kind or by its layout."""

from __future__ import annotations

from pathlib import Path

from gfi.data.imagenet import ImageNetVal
from gfi.data.samples import DataError
from gfi.data.sod import MASK_DIRS, SalientObjects
from gfi.data.voc import VOCDetection

Dataset = ImageNetVal | VOCDetection | SalientObjects


def open_dataset(root: str | Path, kind: str = "auto", split: str = "test") -> Dataset:
    """ImageNet val, VOC or a salient-object set, by ``kind`` or by the folder's layout."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    if kind == "auto":
        if (root / "LOC_synset_mapping.txt").is_file():
            kind = "imagenet"
        elif any((c / "JPEGImages").is_dir() for c in (root, *root.glob("VOC*"), *root.glob("VOCdevkit/VOC*"))):
            kind = "voc"
        elif any((root / d).is_dir() for d in MASK_DIRS):
            kind = "sod"
        else:
            raise DataError(f"{root}: cannot tell the dataset: expected LOC_synset_mapping.txt (ImageNet val), "
                            "a VOCdevkit layout, or images/ + masks/ (salient objects); or pass --dataset")
    if kind == "imagenet":
        return ImageNetVal(root)
    if kind == "voc":
        return VOCDetection(root, split)
    if kind == "sod":
        return SalientObjects(root)
    raise DataError(f"unknown dataset kind {kind!r}; choose imagenet, voc or sod")
