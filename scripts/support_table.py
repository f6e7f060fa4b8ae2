"""Rewrite the support table in docs/METHOD.md from the class attributes of gfi's own methods.

    python scripts/support_table.py          # rewrite the table between the markers
    python scripts/support_table.py --check  # exit 1 if the docs differ from the generated table
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from gfi.methods.registry import BUILTIN, support_table

DOC = Path(__file__).resolve().parents[1] / "docs" / "METHOD.md"
MARKERS = re.compile(r"(<!-- support-table:start -->\n)(.*?)(<!-- support-table:end -->)", re.S)


def main(argv: list[str]) -> int:
    text = DOC.read_text()
    if not MARKERS.search(text):
        print(f"{DOC}: no support-table markers", file=sys.stderr)
        return 1
    new = MARKERS.sub(lambda m: m.group(1) + support_table(BUILTIN) + "\n" + m.group(3), text)
    if "--check" in argv:
        return 0 if new == text else 1
    DOC.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
