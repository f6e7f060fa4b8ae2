"""Dataset readers on tiny synthetic fixtures (tests/fixtures/eval) and on ../shared/data."""

from __future__ import annotations

import pytest
import torch

from gfi.data.datasets import open_dataset
from gfi.data.imagenet import ImageNetVal
from gfi.data.samples import DataError, read_voc_xml
from gfi.data.sod import SalientObjects, read_mask
from gfi.data.voc import VOCDetection
from tests.conftest import need_shared
from tests.evaluation.conftest import build


def test_imagenet_xml_reader(tmp_path):
    ds = ImageNetVal(build("imagenet", tmp_path))
    assert [p.name for p in ds.paths] == ["img_a.JPEG", "img_b.JPEG", "img_c.JPEG", "img_d.JPEG", "img_e.JPEG",
                                           "img_f.JPEG"]
    a = ds[0]
    assert a.label == 1 and a.classes == [1] and a.size == (32, 24)
    assert a.boxes.tolist() == [[4, 2, 15, 11]]
    b = ds[1]
    assert b.label == 3 and b.boxes_of(3).shape == (2, 4) and b.boxes_of(0).shape == (0, 4)
    with pytest.raises(DataError, match=r"img_c\.xml: malformed XML"):
        ds[2]
    with pytest.raises(DataError, match=r"img_d\.xml: annotation file is missing"):
        ds[3]
    with pytest.raises(DataError, match=r"img_f\.xml: class 'n09999999'"):
        ds[5]
    e = ds[4]  # annotated at 64x48, image stored at 32x24: boxes scale by one half
    assert e.size == (64, 48) and e.scaled_to(32, 24).boxes.tolist() == [[4, 2, 15.5, 11.5]]


def test_imagenet_csv_reader(tmp_path):
    ds = ImageNetVal(build("imagenet_csv", tmp_path))
    assert ds[0].label == 1 and ds[0].boxes.tolist() == [[4, 2, 15, 11]]
    assert ds[1].boxes.tolist() == [[0, 0, 9, 9], [20, 10, 31, 23]] and ds[1].labels.tolist() == [3, 3]
    with pytest.raises(DataError, match=r"LOC_val_solution\.csv, line 4: PredictionString"):
        ds[2]
    with pytest.raises(DataError, match=r"LOC_val_solution\.csv: no row for img_d"):
        ds[3]


def test_imagenet_missing_mapping_and_bad_header(tmp_path):
    root = build("imagenet_csv", tmp_path)
    (root / "LOC_val_solution.csv").write_text("id,boxes\nimg_a,x\n")
    with pytest.raises(DataError, match=r"LOC_val_solution\.csv, line 1: expected the header"):
        ImageNetVal(root)
    (root / "LOC_synset_mapping.txt").unlink()
    with pytest.raises(DataError, match=r"LOC_synset_mapping\.txt: class list is missing"):
        ImageNetVal(root)


def test_imagenet_csv_from_a_spreadsheet(tmp_path):
    # issue 14, case 5: a UTF-8 byte-order mark, no header, CRLF line ends; every error names its line
    root = build("imagenet_csv", tmp_path)
    csv_path = root / "LOC_val_solution.csv"
    rows = ["img_a,n00000002 4 2 15 11", "img_b,n00000004 0 0 9 9 n00000004 20 10 31 23"]
    for header in (["ImageId,PredictionString"], []):
        csv_path.write_bytes("\ufeff".encode() + "\r\n".join(header + rows).encode() + b"\r\n")
        ds = ImageNetVal(root)
        assert ds[0].boxes.tolist() == [[4, 2, 15, 11]] and ds[1].labels.tolist() == [3, 3]
    bad = {
        "img_a,n00000002 4 2 15 11,extra": r"line 2: expected 2 columns",
        ",n00000002 4 2 15 11": r"line 2: no ImageId",
        "img_a,n00000002 1 2 3 4": r"line 2: img_a already has a row \(line 1\)",
        "img_x": r"line 2: expected 2 columns `ImageId,PredictionString`, got 1",
        "img_x," + "9" * 200_000: r"line 2: field larger than field limit",  # csv.Error
    }
    for row, message in bad.items():
        csv_path.write_bytes("\ufeff".encode() + "\n".join([rows[0], row]).encode() + b"\n")
        with pytest.raises(DataError, match=r"LOC_val_solution\.csv, " + message):
            ImageNetVal(root)
    csv_path.write_bytes(b"ImageId,PredictionString\nimg_a,n00000002 4 2 15 11\nimg_b,caf\xe9\n")
    with pytest.raises(DataError, match=r"LOC_val_solution\.csv, line 3: not UTF-8 text"):
        ImageNetVal(root)
    csv_path.write_text("ImageId,PredictionString\nimg_a,n00000002 4 2 15 11\nimg_b,n00000004 0 0 9\n")
    with pytest.raises(DataError, match=r"LOC_val_solution\.csv, line 3: PredictionString must be groups"):
        ImageNetVal(root)[1]
    mapping = root / "LOC_synset_mapping.txt"
    mapping.write_bytes("\ufeff".encode() + mapping.read_bytes())  # a BOM on the class list too
    assert ImageNetVal(root).synsets[0] == "n00000001"


def test_voc_reader_split_file_and_difficult(tmp_path):
    ds = VOCDetection(build("voc", tmp_path), "test")
    assert ds.ids == ["000001", "000002", "000003", "000004"]
    s = ds[0]
    # dog (11) has a non-difficult box; person (14) is only difficult -> not a target
    assert s.classes == [11] and s.difficult.tolist() == [False, True, True]
    assert s.boxes_of(11).shape == (2, 4)  # the difficult dog box still counts for pointing
    with pytest.raises(DataError, match="every object is marked difficult"):
        ds[1]
    assert ds[2].classes == [1, 6]
    with pytest.raises(DataError, match=r"000004\.xml: annotation file is missing"):
        ds[3]


def test_voc_reader_per_class_files(tmp_path):
    ds = VOCDetection(build("voc", tmp_path), "val")  # no val.txt: the 20 <class>_val.txt files
    assert ds.ids == ["000001", "000003"]
    assert ds.image_labels == {"000001": [11], "000003": [1, 6]}
    assert ds[1].classes == [1, 6]


def test_voc_reader_errors(tmp_path):
    root = build("voc", tmp_path)
    with pytest.raises(DataError, match=r"trainval\.txt is missing"):
        VOCDetection(root, "trainval")
    (root / "VOCdevkit/VOC2007/ImageSets/Main/dog_val.txt").write_text("000001 yes\n")
    with pytest.raises(DataError, match=r"dog_val\.txt, line 1"):
        VOCDetection(root, "val")
    with pytest.raises(DataError, match="not a VOCdevkit folder"):
        VOCDetection(tmp_path / "nowhere")


def test_read_voc_xml_rejects_inverted_box(tmp_path):
    p = tmp_path / "x.xml"
    p.write_text("<annotation><object><name>dog</name><bndbox><xmin>5</xmin><ymin>1</ymin><xmax>2</xmax>"
                 "<ymax>4</ymax></bndbox></object></annotation>")
    with pytest.raises(DataError, match=r"x\.xml: malformed annotation"):
        read_voc_xml(p)


def test_sod_reader_and_masks(tmp_path):
    ds = SalientObjects(build("sod", tmp_path))
    assert [p.stem for p in ds.paths] == ["a", "b", "c", "d"]
    a = read_mask(ds[0].mask_path)
    assert a.dtype == torch.bool and a.sum() == 8 * 12 and bool(a[4, 8]) and not bool(a[3, 8])
    b = read_mask(ds[1].mask_path)  # a 0/1 mask
    assert b.sum() == 10 * 16
    with pytest.raises(DataError, match=r"c\.png: mask file is missing for c\.jpg"):
        ds[2]


def test_open_dataset_detects_layouts(tmp_path):
    assert open_dataset(build("imagenet", tmp_path)).kind == "imagenet"
    assert open_dataset(build("voc", tmp_path)).kind == "voc"
    assert open_dataset(build("sod", tmp_path)).kind == "sod"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="cannot tell the dataset"):
        open_dataset(tmp_path / "empty")


def test_shared_data_readers():
    im = open_dataset(need_shared("imagenet-val-dev"))
    assert len(im) == 300 and im.kind == "imagenet"
    s = im[0]
    assert s.boxes.shape[1] == 4 and 0 <= s.label < 1000 and s.size == (227, 227)
    voc = open_dataset(need_shared("voc07-sample"))
    assert len(voc) == 13 and voc[0].classes == [11, 14]  # 000001: dog and person
    sod = open_dataset(need_shared("sod-dev"))
    assert len(sod) == 100 and read_mask(sod[0].mask_path).any()
