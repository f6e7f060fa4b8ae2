"""What every dataset reader returns: a :class:`Sample` per image, and :class:`DataError` for a
missing or malformed file (the message names the file; one bad image does not stop a run)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from gfi.errors import GFIError


class DataError(GFIError, ValueError):
    """A dataset file that is missing or cannot be parsed; the message names the file."""


def read_text(path: str | Path) -> str:
    """A text file as UTF-8, a leading byte-order mark dropped (spreadsheets write one); bytes that
    are not UTF-8 are a :class:`DataError` naming the file and the line."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                        "save the file as UTF-8") from exc


def safe_stem(path: str | Path) -> str:
    """A file-name stem that cannot leave an output folder (the name ``gfi explain`` gives outputs)."""
    stem = re.sub(r"[^\w.\-]+", "_", Path(path).stem).lstrip(".") or "image"
    return stem[:120]


@dataclass
class Sample:
    """One image with its annotation.

    Attributes:
        path: the image file.
        boxes: (N, 4) float boxes ``[xmin, ymin, xmax, ymax]`` (inclusive pixels of the image as stored).
        labels: (N,) class index of each box.
        difficult: (N,) True for objects marked ``difficult`` (PASCAL VOC).
        classes: the image-level classes to explain (ImageNet: the one ground-truth class; VOC:
            every class with a non-difficult object; salient-object sets: empty = top-1).
        size: (W, H) from the annotation, when it gives one.
        mask_path: the ground-truth mask of a salient-object set.
        index: position in the dataset's sorted order.
    """

    path: Path
    boxes: Tensor = field(default_factory=lambda: torch.zeros(0, 4))
    labels: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    difficult: Tensor | None = None
    classes: list[int] = field(default_factory=list)
    size: tuple[int, int] | None = None
    mask_path: Path | None = None
    index: int = 0

    def __post_init__(self) -> None:
        if self.difficult is None:
            self.difficult = torch.zeros(len(self.labels), dtype=torch.bool)
        if not self.classes and len(self.labels):
            self.classes = list(dict.fromkeys(int(c) for c, d in zip(self.labels, self.difficult, strict=True)
                                              if not d))

    @property
    def key(self) -> str:
        return safe_stem(self.path)

    @property
    def label(self) -> int:
        """The first image-level class (ImageNet's single ground-truth class)."""
        if not self.classes:
            raise DataError(f"{self.path} has no class label")
        return self.classes[0]

    def boxes_of(self, cls: int) -> Tensor:
        """(M, 4) boxes of class ``cls`` (difficult ones included)."""
        return self.boxes[self.labels == cls]

    def scaled_to(self, width: int, height: int) -> Sample:
        """Boxes rescaled from the annotation's size to an image of ``width`` x ``height``."""
        if self.size is None or tuple(self.size) == (width, height):
            return self
        sx, sy = width / self.size[0], height / self.size[1]
        scale = torch.tensor([sx, sy, sx, sy])
        return Sample(self.path, self.boxes * scale, self.labels, self.difficult, self.classes, (width, height),
                      self.mask_path, self.index)


BoxSample = Sample  # the older name


def read_voc_xml(path: str | Path) -> tuple[list[tuple[str, list[float], bool]], tuple[int, int] | None]:
    """Objects ``(name, [xmin, ymin, xmax, ymax], difficult)`` and the image size (W, H) from a
    VOC/ILSVRC annotation. Raises :class:`DataError` naming the file when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: annotation file is missing")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise DataError(f"{path}: malformed XML ({exc})") from exc
    try:
        size = root.find("size")
        wh = (int(size.findtext("width")), int(size.findtext("height"))) if size is not None else None
        if wh is not None and min(wh) <= 0:
            wh = None  # some files carry 0x0; then no rescaling is possible
        objs = []
        for obj in root.iter("object"):
            bb = obj.find("bndbox")
            if bb is None:
                continue
            box = [float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
            if box[2] < box[0] or box[3] < box[1]:
                raise ValueError(f"box {box} has xmax < xmin or ymax < ymin")
            objs.append((obj.findtext("name").strip(), box, (obj.findtext("difficult") or "0").strip() == "1"))
    except (TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"{path}: malformed annotation ({type(exc).__name__}: {exc})") from exc
    if not objs:
        raise DataError(f"{path}: no <object> with a <bndbox>")
    return objs, wh
