"""The command line: ``gfi explain``, ``gfi compare``, ``gfi eval``, ``gfi models|methods|layers``.

One module per command over :mod:`gfi.cli.common` (the shared arguments and the one way to set a
method's settings). Argument parsing and orchestration only: the maths lives in :mod:`gfi.methods`,
the metrics in :mod:`gfi.evaluation`. Every :class:`gfi.errors.GFIError` (and a library
``ValueError`` about an option's value) ends as one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

log = logging.getLogger("gfi")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; ``argv`` (the command line, when known) decides which method's settings the
    method-settings options are made for (``--method``/``--methods``, default gfi)."""
    from gfi.cli import common, compare, explain, info
    from gfi.cli import eval as eval_cmd

    argv = list(argv or [])
    parser = argparse.ArgumentParser(prog="gfi", description="Explain CNN predictions with Guided Feature Inversion.")
    parser.add_argument("--version", action="version", version=common.version())
    sub = parser.add_subparsers(dest="command", required=True)
    explain.add_parser(sub, argv)
    info.add_parsers(sub)
    compare.add_parser(sub, argv)
    eval_cmd.add_parser(sub, argv)
    return parser


def _logging(args: argparse.Namespace) -> None:
    level = logging.WARNING
    if getattr(args, "verbose", False):
        level = logging.DEBUG
    elif not getattr(args, "quiet", False):
        level = logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("gfi: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    from gfi.cli import info
    from gfi.errors import GFIError

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    _logging(args)
    handler = getattr(args, "handler", None) or info.COMMANDS[args.command]
    try:
        return handler(args)
    except GFIError as exc:
        print(f"gfi: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a library check on an option's value (ranges, names) outside gfi's errors
        print(f"gfi: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
