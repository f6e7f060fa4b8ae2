"""ILSVRC2012 validation data as distributed: the images, the per-image box XML files
(``ILSVRC2012_bbox_val_v3.tgz``) or Kaggle's ``LOC_val_solution.csv``, and the class order of
``LOC_synset_mapping.txt`` (torchvision's order).

Layouts found under ``root`` (first match wins):

* images: ``val/``, ``ILSVRC/Data/CLS-LOC/val/`` or ``root`` itself (``*.JPEG``, ``*.jpg``, ``*.png``);
* boxes: ``LOC_val_solution.csv`` (``ImageId,PredictionString`` with ``synset xmin ymin xmax ymax ...``),
  else one XML per image in ``bbox_val/``, ``ILSVRC/Annotations/CLS-LOC/val/`` or next to the images.

When an XML gives an image size different from the image's own (pre-resized images), the boxes
are rescaled to the image (see :meth:`Sample.scaled_to`). A CSV gives no size: its samples carry
the image's own (read from the file's header), so that the same check of the boxes against the
image applies. A box with a coordinate that is not a finite number, or inverted, is a
:class:`DataError` naming the file and line; one reaching outside the image is clipped with a
warning (:func:`gfi.data.samples.fit_boxes`).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import torch

from gfi.data.samples import BoxSample, DataError, Sample, check_box, read_text, read_voc_xml

__all__ = ["BoxSample", "DataError", "ImageNetVal", "read_synsets", "read_voc_xml"]

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def read_synsets(path: str | Path) -> list[str]:
    """WordNet ids in class order (one ``nXXXXXXXX description`` per line)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: class list is missing (an ILSVRC folder needs LOC_synset_mapping.txt)")
    out = []
    for n, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        wnid = line.split()[0]
        if not (wnid.startswith("n") and wnid[1:].isdigit()):
            raise DataError(f"{path}, line {n}: expected `nXXXXXXXX description`, got {line[:60]!r}")
        out.append(wnid)
    if len(set(out)) != len(out):
        raise DataError(f"{path}: a synset is listed twice")
    return out


class ImageNetVal:
    """ILSVRC2012 val with boxes. Samples come in sorted file order; ``files`` keeps only those
    names or stems. ``ds[i]`` raises :class:`DataError` naming the file when its annotation is
    missing or malformed."""

    kind = "imagenet"

    def __init__(self, root: str | Path, files: list[str] | None = None) -> None:
        self.root = Path(root)
        self.synsets = read_synsets(self.root / "LOC_synset_mapping.txt")
        self.class_names = self.synsets
        self.index = {s: i for i, s in enumerate(self.synsets)}
        image_dir = next((d for d in (self.root / "val", self.root / "ILSVRC" / "Data" / "CLS-LOC" / "val")
                          if d.is_dir()), self.root)
        self.image_dir = image_dir
        self.paths = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if files is not None:
            keep = set(files)
            self.paths = [p for p in self.paths if p.name in keep or p.stem in keep]
        if not self.paths:
            raise DataError(f"{image_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
        csv_path = self.root / "LOC_val_solution.csv"
        self._csv = self._read_csv(csv_path) if csv_path.is_file() else None
        self.csv_path = csv_path
        xml_dirs = (self.root / "bbox_val", self.root / "ILSVRC" / "Annotations" / "CLS-LOC" / "val", image_dir)
        self.xml_dir = next((d for d in xml_dirs if d.is_dir() and any(d.glob("*.xml"))), None)
        if self._csv is None and self.xml_dir is None:
            raise DataError(f"{self.root}: no boxes found: expected LOC_val_solution.csv or a folder of XML files "
                            "(bbox_val/, ILSVRC/Annotations/CLS-LOC/val/ or next to the images)")

    @staticmethod
    def _read_csv(path: Path) -> dict[str, tuple[int, str]]:
        """ImageId -> (line number, PredictionString); rows are parsed when their image is read.

        Read as UTF-8 with an optional byte-order mark; the header row ``ImageId,PredictionString``
        is optional (a first row without a digit is taken for a header, and must be that one). Every
        error names the file and the line.
        """
        out: dict[str, tuple[int, str]] = {}
        reader = csv.reader(io.StringIO(read_text(path), newline=""))
        first = True
        try:
            for row in reader:
                n = reader.line_num
                cells = [c.strip() for c in row]
                if not any(cells):
                    continue
                if first and not any(ch.isdigit() for c in cells for ch in c):
                    first = False
                    if [c.lower() for c in cells] != ["imageid", "predictionstring"]:
                        raise DataError(f"{path}, line {n}: expected the header `ImageId,PredictionString` "
                                        f"(or no header), got {row}")
                    continue
                first = False
                if len(cells) != 2:
                    raise DataError(f"{path}, line {n}: expected 2 columns `ImageId,PredictionString`, "
                                    f"got {len(cells)}: {','.join(row)[:60]!r}")
                if not cells[0]:
                    raise DataError(f"{path}, line {n}: no ImageId")
                if cells[0] in out:
                    raise DataError(f"{path}, line {n}: {cells[0]} already has a row (line {out[cells[0]][0]})")
                out[cells[0]] = (n, cells[1])
        except csv.Error as exc:
            raise DataError(f"{path}, line {reader.line_num}: {exc}") from exc
        return out

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def keys(self) -> list[str]:
        from gfi.data.samples import safe_stem

        return [safe_stem(p) for p in self.paths]

    def _objects(self, path: Path) -> tuple[list[tuple[str, list[float], bool]], tuple[int, int] | None, Path]:
        if self._csv is not None:
            if path.stem not in self._csv:
                raise DataError(f"{self.csv_path}: no row for {path.stem}")
            n, text = self._csv[path.stem]
            parts = text.split()
            if not parts or len(parts) % 5:
                raise DataError(f"{self.csv_path}, line {n}: PredictionString must be groups of "
                                f"`synset xmin ymin xmax ymax`, got {text[:60]!r}")
            try:
                objs = [(parts[i], [float(v) for v in parts[i + 1:i + 5]], False) for i in range(0, len(parts), 5)]
                for _, box, _ in objs:
                    check_box(box)
            except ValueError as exc:
                raise DataError(f"{self.csv_path}, line {n}: {exc}") from exc
            from gfi.data.images import image_size

            h, w = image_size(path)
            return objs, (w, h), self.csv_path
        xml = self.xml_dir / f"{path.stem}.xml"
        objs, size = read_voc_xml(xml)
        return objs, size, xml

    def __getitem__(self, i: int) -> Sample:
        path = self.paths[i]
        objs, size, source = self._objects(path)
        unknown = sorted({n for n, _, _ in objs if n not in self.index})
        if unknown:
            raise DataError(f"{source}: class {unknown[0]!r} of {path.name} is not in LOC_synset_mapping.txt")
        labels = torch.tensor([self.index[n] for n, _, _ in objs])
        return Sample(path, torch.tensor([b for _, b, _ in objs]), labels,
                      torch.tensor([d for _, _, d in objs]), [int(labels[0])], size, index=i, source=source)
