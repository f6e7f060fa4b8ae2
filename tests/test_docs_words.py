"""README.md and docs/ speak to users about the project, not about how the work on it was organised:
no "the lead", no "session", no issue numbers, no "this machine" (a measurement names the machine it
ran on: "a 2-core CPU machine")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
WORDS = re.compile(r"\bthe lead\b|\blead engineer|\bsessions?\b|\bissues? #?\d+|\(#\d+\)|\bthis machine\b", re.I)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_speak_of_the_project_not_of_its_making(doc):
    found = [f"{doc.name}:{n}: {m.group(0)!r} in {line.strip()[:100]!r}"
             for n, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1)
             for m in WORDS.finditer(line)]
    assert not found, "words about how the work was organised, not about the project:\n" + "\n".join(found)


def test_the_check_finds_what_it_looks_for():
    assert WORDS.search("measured in session 3") and WORDS.search("see issue 18") and WORDS.search("on this machine")
    assert not WORDS.search("the register tokens that lead the sequence")
