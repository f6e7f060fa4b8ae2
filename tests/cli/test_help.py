"""The command line's help is plain text and says what is there: no reST marks (``x``, :mod:`x`) in
any command's help, and ``--preset`` names every preset of the methods it is shown for."""

from __future__ import annotations

import argparse
import re

import pytest

from gfi.cli import build_parser

RST = re.compile(r"``|:(?:func|mod|class|meth|attr|data):`")


def helps(parser: argparse.ArgumentParser, prog: str = "gfi"):
    """(command, its help text) of ``parser`` and every sub-command below it."""
    yield prog, parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from helps(sub, f"{prog} {name}")


@pytest.mark.parametrize("argv", [[], ["compare"], ["eval"], ["explain", "--method", "gradcam"]])
def test_no_help_shows_rest_markup(argv):
    """`gfi compare --help` showed its docstring's ``gfi compare IMAGE`` marks, `gfi eval --help`
    its :mod: and :func: roles."""
    found = [(prog, line.strip()) for prog, text in helps(build_parser(argv)) for line in text.splitlines()
             if RST.search(line)]
    assert not found, found


def _preset_help(method: str) -> str:
    parser = build_parser(["explain", "--method", method])
    explain = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["explain"]
    return " ".join(next(a for a in explain._actions if "--preset" in a.option_strings).help.split())


def test_preset_help_names_every_preset_of_the_method():
    """The help said "the tuned default or exactly the paper's" while gfi has three presets; it is
    made from the presets the method's class lists, each with what it is."""
    from gfi.methods.registry import METHODS

    with_presets = [name for name, cls in METHODS.items() if cls.presets]
    assert "gfi" in with_presets
    for name in with_presets:
        text = _preset_help(name)
        for preset in METHODS[name].preset_names():
            assert re.search(rf"\b{preset} \(", text), (name, preset, text)
    gfi = _preset_help("gfi")
    assert "fast (the default with iters1=4, iters2=3, lr2=0.008)" in gfi and "paper (exactly the paper's)" in gfi
