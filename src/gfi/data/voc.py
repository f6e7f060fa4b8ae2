"""PASCAL VOC in the VOCdevkit layout: ``VOC2007/{JPEGImages, Annotations, ImageSets/Main}``.

* The image list is ``ImageSets/Main/<split>.txt``; when it is absent, the union of the
  per-class files ``ImageSets/Main/<class>_<split>.txt``.
* Image-level labels: from the per-class files when all 20 are present (``1`` present, ``0`` only
  difficult objects, ``-1`` absent; a class is a target only for ``1``), else from the XML (a
  class with at least one object not marked ``difficult``).
* Boxes: every object of the XML, with its ``difficult`` flag (kept in ``Sample.difficult``;
  the pointing game counts a point on a difficult object of the target class as a hit).
"""

from __future__ import annotations

from pathlib import Path

import torch

from gfi.data.samples import DataError, Sample, read_text, read_voc_xml, safe_stem

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


def find_voc_root(root: str | Path) -> Path:
    """The folder holding ``JPEGImages/`` and ``Annotations/`` (given it, ``VOCdevkit/`` or its parent)."""
    root = Path(root)
    candidates = [root, *sorted(root.glob("VOC*")), *sorted(root.glob("VOCdevkit/VOC*"))]
    for c in candidates:
        if (c / "JPEGImages").is_dir() and (c / "Annotations").is_dir():
            return c
    raise DataError(f"{root}: not a VOCdevkit folder (no VOC20xx/JPEGImages and Annotations below it)")


def _read_list(path: Path) -> list[tuple[str, int | None]]:
    out = []
    for n, line in enumerate(read_text(path).splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) > 2 or (len(parts) == 2 and parts[1] not in ("1", "0", "-1")):
            raise DataError(f"{path}, line {n}: expected `image_id` or `image_id 1|0|-1`, got {line[:60]!r}")
        out.append((parts[0], int(parts[1]) if len(parts) == 2 else None))
    return out


class VOCDetection:
    """A VOC split with boxes and image-level labels (class indices in :data:`VOC_CLASSES` order)."""

    kind = "voc"
    class_names: tuple[str, ...] = VOC_CLASSES

    def __init__(self, root: str | Path, split: str = "test") -> None:
        self.root = find_voc_root(root)
        self.split = split
        main = self.root / "ImageSets" / "Main"
        split_file = main / f"{split}.txt"
        per_class = {c: main / f"{c}_{split}.txt" for c in VOC_CLASSES}
        self.image_labels: dict[str, list[int]] | None = None
        if all(p.is_file() for p in per_class.values()):
            labels: dict[str, list[int]] = {}
            for ci, c in enumerate(VOC_CLASSES):
                for image_id, flag in _read_list(per_class[c]):
                    if flag is None:
                        raise DataError(f"{per_class[c]}: expected `image_id 1|0|-1` lines")
                    labels.setdefault(image_id, [])
                    if flag == 1:
                        labels[image_id].append(ci)
            self.image_labels = labels
        if split_file.is_file():
            ids = [i for i, _ in _read_list(split_file)]
        elif self.image_labels is not None:
            ids = sorted(self.image_labels)
        else:
            raise DataError(f"{split_file} is missing (and not all per-class files {main}/<class>_{split}.txt exist)")
        self.ids = sorted(dict.fromkeys(ids))
        if not self.ids:
            raise DataError(f"{split_file}: no image ids")
        self.paths = [self.root / "JPEGImages" / f"{i}.jpg" for i in self.ids]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def keys(self) -> list[str]:
        return [safe_stem(p) for p in self.paths]

    def __getitem__(self, i: int) -> Sample:
        image_id = self.ids[i]
        xml = self.root / "Annotations" / f"{image_id}.xml"
        objs, size = read_voc_xml(xml)
        index = {c: k for k, c in enumerate(VOC_CLASSES)}
        unknown = sorted({n for n, _, _ in objs if n not in index})
        if unknown:
            raise DataError(f"{xml}: unknown VOC class {unknown[0]!r}")
        labels = torch.tensor([index[n] for n, _, _ in objs])
        difficult = torch.tensor([d for _, _, d in objs])
        classes: list[int] = []
        if self.image_labels is not None:
            classes = sorted(self.image_labels.get(image_id, []))
        if not classes:
            classes = sorted({int(c) for c, d in zip(labels, difficult, strict=True) if not d})
        if not classes:
            raise DataError(f"{xml}: every object is marked difficult, so the image has no target class")
        return Sample(self.paths[i], torch.tensor([b for _, b, _ in objs]), labels, difficult, classes, size,
                      index=i, source=xml)
