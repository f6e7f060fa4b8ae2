"""gfi.persist: atomic writes, first-writer-wins creation, the resume rule, the folder check."""

import numpy as np
import pytest
import torch

from gfi.persist import (
    OutputFolderError,
    atomic_create,
    atomic_write_text,
    check_folder,
    differences,
    resume_or_refuse,
)


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    f = tmp_path / "a.txt"
    atomic_write_text(f, "old")

    def boom(p):
        p.write_text("half")
        raise RuntimeError("killed")

    from gfi.persist import atomic_write

    with pytest.raises(RuntimeError):
        atomic_write(f, boom)
    assert f.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_create_the_first_writer_wins(tmp_path):
    f = tmp_path / "m.npy"
    assert atomic_create(f, lambda p: np.save(p, np.ones(2, np.float32)))
    assert not atomic_create(f, lambda p: np.save(p, np.zeros(2, np.float32)))
    assert np.load(f).tolist() == [1.0, 1.0] and [p.name for p in tmp_path.iterdir()] == ["m.npy"]


def test_a_map_another_run_published_first_is_kept_and_returned(tmp_path):
    from gfi.evaluation.mapstore import MapStore

    a, b = MapStore(tmp_path, {"method": "x"}), MapStore(tmp_path, {"method": "x"})
    first = a.save("img.png", 3, torch.full((2, 2), 0.25))
    second = b.save("img.png", 3, torch.full((2, 2), 0.75))  # e.g. computed at the same time elsewhere
    assert torch.equal(first, second) and float(b.load("img.png", 3, (2, 2))[0, 0]) == 0.25


def test_resume_rule():
    assert resume_or_refuse("o", None, {"a": 1}, overwrite=False) is False
    assert resume_or_refuse("o", {"a": 1}, {"a": 1}, overwrite=False) is True
    assert resume_or_refuse("o", {"a": 1}, {"a": 2}, overwrite=True) is False
    with pytest.raises(OutputFolderError, match=r"differs in: a; c\.d\).*--overwrite"):
        resume_or_refuse("o", {"a": 1, "c": {"d": 1}}, {"a": 2, "c": {"d": 2}}, overwrite=False)
    assert differences({"x": {"y": 1, "z": 2}}, {"x": {"y": 1, "z": 3}, "w": 0}) == ["w", "x.z"]


def test_check_folder_creates_nothing(tmp_path):
    check_folder(tmp_path / "new" / "deeper")
    assert not (tmp_path / "new").exists() and list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputFolderError, match="is an existing file, not a folder"):
        check_folder(tmp_path / "file" / "sub")
