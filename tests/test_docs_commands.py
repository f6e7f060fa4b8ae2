"""The commands and snippets in README.md and docs/*.md run against the current code.

Every ``gfi ...`` command (also ``python -m gfi ...`` and ``torchrun ... -m gfi ...``) in a fenced
shell block or an inline code span is parsed by the real parser (``gfi.cli.build_parser``); for
``explain`` and ``eval`` the method's settings (typed options and ``--set``) and the experiment's
options are then resolved as the command does before it loads a model, so a renamed flag or a
setting that no longer exists fails here, naming the file, the line and argparse's message.
Placeholders (``IMAGE``, ``DIR``, ``NAME``, ``$R/...``) and the missing required arguments of a
command quoted in prose (``gfi eval voc-head``) are filled with dummy values: parsing touches no
file. Inline flags (```--chunk```) must be an option of some gfi command or of a script in
benchmarks/ or scripts/. The ``python`` blocks compile, every ``gfi.X`` they use exists, and so does
every name they import from gfi.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import functools
import importlib
import io
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGS = {"", "bash", "sh", "shell", "console"}
SEPARATORS = {";", "&&", "||", "|", "&", "(", ")", ";;"}
SHELL_WORDS = {"do", "then", "else", "time", "!", "{", "}"}
PLACEHOLDER = re.compile(r"^(\.\.\.|<[^>]*>|[A-Z][A-Z0-9_]*([:=,./-][A-Z0-9_]+)*|.*\$.*|my[-_]\w+)$")
FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
INLINE = re.compile(r"(`+)(.+?)\1")


@dataclass
class Snippet:
    where: str  # file:line
    text: str
    inline: bool = False


@dataclass
class Command:
    where: str
    line: str
    argv: list[str]
    inline: bool = False
    notes: list[str] = field(default_factory=list)


# -- extraction ---------------------------------------------------------------------------------------
def blocks(path: Path) -> tuple[list[tuple[str, int, list[str]]], list[tuple[int, str]]]:
    """(fenced blocks as (lang, first line number, lines), prose lines as (number, text))."""
    fenced, prose = [], []
    lang, start, body, fence = None, 0, [], ""
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = FENCE.match(line)
        if lang is None and m:
            lang, start, body, fence = m.group(2).lower(), n + 1, [], m.group(1)[0] * 3
        elif lang is not None and line.strip().startswith(fence):
            fenced.append((lang, start, body))
            lang = None
        elif lang is not None:
            body.append(line)
        else:
            prose.append((n, line))
    return fenced, prose


LOOP = re.compile(r"^\s*for (\w+) in ([^;]*);\s*do\b(.*)$")


def expand(text: str, loops: list[tuple[str, list[str]]]) -> list[str]:
    """``text`` once per value of each enclosing ``for VAR in ...`` loop that it uses as ``$VAR``."""
    out = [text]
    for var, values in loops:
        use = re.compile(rf"\$(\{{{var}\}}|{var}\b)")
        if use.search(text):
            out = [use.sub(v, t) for t in out for v in values]
    return out


def shell_snippets() -> list[Snippet]:
    out = []
    for path in DOCS:
        rel = path.relative_to(ROOT)
        fenced, prose = blocks(path)
        for lang, start, body in fenced:
            if lang not in SHELL_LANGS:
                continue
            pending, first, loops = "", start, []
            for i, line in enumerate(body):
                if not pending:
                    first = start + i
                if line.rstrip().endswith("\\"):
                    pending += line.rstrip()[:-1] + " "
                    continue
                line, pending = pending + line, ""
                if m := LOOP.match(line):
                    loops.append((m.group(1), m.group(2).split()))
                    line = m.group(3)
                closes = re.search(r"(^|;)\s*done\b", line)
                out += [Snippet(f"{rel}:{first}", t) for t in expand(line, loops)]
                if closes and loops:
                    loops.pop()
        for n, line in prose:
            for m in INLINE.finditer(line):
                out.append(Snippet(f"{rel}:{n}", m.group(2).strip(), inline=True))
    return out


def tokens(text: str) -> list[str]:
    text = re.sub(r"(^|\s)#.*$", "", text)  # a comment starts a word (not `${m#*:}`)
    lex = shlex.shlex(text, posix=True, punctuation_chars=";&|()")
    lex.whitespace_split = True
    lex.commenters = ""
    try:
        return list(lex)
    except ValueError:  # an unbalanced quote: prose, not a command
        return []


def gfi_argv(words: list[str]) -> list[str] | None:
    """The arguments after ``gfi`` of one simple command, or None when it does not run gfi."""
    while words and (words[0] in SHELL_WORDS or re.match(r"^[A-Za-z_]\w*=", words[0])):
        words = words[1:]
    if not words:
        return None
    if words[0] == "gfi":
        # `gfi explain: error: ...` is the program's output quoted in the docs, not a command
        return None if words[1:2] and words[1].endswith(":") else words[1:]
    if Path(words[0]).name in {"python", "python3", "torchrun"}:
        for i in range(1, len(words) - 1):
            if words[i] == "-m" and words[i + 1] == "gfi":
                return words[i + 2:]
    return None


def commands() -> list[Command]:
    out = []
    for s in shell_snippets():
        text = s.text
        if s.inline and not re.match(r"^(gfi |python3? -m gfi |torchrun )", text):
            continue
        # prose notation: `[--opt VALUE]` (optional parts), `gfi eval a|b|c` (alternatives)
        text = re.sub(r"\[,[^\]]*\]", "", text).replace("[", "").replace("]", "")
        for variant in alternatives(text) if s.inline else [text]:
            out += split_commands(variant, s.where, s.text.strip(), inline=s.inline)
    return out


def alternatives(text: str) -> list[str]:
    """``gfi eval a|b`` -> ``gfi eval a``, ``gfi eval b`` (a word with ``|`` in prose lists choices)."""
    m = re.search(r"(?<!\S)(\S+\|\S+)", text)
    if not m:
        return [text]
    return [v for alt in m.group(1).split("|") for v in alternatives(text[:m.start()] + alt + text[m.end():])]


def split_commands(text: str, where: str, line: str, *, inline: bool = False) -> list[Command]:
    """The gfi commands of one shell line (``a && gfi ...; for ...; do gfi ...; done``)."""
    simple, out = [], []
    for w in [*tokens(text), ";"]:
        if w in SEPARATORS:
            if (argv := gfi_argv(simple)) is not None:
                out.append(Command(where, line, argv, inline))
            simple = []
        else:
            simple.append(w)
    return out


# -- parsing ------------------------------------------------------------------------------------------
class ParseError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's exit, as an exception with its message
        raise ParseError(message)


def _raise_errors(parser: argparse.ArgumentParser) -> None:
    parser.__class__ = _Parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _raise_errors(sub)


def _option_value(argv: list[str], option: str) -> str | None:
    from gfi.cli.common import option_value

    return option_value(argv, option)


@functools.cache
def _parser(method: str | None, methods: str | None) -> argparse.ArgumentParser:
    from gfi.cli import build_parser

    argv = [*(["--method", method] if method else []), *(["--methods", methods] if methods else [])]
    parser = build_parser(argv)
    _raise_errors(parser)
    return parser


def build(argv: list[str]) -> argparse.ArgumentParser:
    """``build_parser(argv)`` (which depends on argv only through --method / --methods), raising
    :class:`ParseError` instead of exiting."""
    return _parser(_option_value(argv, "--method"), _option_value(argv, "--methods"))


def _subparsers(parser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def _dummy(action: argparse.Action | None) -> str:
    if action is not None and action.choices:
        return str(next(iter(action.choices)))
    if action is not None and action.type in (int, float):
        return "1"
    return "x"


def fill_placeholders(argv: list[str], inline: bool = False) -> tuple[list[str], set[str]]:
    """``argv`` with placeholder words replaced by a value its option accepts; the dests replaced.
    ``inline`` (a command quoted in prose, e.g. `gfi eval --method`): a missing subcommand and the
    value of a last option are filled in too."""
    parser, out, replaced, i = build(argv), [], set(), 0
    while True:  # the subcommands
        sub = _subparsers(parser)
        if sub is None or (i < len(argv) and argv[i].startswith("-") and not inline):
            break
        if i < len(argv) and argv[i] in sub.choices:
            name, i = argv[i], i + 1
        elif i < len(argv) and PLACEHOLDER.match(argv[i]):
            name, i = next(iter(sub.choices)), i + 1
            replaced.add(sub.dest)
        elif inline and (i == len(argv) or argv[i].startswith("-")):
            if i == len(argv):
                break  # `gfi eval` named in prose
            name = next(iter(sub.choices))
            replaced.add(sub.dest)
        else:
            break  # an unknown command: the parser says so
        out.append(name)
        parser = sub.choices[name]
    options = {s: a for a in parser._actions for s in a.option_strings}
    positional = next((a for a in parser._actions if not a.option_strings and a.dest != "help"), None)
    previous = None
    for w in argv[i:]:
        action = options.get(previous) if previous else None
        if w in ("-h", "--help"):
            previous = None
            continue
        if PLACEHOLDER.match(w) and not w.startswith("-"):
            taker = action if action is not None and action.nargs != 0 else positional
            out.append(_dummy(taker))
            replaced.add(getattr(taker, "dest", "?"))
        else:
            out.append(w)
        previous = w.split("=", 1)[0] if w.startswith("--") and "=" not in w else None
    last = options.get(previous) if previous else None
    if inline and last is not None and last.nargs != 0:
        out.append(_dummy(last))
        replaced.add(last.dest)
    return out, replaced


def parse(cmd: Command) -> argparse.Namespace:
    argv, replaced = fill_placeholders(cmd.argv, cmd.inline)
    for _ in range(3):
        try:
            args = build(argv).parse_args(argv)
            break
        except ParseError as exc:
            msg = str(exc)
            if not msg.startswith("the following arguments are required:"):
                raise
            missing = [m.strip() for m in msg.split(":", 1)[1].split(",")]
            if any(not m.startswith("-") for m in missing):
                if all(not a.startswith("-") for a in argv):
                    return argparse.Namespace(command=None)  # `gfi eval`: a command named in prose
                raise
            argv = [*argv, *(x for m in missing for x in (m.split("/")[0], "x"))]
            replaced.update(m.lstrip("-").replace("-", "_") for m in missing)
    args.replaced = replaced
    return args


def check_settings(args: argparse.Namespace) -> None:
    """What ``explain`` and ``eval`` check before loading a model: the method, its settings, the
    experiment's options. Skipped where a placeholder stands for one of them."""
    from gfi.cli import common
    from gfi.cli import eval as eval_cmd
    from gfi.evaluation.registry import EXPERIMENTS

    if args.command not in ("explain", "eval") or getattr(args, "method", None) is None:
        return
    if args.replaced & {"method", "preset", "set"} or any(d.startswith(("setting__", "exp__")) for d in args.replaced):
        return
    common.resolve_settings(args.method, preset=args.preset, given=common.given_settings(args))
    if args.command == "eval" and args.experiment in EXPERIMENTS:
        EXPERIMENTS[args.experiment].options(eval_cmd._experiment_options(args))


def check(cmd: Command) -> str | None:
    """None, or why ``cmd`` does not run."""
    from gfi.errors import GFIError

    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            check_settings(parse(cmd))
    except ParseError as exc:
        return f"argparse: {exc}"
    except (GFIError, ValueError) as exc:
        return f"settings: {exc}"
    except SystemExit as exc:  # --version and the like
        if exc.code not in (0, None):
            return f"exit {exc.code}"
    return None


# -- tests ---------------------------------------------------------------------------------------------
ALL_COMMANDS = commands()


def test_the_docs_have_commands():
    assert len(ALL_COMMANDS) > 50
    files = {c.where.split(":")[0] for c in ALL_COMMANDS}
    assert {"README.md", "docs/EVALUATION.md", "docs/RESULTS.md"} <= files


def test_every_documented_command_parses():
    broken = [f"{c.where}: {c.line}\n    -> {why}" for c in ALL_COMMANDS if (why := check(c))]
    assert not broken, "documented commands that the CLI refuses:\n" + "\n".join(broken)


@pytest.mark.parametrize("line, fails", [
    ("gfi explain photo.jpg --chunk 2", False),
    ("gfi explain photo.jpg --stage2-chunk 2", True),
    ("gfi explain IMAGE --set chunk=2", False),
    ("gfi explain --set stage2_chunk=2", True),
    ("gfi explain --method gradcam --gamma 5", True),
    ("gfi explain --method NAME --help", False),
    ("gfi eval localization --data DIR --tune-split 0.5 --out DIR", False),
    ("gfi eval localization --data $D --alpha abc --out $R", True),
    ("gfi eval EXPERIMENT --data DIR --limit N --out DIR", False),
    ("gfi eval voc-head", False),
    ("for m in a b; do gfi eval saliency --data D --method $m --out R/$m --iou 0.5; done", True),
    ("torchrun --nproc_per_node=2 -m gfi eval pointing --data d --out o  # comment --nope", False),
])
def test_the_checker_finds_stale_commands(line, fails):
    found = split_commands(line, "test", line)
    assert found, line
    assert any(check(c) for c in found) == fails, [check(c) for c in found]


def _script_flags() -> set[str]:
    flags = set()
    for path in [*ROOT.glob("benchmarks/*.py"), *ROOT.glob("scripts/*.py")]:
        flags.update(re.findall(r"""add_argument\(\s*["'](--[a-z0-9][a-z0-9-]*)""", path.read_text(encoding="utf-8")))
    return flags


def _gfi_flags() -> set[str]:
    from gfi.methods.registry import METHODS

    flags: set[str] = set()
    todo = [build(["explain", "--method", m]) for m in METHODS]
    todo += [build(["compare", "--methods", "all"]), build(["eval", "localization"])]
    while todo:
        p = todo.pop()
        for a in p._actions:
            flags.update(s for s in a.option_strings if s.startswith("--"))
            if isinstance(a, argparse._SubParsersAction):
                todo.extend(a.choices.values())
    return flags


def test_every_inline_flag_exists():
    """```--flag``` in prose (and ``--flag VALUE``) names an option of gfi or of a documented script."""
    known = _gfi_flags() | _script_flags() | {"--nproc_per_node"}  # torchrun's
    unknown = []
    for s in shell_snippets():
        if not s.inline:
            continue
        for flag in re.findall(r"(?:^|\s)(--[a-z0-9][a-z0-9_-]*)", s.text):
            if flag not in known:
                unknown.append(f"{s.where}: `{s.text}` ({flag})")
    assert not unknown, "inline flags that no command has:\n" + "\n".join(unknown)


def python_blocks() -> list[tuple[str, str]]:
    out = []
    for path in DOCS:
        fenced, _ = blocks(path)
        out += [(f"{path.relative_to(ROOT)}:{start}", "\n".join(body)) for lang, start, body in fenced
                if lang in ("python", "py")]
    return out


def _gfi_attributes(tree: ast.AST) -> set[str]:
    """``gfi.a.b`` chains (on the name ``gfi``) used in ``tree``."""
    chains = set()
    for node in ast.walk(tree):
        parts, n = [], node
        while isinstance(n, ast.Attribute):
            parts.append(n.attr)
            n = n.value
        if parts and isinstance(n, ast.Name) and n.id == "gfi":
            chains.add(".".join(reversed(parts)))
    return chains


def _resolves(dotted: str) -> bool:
    """``gfi.<dotted>`` is a module or attribute (a submodule first: ``gfi.masks.channel_mask`` is
    the module, though ``gfi.masks`` also exports a function of that name)."""
    obj, path = importlib.import_module("gfi"), "gfi"
    for part in dotted.split("."):
        path += "." + part
        try:
            obj = importlib.import_module(path) if isinstance(obj, type(importlib)) else getattr(obj, part)
        except ModuleNotFoundError:
            if not hasattr(obj, part):
                return False
            obj = getattr(obj, part)
        except AttributeError:
            return False
    return True


def test_python_snippets_use_the_current_api():
    from gfi.methods.base import Explanation
    from gfi.methods.gfi import GFIExplanation

    assert any(w.startswith("README.md") for w, _ in python_blocks())
    problems = []
    for where, code in python_blocks():
        try:
            tree = ast.parse(code, where)
            compile(tree, where, "exec")
        except SyntaxError as exc:
            problems.append(f"{where}: does not compile: {exc}")
            continue
        problems += [f"{where}: gfi.{a} does not exist" for a in sorted(_gfi_attributes(tree)) if not _resolves(a)]
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "gfi":
                module = importlib.import_module(node.module)
                problems += [f"{where}: from {node.module} import {a.name}: no such name" for a in node.names
                             if not hasattr(module, a.name)]
        results = {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
                   and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Attribute)
                   and node.value.func.attr == "explain" for t in node.targets if isinstance(t, ast.Name)}
        kinds = [Explanation, GFIExplanation]  # what an explain returns: a method's own part included
        fields = {f for k in kinds for f in (*k.__dataclass_fields__, *dir(k))}
        problems += [f"{where}: Explanation has no attribute {node.attr!r}" for node in ast.walk(tree)
                     if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                     and node.value.id in results and node.attr not in fields]
    assert not problems, "\n".join(problems)


def test_every_dotted_gfi_name_in_the_docs_exists():
    """```gfi.masks.channel_mask.Upsampler``` in prose names a module or attribute that exists."""
    missing = []
    for s in shell_snippets():
        for name in re.findall(r"^gfi((?:\.\w+)+)(?:\(\))?$", s.text) if s.inline else []:
            if not name.endswith(".py") and not _resolves(name[1:]):
                missing.append(f"{s.where}: gfi{name}")
    assert not missing, "names in the docs that gfi does not have:\n" + "\n".join(missing)
