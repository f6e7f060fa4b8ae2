"""``gfi.cli.main`` called from Python leaves the ``gfi`` logger as it found it (handlers, level,
propagation), so a notebook's or a test's logging (pytest's caplog) keeps working afterwards."""

from __future__ import annotations

import logging

from gfi.cli import main


def test_main_restores_the_gfi_logger(capsys):
    log = logging.getLogger("gfi")
    before = log.handlers[:], log.level, log.propagate
    assert main(["methods"]) == 0
    assert main(["classes", "no-such-class-name"]) == 2  # an error path too
    capsys.readouterr()
    assert (log.handlers[:], log.level, log.propagate) == before
