"""No import circles in tracer/ and analyzer/: their module import graph, read with `ast`, is acyclic.

Every import statement counts, wherever it is: at module level, inside a function (moving an
import into a function hides a circle from Python, not from a reader), under
``if TYPE_CHECKING:``, relative or absolute. An edge goes to the module an import names:
``from tracer.sim import config`` names the submodule ``tracer.sim.config``,
``from tracer.sim import record`` names the package ``tracer.sim`` (its ``__init__``). Importing
a submodule is not counted as importing its parent packages, so that an ``__init__`` may
re-export what its submodules define.
"""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tracer", "analyzer")

Graph = dict[str, set[str]]


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _named_modules(
    node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: set[str]
) -> list[str]:
    """The dotted names `node` imports: `from X import y` names X.y if that is a module, else X."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".")
        base = base[: len(base) - node.level + (1 if is_package else 0)]
        source = ".".join([*base, node.module] if node.module else base)
    else:
        source = node.module or ""
    return [
        f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
        for alias in node.names
    ]


def import_graph(root: Path, packages: tuple[str, ...]) -> Graph:
    """Module -> the modules (of `packages`, under `root`) it imports anywhere in its source."""
    files = {
        _module_name(path, root): path
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
    }
    graph: Graph = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for name in _named_modules(node, module, is_package, set(files)):
                if name in files:
                    targets.add(name)
        graph[module] = targets
    return graph


def import_circles(graph: Graph) -> list[list[str]]:
    """One shortest circle per strongly connected component, as [a, b, ..., a], sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(v: str) -> None:  # Tarjan; the graphs here are far too small to recurse deep
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(_shortest_circle(graph, min(c), c) for c in components)


def _shortest_circle(graph: Graph, start: str, component: set[str]) -> list[str]:
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph[v] & component):
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if w not in came_from:
                came_from[w] = v
                queue.append(w)
    raise AssertionError(f"{start} is in no circle")  # pragma: no cover


def _circles_in(package: str) -> list[str]:
    circles = import_circles(import_graph(ROOT, PACKAGES))
    return [" -> ".join(c) for c in circles if c[0].split(".")[0] == package]


def test_the_graph_counts_every_kind_of_import(tmp_path: Path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg.a import A\n")
    (pkg / "a.py").write_text("import os\n\nA = 1\n\ndef f():\n    from pkg import b\n")
    (pkg / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.sub.c import C\n"
    )
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from .. import a\nfrom .d import D\nimport pkg.sub.d\n")
    (pkg / "sub" / "d.py").write_text("D = 1\n")
    (pkg / "e.py").write_text("from pkg import A\n")
    graph = import_graph(tmp_path, ("pkg",))
    assert graph == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.b"},  # function level; `os` is not ours
        "pkg.b": {"pkg.sub.c"},  # under TYPE_CHECKING
        "pkg.sub": set(),
        "pkg.sub.c": {"pkg.a", "pkg.sub.d"},  # relative, and not the parent packages
        "pkg.sub.d": set(),
        "pkg.e": {"pkg"},  # a name defined in pkg/__init__.py
    }
    assert import_circles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]
    assert import_circles({"x": {"x"}, "y": set()}) == [["x", "x"]]


def test_the_graph_covers_every_module_of_both_packages():
    graph = import_graph(ROOT, PACKAGES)
    expected = {_module_name(p, ROOT) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    assert set(graph) == expected
    assert {"tracer", "tracer.sim", "analyzer", "analyzer.cli"} <= expected
    assert sum(len(targets) for targets in graph.values()) > len(graph)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_circles(package: str):
    assert _circles_in(package) == []
