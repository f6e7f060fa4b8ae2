"""ILSVRC validation data as distributed: images, per-image box XML files (or
``LOC_val_solution.csv``), and the class order of ``LOC_synset_mapping.txt``."""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor


@dataclass
class BoxSample:
    """One image with its ground-truth class(es) and boxes ``[xmin, ymin, xmax, ymax]``."""

    path: Path
    label: int
    boxes: Tensor  # (N, 4) float, pixel units of the image as stored
    labels: Tensor  # (N,) class of each box
    size: tuple[int, int] | None = None  # (W, H) from the annotation


def read_synsets(path: str | Path) -> list[str]:
    """WordNet ids in class order (one ``nXXXXXXXX description`` per line)."""
    lines = Path(path).read_text().splitlines()
    return [ln.split()[0] for ln in lines if ln.strip()]


def read_voc_xml(path: str | Path) -> tuple[list[tuple[str, list[float], bool]], tuple[int, int] | None]:
    """Objects ``(name, [xmin, ymin, xmax, ymax], difficult)`` and the image size from a VOC/ILSVRC XML."""
    root = ET.parse(path).getroot()
    size = root.find("size")
    wh = (int(size.findtext("width")), int(size.findtext("height"))) if size is not None else None
    objs = []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        if bb is None:
            continue
        box = [float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
        objs.append((obj.findtext("name").strip(), box, obj.findtext("difficult", "0").strip() == "1"))
    return objs, wh


class ImageNetVal:
    """ILSVRC2012 val: ``root/val/*.JPEG`` with ``root/bbox_val/*.xml`` (or ``LOC_val_solution.csv``)
    and ``LOC_synset_mapping.txt``. Samples come in sorted file order."""

    def __init__(self, root: str | Path, files: list[str] | None = None) -> None:
        self.root = Path(root)
        mapping = self.root / "LOC_synset_mapping.txt"
        if not mapping.is_file():
            raise FileNotFoundError(f"{mapping} is missing: an ILSVRC folder needs LOC_synset_mapping.txt")
        self.synsets = read_synsets(mapping)
        self.index = {s: i for i, s in enumerate(self.synsets)}
        image_dir = self.root / "val" if (self.root / "val").is_dir() else self.root
        self.paths = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
        if files is not None:
            keep = set(files)
            self.paths = [p for p in self.paths if p.name in keep or p.stem in keep]
        csv_path = self.root / "LOC_val_solution.csv"
        self._csv = self._read_csv(csv_path) if csv_path.is_file() else None
        self.xml_dir = self.root / "bbox_val"
        if self._csv is None and not self.xml_dir.is_dir():
            raise FileNotFoundError(f"{self.root} has neither bbox_val/ nor LOC_val_solution.csv")

    def _read_csv(self, path: Path) -> dict[str, list[tuple[str, list[float]]]]:
        out: dict[str, list[tuple[str, list[float]]]] = {}
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                parts = row["PredictionString"].split()
                out[row["ImageId"]] = [(parts[i], [float(v) for v in parts[i + 1:i + 5]])
                                       for i in range(0, len(parts), 5)]
        return out

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> BoxSample:
        path = self.paths[i]
        size = None
        if self._csv is not None:
            objs = self._csv[path.stem]
        else:
            parsed, size = read_voc_xml(self.xml_dir / f"{path.stem}.xml")
            objs = [(n, b) for n, b, _ in parsed]
        labels = torch.tensor([self.index[n] for n, _ in objs])
        return BoxSample(path, int(labels[0]), torch.tensor([b for _, b in objs]), labels, size)
