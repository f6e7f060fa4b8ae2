"""tests/peers/pytorch_grad_cam/ is exactly what scripts/vendor_grad_cam_tests.py makes from
pytorch-grad-cam's pinned sdist: no hand edits in the vendored files."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "tests" / "peers" / "pytorch_grad_cam"


def _script():
    path = ROOT / "scripts" / "vendor_grad_cam_tests.py"
    spec = importlib.util.spec_from_file_location("vendor_grad_cam_tests", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_vendored_file_carries_the_header_and_the_readme_lists_it():
    script = _script()
    readme = (FOLDER / "README.md").read_text()
    assert script.SHA256 in readme and "MIT" in readme and (FOLDER / "LICENSE").read_text().startswith("MIT License")
    assert sorted(p.name for p in FOLDER.glob("test_*.py")) == sorted(script.VENDORED)
    for name in script.VENDORED:
        text = (FOLDER / name).read_text()
        assert text.startswith(f"# Vendored from pytorch-grad-cam {script.VERSION}") and f"`{name}`" in readme
        assert "from tests.peers.pytorch_grad_cam.gfi_swap import GradCAM" in text


@pytest.mark.slow
def test_the_script_remakes_the_folder_from_the_pinned_sdist(tmp_path):
    """Needs pip to reach PyPI (as the README's install does); skipped with the reason when it cannot."""
    got = subprocess.run([sys.executable, "-m", "pip", "download", "grad-cam==1.5.7", "--no-deps", "--no-binary",
                          ":all:", "-d", str(tmp_path / "sdist")], capture_output=True, text=True, timeout=300)
    if got.returncode != 0:
        pytest.skip(f"pip could not download grad-cam 1.5.7's sdist: {got.stderr.strip().splitlines()[-1:]}")
    out = tmp_path / "out"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "vendor_grad_cam_tests.py"), "--sdist",
                    str(tmp_path / "sdist" / "grad_cam-1.5.7.tar.gz"), "--out", str(out)], check=True,
                   capture_output=True, cwd=ROOT)
    made = sorted(p.name for p in out.iterdir())
    assert made == sorted(["LICENSE", "README.md", *_script().VENDORED])
    for name in made:
        assert (out / name).read_bytes() == (FOLDER / name).read_bytes(), f"{name} differs from the script's"
