"""File names (and any text from the user) made safe to show, without losing the original.

A file name is bytes on POSIX; Python decodes the bytes that are not UTF-8 to lone surrogates
(``os.fsdecode``: ``b"bad\\xff.png"`` is ``"bad\\udcff.png"``), which no UTF-8 writer accepts, and a
name may hold control characters (``ESC [ 2 J`` clears a terminal) or Unicode bidi controls that
reorder what is shown. Where gfi shows a name:

* terminal messages and ``report.html``: :func:`printable`, which writes each undecodable byte as
  ``\\xff``, each control character as its escape (``\\x1b``, ``\\n``) and each bidi control as
  ``\\u202e``; the rest (any printable Unicode) is kept as it is;
* ``results.json`` and the run records: the name as Python holds it, JSON-escaped, so nothing is
  lost: ``os.fsencode(json.load(f)["images"][0]["image"])`` gives back the file name's exact bytes
  (a lone surrogate is written ``"\\udcff"``, which Python's ``json`` reads back as it was written).
"""

from __future__ import annotations

import re

# C0 and C1 controls and DEL, bidi embeddings/overrides/isolates and marks, lone surrogates
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_UNSAFE_KEEP_NEWLINES = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
                                   "\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}.get(code, f"\\x{code:02x}")
    return f"\\u{code:04x}"


def printable(text: object, *, newlines: bool = False) -> str:
    """``text`` (a str, or anything ``str()`` turns into one, e.g. a Path) with every byte that was
    not UTF-8, every control character and every bidi control escaped: safe to print to a terminal
    and to encode as UTF-8. ``newlines=True`` keeps ``\\n`` (a message of several lines)."""
    return (_UNSAFE_KEEP_NEWLINES if newlines else _UNSAFE).sub(_escape, str(text))
