"""The shape of the source tree: no import cycle anywhere in ``src/gfi`` (counting the imports
inside functions too), short functions in the CLI, no code that decides by matching method names,
and docs/ARCHITECTURE.md's Modules table true to the imports."""

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


def _strings(node: ast.AST) -> list[str]:
    """The string constants of ``node``: itself, the elements of a literal set, list or tuple, the
    keys of a literal dict, or the literal argument of ``set(...)`` / ``frozenset(...)``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Set | ast.List | ast.Tuple):
        return [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    if isinstance(node, ast.Dict):
        return [k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("set", "frozenset") \
            and node.args:
        return _strings(node.args[0])
    return []


def method_name_decisions(tree: ast.AST, names: set[str], setting_fields: set[str]) -> list[tuple[int, str]]:
    """Where code decides by a method's name: a comparison (``==``, ``in``, ...) with a method's name
    or a literal collection of them, a ``case "name":``, a set or ``frozenset`` of method names (a
    membership table, such as a set of the methods that need a module), a dict keyed by two or
    more method names (a per-method table, such as cheap settings), and ``x in NAMES`` where ``NAMES`` was bound
    to a literal tuple or list of method names. A comparison of a settings field that happens to
    share a method's name (``cfg.stage2_init == "gradient"``) is not one."""
    bound = {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
             and len([v for v in _strings(node.value) if v in names]) >= 2
             for t in node.targets if isinstance(t, ast.Name)}
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if isinstance(node.left, ast.Attribute) and node.left.attr in setting_fields:
                continue
            if any(set(_strings(o)) & names for o in operands) or any(
                    isinstance(op, ast.In | ast.NotIn) and isinstance(c, ast.Name) and c.id in bound
                    for op, c in zip(node.ops, node.comparators, strict=True)):
                hits.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.MatchValue) and set(_strings(node.value)) & names:
            hits.append((node.lineno, f"case {ast.unparse(node.value)}"))
        elif (isinstance(node, ast.Set | ast.Call) and set(_strings(node)) & names) or \
                (isinstance(node, ast.Dict) and len(set(_strings(node)) & names) >= 2):
            hits.append((node.lineno, ast.unparse(node)[:120]))
    return sorted(dict(hits[::-1]).items())  # one per line (the outermost), in line order


def _method_names_and_fields() -> tuple[set[str], set[str]]:
    from gfi.methods.base import RunOptions
    from gfi.methods.registry import METHODS

    fields = {n for c in METHODS.values() for n in c.settings_class.names()} | set(RunOptions.names())
    return set(METHODS), fields


def test_the_method_name_finder_finds_tables_sets_and_comparisons():
    names, fields = {"gfi", "gradcam", "rise"}, {"stage2_init"}
    found = [line for line, _ in method_name_decisions(ast.parse(
        'NEEDS = frozenset({"gfi", "gradcam"})\n'       # 1: a membership set
        'CHEAP = {"rise": {}, "gfi": {"iters1": 2}}\n'  # 2: a per-method table
        'if method == "gfi": pass\n'                    # 3: a comparison
        'LAYER = ("gfi", "gradcam")\n'                  # a tuple is data ...
        'if m in LAYER: pass\n'                         # 5: ... until it decides membership
        'match m:\n    case "rise": pass\n'            # 7: a case
        'DEFAULT = "gfi"\n'                             # a default is not a decision,
        'history = {"gfi": 1}\n'                        # nor a method's own result
        'if cfg.stage2_init == "gradient": pass\n'      # a setting's value, not a method
        'if cfg.stage2_init == "gfi": pass\n'), names, fields)]
    assert found == [1, 2, 3, 5, 7], found


def test_no_method_name_is_tested_outside_the_registry():
    """Capabilities are class attributes (``needs_module``, ``has_stage1``, ``supports_*``): no set,
    table or comparison of method names outside ``gfi.methods.registry``."""
    names, fields = _method_names_and_fields()
    hits = [f"{p.relative_to(REPO)}:{line}: {text}" for p in sorted(PACKAGE.rglob("*.py"))
            if p != PACKAGE / "methods" / "registry.py"
            for line, text in method_name_decisions(ast.parse(p.read_text(encoding="utf-8")), names, fields)]
    assert not hits, ("decide by a class attribute of the method (e.g. needs_module), not by its name:\n"
                      + "\n".join(hits))


# -- docs/ARCHITECTURE.md's Modules table against the imports -------------------------------------
DOC = REPO / "docs" / "ARCHITECTURE.md"
WHERE = "the Modules table of docs/ARCHITECTURE.md"


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _names(cell: str) -> list[str]:
    """The backticked names of a cell (``—``: none)."""
    return re.findall(r"`([^`]+)`", cell)


def modules_table(text: str) -> list[tuple[str, list[str], list[str]]]:
    """(part, its modules, the parts it imports) per row of the first table under "## Modules", top to bottom."""
    section = text.split("\n## Modules\n", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    assert len(lines) > 2 and _cells(lines[0]) == ["part", "modules", "imports"], \
        f"{WHERE}: expected a table with the columns | part | modules | imports |"
    return [(_names(part)[0], _names(mods), _names(imports)) for part, mods, imports in map(_cells, lines[2:])]


def module_of(part: str, stem: str) -> str:
    """The dotted module of ``stem`` in a row of ``part``: ``models/`` + ``loading`` is
    gfi.models.loading, ``models/`` + ``__init__`` is gfi.models, ``runs.py`` + ``runs`` is gfi.runs,
    ``gfi/__init__.py`` + ``__init__`` is gfi."""
    if part.endswith("/"):
        package = "gfi." + part.rstrip("/").replace("/", ".")
        return package if stem == "__init__" else f"{package}.{stem}"
    return "gfi" if stem == "__init__" else f"gfi.{stem}"


def part_and_stem(module: str, path: Path) -> tuple[str, str]:
    """The row a module belongs in (its package under gfi, ``models/``, else its file, ``runs.py``)
    and its name there."""
    parts = module.split(".")
    stem = "__init__" if path.name == "__init__.py" else parts[-1]
    if module == "gfi":
        return "gfi/__init__.py", stem
    return (parts[1] + "/" if path.name == "__init__.py" or len(parts) > 2 else parts[1] + ".py"), stem


def plugin_modules() -> dict[str, set[str]]:
    """The modules ``*`` stands for: per package, those that define what its registry holds."""
    from gfi.evaluation.registry import EXPERIMENTS, VOC_HEAD
    from gfi.methods.registry import BUILTIN

    return {"methods/": {cls.__module__ for cls in BUILTIN},
            "evaluation/": {type(e).__module__ for e in [*EXPERIMENTS.values(), VOC_HEAD]}}


def architecture_problems(rows: list[tuple[str, list[str], list[str]]], modules: dict[str, Path],
                          imports: dict[str, set[str]], plugins: dict[str, set[str]]) -> list[str]:
    """Where the Modules table and the code disagree, each a sentence that says what to change."""
    problems = []
    order = {part: i for i, (part, _, _) in enumerate(rows)}
    owner: dict[str, str] = {}
    for part, stems, _ in rows:
        for stem in stems:
            if stem == "*":
                owner.update({m: part for m in plugins.get(part, set())})
                continue
            module = module_of(part, stem)
            if module not in modules:
                problems.append(f"{WHERE} lists `{stem}` in the `{part}` row, but {module} does not exist: remove it")
            owner[module] = part
    stars = {part for part, stems, _ in rows if "*" in stems}
    for module in sorted(modules):
        if module in owner:
            continue
        part, stem = part_and_stem(module, modules[module])
        if part in order:
            owner[module] = part  # so that its imports are checked too
            problems.append(f"{module} ({modules[module].relative_to(SRC.parent)}) is in no row of {WHERE}: add "
                            f"`{stem}` to the modules of the `{part}` row, and a word on it under Parts"
                            + (" (or, if it is a plug-in module, register what it defines: `*` stands for it then)"
                               if part in stars else ""))
        else:
            problems.append(f"{module} ({modules[module].relative_to(SRC.parent)}) is in no row of {WHERE}: add a "
                            f"`{part}` row with the module `{stem}`, below the parts that import it and above the "
                            "parts it imports")
    declared = {part: set(parts) for part, _, parts in rows}
    used: dict[str, set[str]] = {part: set() for part in order}
    for module in sorted(owner):
        for target in sorted(imports.get(module, ())):
            a, b = owner[module], owner.get(target)
            if b is None or a == b:
                continue
            used[a].add(b)
            if b not in declared[a]:
                above = (f"; `{b}` is above `{a}` in the table, and a part imports only parts below it, so this "
                         "import turns the layering round" if order[b] <= order[a] else "")
                problems.append(f"{module} imports {target}, but the `{a}` row of {WHERE} does not list `{b}` among "
                                f"its imports: add it (or drop the import){above}")
    for part, parts in declared.items():
        for b in sorted(parts):
            if b not in order:
                problems.append(f"the `{part}` row of {WHERE} lists `{b}` among its imports, which is no row of the "
                                "table")
            elif b not in used[part]:
                problems.append(f"the `{part}` row of {WHERE} lists `{b}` among its imports, but no module of "
                                f"`{part}` imports it: remove it")
            elif order[b] <= order[part]:
                problems.append(f"the `{part}` row of {WHERE} imports `{b}`, which is above it: a part imports only "
                                f"parts below it; move the `{b}` row below the `{part}` row (or turn the import "
                                "round)")
    return problems


def test_the_architecture_check_names_what_to_change():
    modules = {m: PACKAGE / "x.py" for m in ("gfi.a", "gfi.b", "gfi.p", "gfi.p.one", "gfi.p.new")}
    modules["gfi.p"] = PACKAGE / "p" / "__init__.py"
    rows = [("a.py", ["a"], ["p/", "c.py"]), ("p/", ["__init__", "one", "gone"], ["a.py"]), ("b.py", ["b"], [])]
    imports = {"gfi.a": {"gfi.p.one"}, "gfi.p.one": {"gfi.a", "gfi.b"}, "gfi.b": set()}
    problems = "\n".join(architecture_problems(rows, modules, imports, {}))
    for expected in ["lists `gone` in the `p/` row, but gfi.p.gone does not exist: remove it",
                     "gfi.p.new (src/gfi/x.py) is in no row of the Modules table of docs/ARCHITECTURE.md: add `new` "
                     "to the modules of the `p/` row",
                     "gfi.p.one imports gfi.b, but the `p/` row of the Modules table of docs/ARCHITECTURE.md does "
                     "not list `b.py` among its imports: add it",
                     "the `a.py` row of the Modules table of docs/ARCHITECTURE.md lists `c.py` among its imports, "
                     "which is no row of the table",
                     "the `p/` row of the Modules table of docs/ARCHITECTURE.md imports `a.py`, which is above it"]:
        assert expected in problems, problems
    assert len(problems.splitlines()) == 5, problems


def test_the_architecture_doc_lists_every_module_and_its_imports():
    """docs/ARCHITECTURE.md's Modules table against the code: every module in exactly the row of its
    part, each part's imports exactly those its modules have (lazy and TYPE_CHECKING ones too),
    every part importing only parts below it."""
    rows = modules_table(DOC.read_text(encoding="utf-8"))
    problems = architecture_problems(rows, {m: p for m, p in MODULES.items()}, {m: imports_of(m) for m in MODULES},
                                     plugin_modules())
    assert not problems, "docs/ARCHITECTURE.md is not true to the code:\n" + "\n".join(problems)


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
