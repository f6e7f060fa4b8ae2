"""What every dataset reader returns: a :class:`Sample` per image, and :class:`DataError` for a
missing or malformed file (the message names the file; one bad image does not stop a run).

Boxes are checked where they are read and again against the image they are scored on
(:meth:`Sample.scaled_to`): a coordinate that is not a finite number, or a box whose max is below
its min, is a :class:`DataError` naming the file (the image is skipped, never scored with it); a
box reaching beyond the image by more than one pixel (1-based VOC boxes end at the width itself) is
clipped to the image with a warning naming the file, and a box wholly outside it is a
:class:`DataError`.
"""

from __future__ import annotations

import logging
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from gfi.errors import GFIError

log = logging.getLogger(__name__)


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
        source: the annotation file the boxes come from (named in warnings and errors).
    """

    path: Path
    boxes: Tensor = field(default_factory=lambda: torch.zeros(0, 4))
    labels: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    difficult: Tensor | None = None
    classes: list[int] = field(default_factory=list)
    size: tuple[int, int] | None = None
    mask_path: Path | None = None
    index: int = 0
    source: Path | None = None

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
        """Boxes rescaled from the annotation's size to an image of ``width`` x ``height``, then fitted
        to it (:func:`fit_boxes`: clipped with a warning, or a :class:`DataError` when one lies wholly
        outside)."""
        boxes = self.boxes
        if self.size is not None and tuple(self.size) != (width, height):
            sx, sy = width / self.size[0], height / self.size[1]
            boxes = boxes * torch.tensor([sx, sy, sx, sy])
        boxes = fit_boxes(boxes, width, height, f"{self.source or self.path} ({self.path.name})")
        if boxes is self.boxes and self.size is not None and tuple(self.size) == (width, height):
            return self
        return Sample(self.path, boxes, self.labels, self.difficult, self.classes, (width, height),
                      self.mask_path, self.index, self.source)


BoxSample = Sample  # the older name


def check_box(box: list[float]) -> None:
    """A ``ValueError`` for a box ``[xmin, ymin, xmax, ymax]`` with a coordinate that is not a finite
    number or a max below its min (its reader turns it into a :class:`DataError` naming the file)."""
    if not all(math.isfinite(v) for v in box):
        raise ValueError(f"box {box} has a coordinate that is not a finite number")
    if box[2] < box[0] or box[3] < box[1]:
        raise ValueError(f"box {box} has xmax < xmin or ymax < ymin")


def fit_boxes(boxes: Tensor, width: int, height: int, where: str) -> Tensor:
    """``boxes`` (N, 4) on a ``width`` x ``height`` image: unchanged when every edge lies in [0, width]
    x [0, height] (inclusive pixels, one past the last allowed for 1-based annotations); a box that
    reaches further is clipped to the image's pixels, with one warning naming ``where``; a box wholly
    outside the image is a :class:`DataError` (it could only count as a miss)."""
    b = boxes.reshape(-1, 4).float()
    if not len(b):
        return boxes
    outside = (b[:, 0] > width) | (b[:, 1] > height) | (b[:, 2] < 0) | (b[:, 3] < 0)
    if outside.any():
        box = [round(float(v), 2) for v in b[outside][0]]
        raise DataError(f"{where}: box {box} lies outside the {width}x{height} image; fix the annotation")
    over = (b[:, :2] < 0).any(1) | (b[:, 2] > width) | (b[:, 3] > height)
    if not over.any():
        return boxes
    limit = torch.tensor([width - 1, height - 1], dtype=b.dtype).repeat(2)
    fitted = torch.minimum(b.clamp(min=0), limit)
    shown = "; ".join(f"{[round(float(v), 2) for v in b[i]]} -> {[round(float(v), 2) for v in fitted[i]]}"
                      for i in torch.nonzero(over).flatten().tolist()[:3])
    log.warning("%s: %d box(es) reach outside the %dx%d image and are clipped to it: %s", where, int(over.sum()),
                width, height, shown)
    return fitted.to(boxes.dtype)


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
            check_box(box)
            objs.append((obj.findtext("name").strip(), box, (obj.findtext("difficult") or "0").strip() == "1"))
    except (TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"{path}: malformed annotation ({type(exc).__name__}: {exc})") from exc
    if not objs:
        raise DataError(f"{path}: no <object> with a <bndbox>")
    return objs, wh
