"""Issue 14, case 8: what ``read_state_dict`` says about a checkpoint it cannot read.

``--unsafe-allow-pickle`` is suggested only for a pickle that ``torch.load(weights_only=True)``
refused for the Python object it would build, and the message names that object's global; an
empty file, random bytes and a damaged archive are said to be what they are.
"""

from __future__ import annotations

import os

import pytest
import torch

from gfi.models.weights import WeightsError, read_state_dict


class Custom:
    """A class a checkpoint may hold: only unpickling can build it."""


def test_refused_pickle_names_the_global_and_suggests_the_flag(tmp_path):
    for name, legacy in (("obj.pth", False), ("legacy.pth", True)):
        path = tmp_path / name
        torch.save({"w": torch.zeros(2), "extra": Custom()}, path, _use_new_zipfile_serialization=not legacy)
        held = r"holds a Python object \(tests\.models\.test_weights\.Custom\)"
        with pytest.raises(WeightsError, match=held) as info:
            read_state_dict(path)
        assert "--unsafe-allow-pickle" in str(info.value) and str(path) in str(info.value)


def test_empty_file_says_it_is_empty(tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(WeightsError, match=r"empty\.pth' is empty \(0 bytes\)") as info:
        read_state_dict(tmp_path / "empty.pth")
    assert "--unsafe-allow-pickle" not in str(info.value)


def test_random_bytes_are_not_a_checkpoint(tmp_path):
    data = os.urandom(4096)
    while data[:1] == b"\x80" or data[:2] == b"PK":  # make sure it looks like neither format
        data = os.urandom(4096)
    (tmp_path / "noise.pth").write_bytes(data)
    with pytest.raises(WeightsError, match=r"noise\.pth is not a PyTorch checkpoint: it is neither") as info:
        read_state_dict(tmp_path / "noise.pth")
    assert "--unsafe-allow-pickle" not in str(info.value)


def test_damaged_archive_and_foreign_pickle(tmp_path):
    torch.save({"w": torch.zeros(100)}, tmp_path / "ok.pth")
    data = (tmp_path / "ok.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=r"cut\.pth is a zip archive but not a readable PyTorch checkpoint") as info:
        read_state_dict(tmp_path / "cut.pth")
    assert "--unsafe-allow-pickle" not in str(info.value)
    import pickle

    (tmp_path / "plain.pkl").write_bytes(pickle.dumps([1, 2, 3], protocol=4))
    with pytest.raises(WeightsError, match=r"plain\.pkl is a pickle that torch\.load cannot read") as info:
        read_state_dict(tmp_path / "plain.pkl")
    assert "--unsafe-allow-pickle" not in str(info.value)
    assert read_state_dict(tmp_path / "ok.pth")["w"].shape == (100,)


def test_safetensors_files(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    safetensors_torch.save_file({"w": torch.ones(3)}, str(tmp_path / "ok.safetensors"))
    assert torch.equal(read_state_dict(tmp_path / "ok.safetensors")["w"], torch.ones(3))
    (tmp_path / "noise.safetensors").write_bytes(b"\x05" * 64)
    with pytest.raises(WeightsError, match=r"noise\.safetensors is not a readable safetensors file"):
        read_state_dict(tmp_path / "noise.safetensors")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(WeightsError, match=r"is empty \(0 bytes\)"):
        read_state_dict(tmp_path / "empty.safetensors")
