"""Vendor pytorch-grad-cam 1.5.7's own tests of GradCAM into tests/peers/pytorch_grad_cam/, run against
gfi's GFICAM in place of GradCAM.

    python scripts/vendor_grad_cam_tests.py                       # fetches the sdist with pip
    python scripts/vendor_grad_cam_tests.py --sdist grad_cam-1.5.7.tar.gz

The sdist is the one on PyPI (``pip download grad-cam==1.5.7 --no-deps --no-binary :all:``); its
sha256 must be :data:`SHA256`. The script rewrites the vendored ``test_*.py`` files, ``LICENSE`` and
``README.md`` of the folder (which lists every change below) and leaves its ``conftest.py`` and
``gfi_swap.py`` (gfi's own code) alone. Every change is an exact text substitution whose number of
matches is checked, so the script fails loudly rather than vendor something else.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "peers" / "pytorch_grad_cam"
VERSION = "1.5.7"
SDIST = f"grad_cam-{VERSION}.tar.gz"
SHA256 = "f6be06f826677a2e922c3879df9be3944b14a69643d80e7bec9adfb26f6b5e42"
SWAP = "tests.peers.pytorch_grad_cam.gfi_swap"

#: the sdist's tests that construct a GradCAM (directly, or as RefineCAM's or SESS's base method)
VENDORED = ("test_3d_cam_weights.py", "test_context_release.py", "test_context_release_cuda.py",
            "test_one_channel.py", "test_refine_cam.py", "test_run_all_models.py", "test_sess.py")
#: the sdist's tests left out, and why
LEFT_OUT = {
    "test_fasterrcnn_target_device.py": "FasterRCNNBoxScoreTarget's device handling; no GradCAM",
    "test_finer_cam_correctness.py": "FinerCAM; no GradCAM",
    "test_svd_no_side_effect.py": "get_2d_projection's copy of its input; no GradCAM",
}

#: changes in every vendored file: (old, new, why); each may match any number of times (counted in the README)
EVERY_FILE = [
    ('cv2.imread("examples/both.png")', "cv2.imread(PHOTO)",
     "the image: gfi's bundled photo `src/gfi/assets/dog_cat.jpg` (`PHOTO`) instead of the repository's "
     "`examples/both.png`, which the sdist does not ship"),
    ('weights="DEFAULT"', "weights=None", "random weights: nothing is downloaded"),
    ("pretrained=True", "weights=None", "random weights: nothing is downloaded"),
    ("\ntorch.manual_seed(0)\n", "\n",
     "the module-level `torch.manual_seed(0)` removed: at collection it would reseed the whole test session; "
     "conftest.py seeds each of these tests with 0 inside `torch.random.fork_rng()` instead"),
]

_GRADCAM_ONLY = ("the list of CAM methods cut to GradCAM (the other methods are pytorch-grad-cam's own, "
                 "which GFICAM does not replace)")
#: changes in one file: (old, new, why); each must match exactly once
ONE_FILE: dict[str, list[tuple[str, str, str]]] = {
    "test_run_all_models.py": [
        ("""                         [ScoreCAM,
                          AblationCAM,
                          GradCAM,
                          ScoreCAM,
                          GradCAMPlusPlus,
                          XGradCAM,
                          EigenCAM,
                          EigenGradCAM,
                          LayerCAM,
                          FullGrad,
                          KPCA_CAM,
                          SegEigenCAM])""", "                         [GradCAM])", _GRADCAM_ONLY),
    ],
    "test_context_release.py": [("[GradCAM, ShapleyCAM])", "[GradCAM])", _GRADCAM_ONLY)],
    "test_context_release_cuda.py": [("[GradCAM, ShapleyCAM])", "[GradCAM])", _GRADCAM_ONLY)],
    "test_3d_cam_weights.py": [
        ('@pytest.mark.parametrize("cam_cls", [GradCAMPlusPlus, XGradCAM])\n'
         "def test_gradient_cam_methods_support_3d_conv_layers",
         '@pytest.mark.parametrize("cam_cls", [GradCAM])\n'
         "def test_gradient_cam_methods_support_3d_conv_layers",
         "the 3-D test's methods (GradCAMPlusPlus, XGradCAM) replaced by GradCAM, i.e. GFICAM"),
    ],
    "test_refine_cam.py": [
        ("""@pytest.mark.parametrize("base_method", [
    GradCAM,
    ScoreCAM,
    GradCAMPlusPlus,
    XGradCAM,
    EigenCAM,
    EigenGradCAM,
    LayerCAM
])""", """@pytest.mark.parametrize("base_method", [
    GradCAM
])""", _GRADCAM_ONLY),
    ],
    "test_sess.py": [
        ("""@pytest.mark.parametrize("base_method", [
    GradCAM,
    ScoreCAM,
    GradCAMPlusPlus,
    XGradCAM,
    EigenCAM,
    LayerCAM
])""", """@pytest.mark.parametrize("base_method", [
    GradCAM
])""", _GRADCAM_ONLY),
    ],
}

HEADER = ("# Vendored from pytorch-grad-cam {version} (PyPI sdist {sdist}, tests/{name}; MIT licence: LICENSE),\n"
          "# changed by scripts/vendor_grad_cam_tests.py as README.md lists. Do not edit: rerun the script.\n"
          "# ruff: noqa\n")


def fetch(dest: Path) -> Path:
    """The sdist, downloaded from PyPI with pip into ``dest``."""
    subprocess.run([sys.executable, "-m", "pip", "download", f"grad-cam=={VERSION}", "--no-deps",
                    "--no-binary", ":all:", "-d", str(dest)], check=True)
    return dest / SDIST


def swap_import(text: str, name: str) -> tuple[str, list[str]]:
    """``text`` with ``from tests.peers.pytorch_grad_cam.gfi_swap import ...`` after its last top-level
    import: ``GradCAM`` (GFICAM), ``SESS`` (whose default base method is that GradCAM) and ``PHOTO``, the
    ones the file uses."""
    tree = ast.parse(text, name)
    last = max(node.end_lineno for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom))
    names = [n for n in ("GradCAM", "SESS", "PHOTO") if n in text]
    lines = text.splitlines(keepends=True)
    line = f"from {SWAP} import {', '.join(names)}  # gfi: GFICAM in GradCAM's place\n"
    return "".join([*lines[:last], line, *lines[last:]]), names


def vendor(sdist: Path, out: Path) -> list[str]:
    """Write the vendored files into ``out``; returns the README's lines of changes."""
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"{sdist}: sha256 {digest}, expected {SHA256} (pytorch-grad-cam {VERSION}'s sdist)")
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("test_*.py"):
        stale.unlink()
    changes = []
    with tarfile.open(sdist) as tar:
        prefix = f"grad_cam-{VERSION}/"
        members = {m.name.removeprefix(prefix): m for m in tar.getmembers()}
        found = sorted(n.removeprefix("tests/") for n in members if n.startswith("tests/test_"))
        if found != sorted([*VENDORED, *LEFT_OUT]):
            raise SystemExit(f"the sdist's tests are {found}, not the ones this script knows")
        (out / "LICENSE").write_bytes(tar.extractfile(members["LICENSE"]).read())
        for name in VENDORED:
            text = tar.extractfile(members[f"tests/{name}"]).read().decode()
            done = []
            for old, new, why in ONE_FILE.get(name, []):
                if text.count(old) != 1:
                    raise SystemExit(f"{name}: expected one match of {old[:60]!r}, found {text.count(old)}")
                text = text.replace(old, new)
                done.append(why)
            for old, new, why in EVERY_FILE:
                if (count := text.count(old)):
                    text = text.replace(old, new)
                    done.append(f"{why} ({count}x)")
            text, names = swap_import(text, name)
            done.append(f"`{', '.join(names)}` imported from `gfi_swap.py` after the file's imports")
            (out / name).write_text(HEADER.format(version=VERSION, sdist=SDIST, name=name) + text)
            changes.append(f"* `{name}`:\n" + "".join(f"  - {d}\n" for d in done))
    return changes


README = """# pytorch-grad-cam {version}'s own tests, run against gfi's GFICAM

The `test_*.py` files here are pytorch-grad-cam's tests of `GradCAM` (directly, or as the base method of
its `RefineCAM` and `SESS`), with gfi's `GFICAM` in `GradCAM`'s place: the evidence that GFICAM is a
drop-in replacement. They only check what pytorch-grad-cam checks (shapes, ranges, determinism,
memory); gfi's own tests of the maps are in `tests/frontends/test_cam.py`.

* Source: `{sdist}` from PyPI (`pip download grad-cam=={version} --no-deps --no-binary :all:`),
  sha256 `{sha256}`, its `tests/` folder.
* Licence: MIT, copyright (c) 2021 Jacob Gildenblat; the text is in `LICENSE` here (from the sdist).
* Made by `python scripts/vendor_grad_cam_tests.py` (which checks the sha256 and applies the changes
  below as exact substitutions); rerun it rather than editing the files. `conftest.py` and
  `gfi_swap.py` are gfi's own.
* Each file imports, after its own imports, what it uses of `gfi_swap.py`: `GradCAM` (GFICAM made
  with GradCAM's constructor), `SESS` (pytorch-grad-cam's SESS with that GradCAM as its default base
  method) and `PHOTO` (the bundled photo).
* GFI runs with `iters1=1, iters2=1` (`gfi_swap.ITERS`): these tests check shapes and ranges, not the
  quality of a map, and the 100-call memory test stays within CI's time.

## Changes

{changes}
## Left out

Tests of the sdist that construct no GradCAM (they test pytorch-grad-cam's other code):
{left_out}
## Skipped, and why (conftest.py)

{skips}"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdist", type=Path, help=f"{SDIST} (default: downloaded with pip)")
    parser.add_argument("--out", type=Path, default=OUT, help="the folder to write (default: %(default)s)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or fetch(Path(tmp))
        changes = vendor(sdist, args.out)
    sys.path.insert(0, str(ROOT))
    from tests.peers.pytorch_grad_cam.conftest import SKIPS

    skips = "".join(f"* `{node}`: {reason}\n" for node, reason in SKIPS.items())
    left = "".join(f"* `{name}`: {why}\n" for name, why in LEFT_OUT.items())
    (args.out / "README.md").write_text(README.format(version=VERSION, sdist=SDIST, sha256=SHA256,
                                                      changes="".join(changes), left_out=left, skips=skips))
    print(f"{args.out}: {len(VENDORED)} test files from {SDIST} (sha256 {SHA256})")


if __name__ == "__main__":
    main()
