"""The shape of the source tree (issue 13): no import cycle anywhere in ``src/gfi`` (counting the
imports inside functions too), short functions in the CLI, and no code that decides by matching
method names."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import REPO

SRC = REPO / "src"
PACKAGE = SRC / "gfi"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """The gfi modules ``name`` imports anywhere in its file (``from a import b`` names module a.b when
    that is a module, else a)."""
    path = MODULES[name]
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "gfi"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "gfi":
                continue
            for a in node.names:
                out.add(f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod)
    return {m for m in out if m in MODULES and m != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return [*stack[stack.index(m):], m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_the_cycle_finder_finds_a_cycle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_in_src():
    graph = {m: imports_of(m) for m in MODULES}
    assert graph["gfi.cli.explain"], "the import walker found no imports: it is broken"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node.name, node.end_lineno - node.lineno + 1


@pytest.mark.parametrize("path", sorted((PACKAGE / "cli").glob("*.py")), ids=lambda p: p.name)
def test_cli_functions_are_short(path):
    long = [(n, k) for n, k in _functions(path) if k > 60]
    assert not long, f"{path.name}: functions over 60 lines: {long}"


NAME_MATCH = re.compile(r"""startswith\(\s*["']gfi|name\s+in\s+\(\s*["']gfi|method\s*==\s*["'](gfi|gradcam|cam)""")


def test_no_code_decides_by_matching_method_names():
    hits = [f"{p.relative_to(REPO)}:{i}: {line.strip()}" for p in PACKAGE.rglob("*.py")
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if NAME_MATCH.search(line)]
    assert not hits, "decide by the method's class attributes, not its name:\n" + "\n".join(hits)


OPTIMISER = PACKAGE / "masks" / "optimizer.py"


def optimiser_loops(source: str) -> list[str]:
    """What in ``source`` writes its own optimisation loop: a use of ``torch.optim`` (an import or
    an attribute), an optimiser-like ``.step()`` or ``.zero_grad()`` call, or a ``.backward()`` call
    inside a ``for`` or ``while`` loop."""
    hits = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "torch.optim" or n.startswith("torch.optim.") or n == "optim" for n in names):
                hits.append(f"line {node.lineno}: imports torch.optim")
        elif isinstance(node, ast.Attribute) and node.attr == "optim":
            hits.append(f"line {node.lineno}: uses torch.optim")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("step", "zero_grad"):
            hits.append(f"line {node.lineno}: calls .{node.func.attr}()")
        elif isinstance(node, ast.For | ast.While):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute) and \
                        inner.func.attr == "backward":
                    hits.append(f"line {inner.lineno}: calls .backward() in a loop")
    return hits


def test_the_loop_finder_finds_a_hand_written_mask_loop():
    loop = """
import torch
opt = torch.optim.Adam([m], lr=0.1)
for _ in range(10):
    loss = f(m)
    opt.zero_grad()
    loss.sum().backward()
    opt.step()
"""
    assert len(optimiser_loops(loop)) == 4
    assert optimiser_loops("from torch.optim import SGD\n") and optimiser_loops("from torch import optim\n")
    assert optimiser_loops("def f(x):\n    while x:\n        x.backward()\n")
    assert not optimiser_loops("y = f(x)\ny.backward()\nres = MaskOptimizer(0.1).run(m, f, 10)\n")


@pytest.mark.parametrize("path", sorted([*(PACKAGE / "methods").glob("*.py"), *(PACKAGE / "masks").glob("*.py")]),
                         ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_mask_loop_outside_the_optimiser(path):
    """Every mask method keeps only its objective; the loop (update, schedule, projection, early
    exit) is gfi.masks.optimizer's."""
    if path == OPTIMISER:
        assert optimiser_loops(path.read_text(encoding="utf-8")), "the optimiser's loop is not found: check broken"
        return
    hits = optimiser_loops(path.read_text(encoding="utf-8"))
    assert not hits, f"{path.name} writes its own optimisation loop (use gfi.masks.optimizer.MaskOptimizer): {hits}"
