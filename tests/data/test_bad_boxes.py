"""Bad ILSVRC/VOC boxes are never scored silently: a coordinate that is not finite or a box whose
max is below its min is refused naming the file (XML and CSV); a box reaching outside the image is
clipped with a warning naming the file, and one wholly outside is refused."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from gfi.data.imagenet import ImageNetVal
from gfi.data.samples import DataError, Sample, fit_boxes, read_voc_xml
from gfi.evaluation.metrics import iou
from tests.evaluation.conftest import build
from tests.evaluation.helpers import evaluate, summary

XML = ("<annotation><size><width>32</width><height>24</height><depth>3</depth></size><object><name>n00000002</name>"
       "<difficult>0</difficult><bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox>"
       "</object></annotation>")


def xml_root(tmp_path, box):
    root = build("imagenet", tmp_path)
    (root / "bbox_val" / "img_a.xml").write_text(XML.format(*box))
    return root


@pytest.mark.parametrize("box", [(4, 2, "nan", 11), (4, 2, "inf", 11), ("-inf", 2, 15, 11), (4, "nan", 15, 11)])
def test_a_box_that_is_not_finite_is_refused_naming_the_file(tmp_path, box):
    ds = ImageNetVal(xml_root(tmp_path, box))
    with pytest.raises(DataError, match=r"img_a\.xml: malformed annotation .*not a finite number"):
        ds[0]


def test_an_inverted_box_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"img_a\.xml: malformed annotation .*xmax < xmin"):
        ImageNetVal(xml_root(tmp_path, (15, 2, 4, 11)))[0]


@pytest.mark.parametrize(("boxes", "message"), [("4 2 nan 11", "not a finite number"), ("15 2 4 11", "xmax < xmin"),
                                                ("4 2 15 inf", "not a finite number")])
def test_the_csv_refuses_the_same_naming_its_line(tmp_path, boxes, message):
    root = build("imagenet_csv", tmp_path)
    (root / "LOC_val_solution.csv").write_text(f"ImageId,PredictionString\nimg_a,n00000002 {boxes}\n")
    with pytest.raises(DataError, match=rf"LOC_val_solution\.csv, line 2: box .*{message}"):
        ImageNetVal(root)[0]


def test_a_box_reaching_outside_the_image_is_clipped_with_a_warning_naming_the_file(tmp_path, caplog):
    ds = ImageNetVal(xml_root(tmp_path, (-5, 2, 40, 11)))
    with caplog.at_level(logging.WARNING, logger="gfi"):
        s = ds[0].scaled_to(32, 24)
    assert s.boxes.tolist() == [[0, 2, 31, 11]]
    assert len(caplog.records) == 1
    msg = caplog.records[0].getMessage()
    assert "img_a.xml (img_a.JPEG): 1 box(es) reach outside the 32x24 image and are clipped to it" in msg
    assert "[-5.0, 2.0, 40.0, 11.0] -> [0.0, 2.0, 31.0, 11.0]" in msg


def test_a_csv_box_is_checked_against_the_images_own_size(tmp_path, caplog):
    root = build("imagenet_csv", tmp_path)
    (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\nimg_a,n00000002 4 2 15 50\n"
                                               "img_b,n00000004 40 30 50 40\n")
    ds = ImageNetVal(root)
    s = ds[0]
    assert s.size == (32, 24)  # from the image's header
    with caplog.at_level(logging.WARNING, logger="gfi"):
        assert s.scaled_to(32, 24).boxes.tolist() == [[4, 2, 15, 23]]
    assert "LOC_val_solution.csv (img_a.JPEG): 1 box(es) reach outside" in caplog.text
    with pytest.raises(DataError, match=r"LOC_val_solution\.csv \(img_b\.JPEG\): box \[40\.0, 30\.0, 50\.0, 40\.0\] "
                                        r"lies outside the 32x24 image"):
        ds[1].scaled_to(32, 24)


def test_boxes_within_one_pixel_of_the_edge_are_left_as_they_are(caplog):
    boxes = torch.tensor([[1.0, 1.0, 32.0, 24.0], [0.0, 0.0, 31.0, 23.0]])  # 1-based VOC and 0-based ILSVRC
    with caplog.at_level(logging.WARNING, logger="gfi"):
        assert fit_boxes(boxes, 32, 24, "x.xml") is boxes
    assert not caplog.records


def test_clipping_is_what_the_scores_see():
    """A full-image box written past the edge: as read, its IoU with the image's box is 0.36; clipped, 1."""
    full = torch.tensor([0.0, 0.0, 31.0, 23.0])
    wide = torch.tensor([[-20.0, -10.0, 51.0, 33.0]])
    assert float(iou(full, wide)) == pytest.approx(32 * 24 / (72 * 44))
    assert float(iou(full, fit_boxes(wide, 32, 24, "x"))) == 1.0


def test_read_voc_xml_refuses_nan(tmp_path):
    p = tmp_path / "x.xml"
    p.write_text(XML.format(1, 1, "NaN", 4))
    with pytest.raises(DataError, match=r"x\.xml: malformed annotation"):
        read_voc_xml(p)


def test_a_sample_without_an_annotation_size_is_fitted_too():
    s = Sample(Path("a.jpg"), torch.tensor([[2.0, 2.0, 100.0, 5.0]]), torch.tensor([0]))
    assert s.scaled_to(10, 8).boxes.tolist() == [[2, 2, 9, 5]]


def test_pointing_skips_bad_boxes_with_the_reason(tmp_path, tiny):
    """End to end (``gfi eval pointing``): an image whose box is NaN or wholly outside is listed under
    failures with the file named, not scored as a miss."""
    root = build("imagenet", tmp_path / "data")
    (root / "bbox_val" / "img_a.xml").write_text(XML.format(4, 2, "nan", 11))
    (root / "bbox_val" / "img_b.xml").write_text(XML.format(40, 30, 50, 40))
    out = tmp_path / "pointing"
    evaluate("pointing", tiny, data=root, method="center", out=out)
    errors = {f["image"].rsplit("/", 1)[-1]: f["error"] for f in summary(out)["failures"]}
    assert "not a finite number" in errors["img_a.JPEG"] and "img_a.xml" in errors["img_a.JPEG"]
    assert "img_b.xml (img_b.JPEG): box [40.0, 30.0, 50.0, 40.0] lies outside the 32x24 image" in errors["img_b.JPEG"]
