"""Check the built distributions (CI builds them with ``python -m build``): the wheel holds the
package, its assets and licences, and no tests; the sdist holds the sources and the licence.

    python -m build --outdir dist && python scripts/check_dist.py dist
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

WHEEL_NEEDS = ("gfi/__init__.py", "gfi/cli/__init__.py", "gfi/methods/gfi.py", "gfi/py.typed",
               "gfi/assets/dog_cat.jpg", "gfi/assets/chelsea.png", "gfi/assets/LICENSES.md",
               "gfi/assets/imagenet_classes.txt")


def check(folder: Path) -> list[str]:
    problems = []
    wheels, sdists = sorted(folder.glob("*.whl")), sorted(folder.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        return [f"{folder}: expected one wheel and one sdist, found {len(wheels)} and {len(sdists)}"]
    names = zipfile.ZipFile(wheels[0]).namelist()
    problems += [f"wheel lacks {n}" for n in WHEEL_NEEDS if n not in names]
    problems += [f"wheel holds a test file: {n}" for n in names if n.startswith("tests/") or "/tests/" in n]
    if not any(n.endswith(".dist-info/licenses/LICENSE") for n in names):
        problems.append("wheel lacks the LICENSE in its .dist-info")
    meta = next((n for n in names if n.endswith(".dist-info/METADATA")), None)
    text = zipfile.ZipFile(wheels[0]).read(meta).decode() if meta else ""
    if "License-Expression: MIT" not in text:
        problems.append("wheel METADATA has no SPDX License-Expression: MIT")
    if "Requires-Dist: torch>=" not in text or "torch<" in text:
        problems.append("wheel METADATA should require torch with a lower bound and no cap")
    with tarfile.open(sdists[0]) as tar:
        members = [m.split("/", 1)[-1] for m in tar.getnames()]
    problems += [f"sdist lacks {n}" for n in ("LICENSE", "pyproject.toml", "src/gfi/__init__.py") if n not in members]
    return problems


if __name__ == "__main__":
    found = check(Path(sys.argv[1] if len(sys.argv) > 1 else "dist"))
    for p in found:
        print(f"check_dist: {p}", file=sys.stderr)
    print(f"check_dist: {'FAILED' if found else 'ok'}")
    sys.exit(1 if found else 0)
