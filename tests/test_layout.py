"""The package's layout, read from its source: no import cycles, no module that only tests use, short functions.

The import graph is built with :mod:`ast`, not by importing: an import inside a function counts
(it runs sooner or later, and a cycle it closes breaks whoever imports first), importing
``a.b.c`` runs package ``a.b``'s ``__init__`` first (unless the importer is inside ``a.b``), and an
import under ``if TYPE_CHECKING:`` does not count (it never runs).
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "codesign"
#: What runs codesign: the console script (pyproject's ``[project.scripts]``), ``python -m codesign``,
#: ``import codesign`` and the Python API.
ENTRY_POINTS = ("codesign.cli", "codesign.__main__", "codesign", "codesign.api")
MAX_FUNCTION_LINES = 60

#: module -> {imported module: line of the first import of it}
Graph = dict[str, dict[str, int]]


def modules(package: Path) -> dict[str, Path]:
    """Every module of ``package`` (a folder with ``__init__.py``) by dotted name; a package by its own name."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The ids of the nodes under ``if TYPE_CHECKING:`` (its body, not its ``else``)."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test).split(".")[-1] == "TYPE_CHECKING":
            skipped.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    return skipped


def _named(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool, known: dict[str, Path]) -> list[str]:
    """The dotted names an import statement loads (a ``from X import name`` loads X.name when that is a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parts = (importer if is_package else importer.rpartition(".")[0]).split(".")
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([base] if base else []))
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]


def _loaded(name: str, importer: str, known: dict[str, Path]) -> set[str]:
    """The package's modules that importing ``name`` runs: the module and every package above it,
    except the packages the importer is inside (they are running already)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    parts = name.split(".") if name else []
    loaded = {".".join(parts[:k]) for k in range(1, len(parts) + 1)}
    return {m for m in loaded if m in known and m != importer and not importer.startswith(m + ".")}


def import_graph(package: Path) -> Graph:
    """The import graph of ``package``'s modules among themselves (other packages are left out)."""
    known = modules(package)
    graph: Graph = {}
    for name, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        skipped = _type_checking_only(tree)
        edges: dict[str, int] = {}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skipped:
                for imported in _named(node, name, path.name == "__init__.py", known):
                    for module in _loaded(imported, name, known):
                        edges[module] = min(edges.get(module, node.lineno), node.lineno)
        graph[name] = edges
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """Cycles (``[a, b, ..., a]``), the shortest through each module that is on one, leaving out a
    module some cycle listed already: one cycle added to a tangle of others still shows."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components = []

    def visit(v: str) -> None:  # Tarjan's algorithm; the package is far shallower than the recursion limit
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            components.append(set(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    found, listed = [], set()
    for component in components:
        for module in sorted(component) if len(component) > 1 else ():
            if module not in listed:
                found.append(_cycle_through(module, component, graph))
                listed.update(found[-1])
    return found


def _cycle_through(start: str, component: set[str], graph: Graph) -> list[str]:
    """The shortest path from ``start`` back to itself inside ``component`` (breadth first)."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if w in component and w not in came_from:
                    came_from[w] = v
                    following.append(w)
        frontier = following
    raise ValueError(f"{start} is in no cycle")  # unreachable for a component of two or more


def describe(cycle: list[str], graph: Graph, package: Path) -> str:
    """``a (a.py:12) -> b (b/__init__.py:3) -> a``: each step names the line of its import."""
    known = modules(package)
    steps = [f"{a} ({known[a].relative_to(package.parent)}:{graph[a][b]})" for a, b in zip(cycle, cycle[1:])]
    return " -> ".join(steps + [cycle[-1]])


def reachable(graph: Graph, starts: tuple[str, ...]) -> set[str]:
    seen, todo = set(), [s for s in starts if s in graph]
    while todo:
        v = todo.pop()
        if v not in seen:
            seen.add(v)
            todo.extend(graph[v])
    return seen


def long_functions(package: Path, limit: int) -> list[str]:
    """``file:line qualified.name (N lines)`` for every function longer than ``limit`` lines, ``def`` to last line."""
    found = []
    for path in sorted(package.rglob("*.py")):
        found.extend(_long_in(ast.parse(path.read_text()), path.relative_to(package.parent), limit, ""))
    return found


def _long_in(node: ast.AST, path: Path, limit: int, prefix: str) -> list[str]:
    found = []
    for child in ast.iter_child_nodes(node):
        name = prefix
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}{child.name}."
            length = child.end_lineno - child.lineno + 1
            if not isinstance(child, ast.ClassDef) and length > limit:
                found.append(f"{path}:{child.lineno} {name[:-1]} ({length} lines)")
        found.extend(_long_in(child, path, limit, name))
    return found


# -- the package --------------------------------------------------------------------------------------


def test_the_package_has_no_import_cycle():
    graph = import_graph(PACKAGE)
    found = [describe(c, graph, PACKAGE) for c in cycles(graph)]
    assert not found, "import cycles (counting imports inside functions):\n  " + "\n  ".join(found)


def test_every_module_is_reachable_from_an_entry_point():
    """A module that no entry point reaches is one only tests (or nothing) import: it leaves the package."""
    graph = import_graph(PACKAGE)
    assert set(ENTRY_POINTS) <= set(graph)
    orphans = sorted(set(graph) - reachable(graph, ENTRY_POINTS))
    users = {m: sorted(t.name for t in (ROOT / "tests").glob("*.py") if _names(t.read_text(), m)) for m in orphans}
    assert not orphans, "modules no entry point imports (tests that name them):\n  " + "\n  ".join(
        f"{m}: {', '.join(users[m]) or 'none'}" for m in orphans)


def _names(text: str, module: str) -> bool:
    """Whether source ``text`` names ``module`` (``a.b.c``, or ``from a.b import c``)."""
    parent, _, last = module.rpartition(".")
    return module in text or re.search(rf"from {re.escape(parent)} import [^\n]*\b{last}\b", text) is not None


def test_no_function_is_longer_than_60_lines():
    found = long_functions(PACKAGE, MAX_FUNCTION_LINES)
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines:\n  " + "\n  ".join(found)


# -- the checker itself, on tiny packages ----------------------------------------------------------------


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root / "pkg"


ACYCLIC = {
    "pkg/__init__.py": "",
    "pkg/a.py": "from pkg import b\nfrom . import c\n",
    "pkg/b.py": "import json\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import A\n",
    "pkg/c.py": "from .sub import d\n",
    "pkg/sub/__init__.py": "",
    "pkg/sub/d.py": "from . import e\nfrom ..b import something\n",
    "pkg/sub/e.py": "",
}


def test_the_checker_passes_a_package_without_a_cycle(tmp_path):
    package = write_package(tmp_path, ACYCLIC)
    graph = import_graph(package)
    assert cycles(graph) == []
    # Relative imports resolve, a module-level name resolves to its module, TYPE_CHECKING is left out.
    assert graph["pkg.a"] == {"pkg.b": 1, "pkg.c": 2}
    assert graph["pkg.b"] == {}
    assert graph["pkg.c"] == {"pkg.sub": 1, "pkg.sub.d": 1}
    assert graph["pkg.sub.d"] == {"pkg.sub.e": 1, "pkg.b": 2}


def test_the_checker_finds_a_cycle_closed_inside_a_function(tmp_path):
    package = write_package(tmp_path, {**ACYCLIC, "pkg/sub/e.py": """\
        def late():
            from pkg.c import anything
            return anything
        """})
    graph = import_graph(package)
    assert cycles(graph) == [["pkg.c", "pkg.sub.d", "pkg.sub.e", "pkg.c"]]
    assert describe(cycles(graph)[0], graph, package) == (
        "pkg.c (pkg/c.py:1) -> pkg.sub.d (pkg/sub/d.py:1) -> pkg.sub.e (pkg/sub/e.py:2) -> pkg.c")


def test_the_checker_finds_a_cycle_through_a_parent_package(tmp_path):
    """``import pkg.sub.e`` from pkg.b runs pkg/sub/__init__.py, which imports pkg.b: a cycle, though
    pkg.sub.e itself imports nothing (the shape of hardware.target -> hardware.loihi2 on main)."""
    package = write_package(tmp_path, {**ACYCLIC, "pkg/sub/__init__.py": "from pkg import b\n",
                                       "pkg/b.py": "def later():\n    import pkg.sub.e\n"})
    assert cycles(import_graph(package)) == [["pkg.b", "pkg.sub", "pkg.b"]]


def test_the_checker_reports_unreachable_modules_and_long_functions(tmp_path):
    package = write_package(tmp_path, {**ACYCLIC, "pkg/lonely.py": "def f():\n" + "    x = 1\n" * 60})
    graph = import_graph(package)
    assert sorted(set(graph) - reachable(graph, ("pkg.a",))) == ["pkg", "pkg.lonely"]
    assert long_functions(package, 60) == ["pkg/lonely.py:1 f (61 lines)"]
    assert long_functions(package, 61) == []


def test_a_cycle_added_to_a_tangle_of_others_still_shows(tmp_path):
    package = write_package(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": "from pkg import b\n",
                                       "pkg/b.py": "from pkg import a\ndef f():\n    from pkg import c\n",
                                       "pkg/c.py": "import pkg.b\n"})
    assert cycles(import_graph(package)) == [["pkg.a", "pkg.b", "pkg.a"], ["pkg.c", "pkg.b", "pkg.c"]]
