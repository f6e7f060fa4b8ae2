"""The command line: ``gfi explain``, ``gfi compare``, ``gfi eval``, ``gfi models|methods|layers``.

One module per command over :mod:`gfi.cli.common` (the shared arguments and the one way to set a
method's settings). Argument parsing and orchestration only: the maths lives in :mod:`gfi.methods`,
the metrics in :mod:`gfi.evaluation`.

Errors: every :class:`gfi.errors.GFIError` (gfi's own errors about the user's input, options,
files or environment) ends as one line on stderr and exit code 2, as do argparse's own; any other
exception, a ``ValueError`` from a bug included, shows its traceback (exit code 1), so that a bug
is never reported as the user's mistake. Every message that reaches the terminal (errors, log
lines, argparse's) has its control characters and undecodable bytes escaped
(:func:`gfi.data.names.printable`): a file name cannot move the cursor or clear the screen.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress

from gfi.cli.commands import COMMAND_HELP

log = logging.getLogger("gfi")


class _Parser(argparse.ArgumentParser):
    """argparse's parser whose error messages (they quote the user's arguments) are printable; the
    sub-commands' parsers are of the same class (argparse makes them with the parent's)."""

    def error(self, message: str):
        from gfi.data.names import printable

        super().error(printable(message, newlines=True))


class _Printable(logging.Formatter):
    """gfi's log lines with control characters and undecodable bytes escaped."""

    def format(self, record: logging.LogRecord) -> str:
        from gfi.data.names import printable

        return printable(super().format(record), newlines=True)


DESCRIPTION = "Explain CNN predictions with Guided Feature Inversion."


def version() -> str:
    """``gfi VERSION (torch VERSION)``: both read from the installed distributions' metadata, so
    that ``gfi --version`` does not import torch."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    from gfi import __version__

    try:
        torch_version = installed("torch")
    except PackageNotFoundError:  # torch from a source build on sys.path
        import torch

        torch_version = torch.__version__
    return f"gfi {__version__} (torch {torch_version})"


def _top_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    parser = _Parser(prog="gfi", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=version())
    return parser, parser.add_subparsers(dest="command", required=True)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; ``argv`` (the command line, when known) decides which method's settings the
    method-settings options are made for (``--method``/``--methods``, default gfi)."""
    from gfi.cli import compare, explain, info
    from gfi.cli import eval as eval_cmd

    argv = list(argv or [])
    parser, sub = _top_parser()
    explain.add_parser(sub, argv)
    info.add_parsers(sub)
    compare.add_parser(sub, argv)
    eval_cmd.add_parser(sub, argv)
    assert list(sub.choices) == list(COMMAND_HELP), "COMMAND_HELP lists the commands in the parser's order"
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names (its first word that is not an option), None when it names none."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in COMMAND_HELP else None


def top_level_parser() -> argparse.ArgumentParser:
    """The parser of a command line that names no command (``gfi --help``, ``gfi --version``, a
    misspelt command): the commands with their one line each and nothing else, so that it is built
    without importing torch, the methods or the models. Its help equals :func:`build_parser`'s."""
    parser, sub = _top_parser()
    for name, text in COMMAND_HELP.items():
        sub.add_parser(name, help=text)
    return parser


@contextmanager
def _logging(args: argparse.Namespace) -> Iterator[None]:
    """gfi's log lines on stderr for one command (``--quiet``: warnings; ``--verbose``: debug); the
    ``gfi`` logger's handlers, level and propagation are restored afterwards, so ``main()`` called
    from Python (a test, a notebook) leaves logging as it found it."""
    level = logging.WARNING
    if getattr(args, "verbose", False):
        level = logging.DEBUG
    elif not getattr(args, "quiet", False):
        level = logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Printable("gfi: %(message)s"))
    before = log.handlers[:], log.level, log.propagate
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
    try:
        yield
    finally:
        log.handlers[:], log.propagate = before[0], before[2]
        log.setLevel(before[1])


def main(argv: Sequence[str] | None = None) -> int:
    from gfi.data.names import printable
    from gfi.errors import GFIError

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv) if _command(argv) else top_level_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        from gfi.cli import info

        handler = info.COMMANDS[args.command]
    with _logging(args):
        try:
            return handler(args)
        except GFIError as exc:  # gfi's own, about the user's input: one line (anything else is a bug: its traceback)
            print(f"gfi: error: {printable(exc)}", file=sys.stderr)
            return 2


def console_main() -> int:
    """The ``gfi`` program (and ``python -m gfi``): :func:`main` under the command line's thread
    policy, set before torch is imported (:func:`gfi.threads.apply_cli_policy`: OpenMP's threads
    sleep rather than spin between parallel regions, unless the user set ``OMP_WAIT_POLICY``).
    :func:`main` itself, called from Python, leaves the process's environment alone."""
    from gfi.threads import apply_cli_policy

    apply_cli_policy()
    try:
        code = main()
    except BrokenPipeError:  # stdout's reader has gone (gfi classes | head): no traceback, nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush would fail again
        return 1
    return end_without_teardown(code)


def end_without_teardown(code: int | None) -> int | None:
    """End the program with ``code`` without the interpreter's teardown of every module, which
    after ``import torch`` takes about 0.4 s (a third of the time torch takes to import) and does
    nothing for a command that has finished: the ``atexit`` functions run (logging's flush among
    them), every open file is flushed, and the process exits. Returns ``code`` (for the usual
    exit) instead where that would lose something: another thread still running, or a profiler
    or tracer (cProfile, coverage) that writes its data at the interpreter's exit."""
    import threading

    if threading.active_count() > 1 or sys.getprofile() is not None or sys.gettrace() is not None:
        return code
    import atexit
    import gc
    import io

    atexit._run_exitfuncs()
    kinds = (io.TextIOWrapper, io.BufferedWriter, io.BufferedRandom)  # exact types: no property of any object runs
    for f in gc.get_objects():
        if type(f) in kinds and not f.closed:
            with suppress(OSError, ValueError):  # a pipe closed by its reader, a detached stream: nothing to keep
                f.flush()
    os._exit(0 if code is None else int(code))


if __name__ == "__main__":
    sys.exit(console_main())
