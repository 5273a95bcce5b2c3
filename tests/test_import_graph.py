"""The layers of ``src/wheelport`` hold: no module reaches, through any chain of imports, back
to itself; no module imports one of a higher layer (:data:`LAYERS`, as docs/architecture.md
draws them); and ``wheelhouse.py`` (the layout every stage uses) imports nothing above it.

The graph is read from the source (``ast``), not from a running interpreter: every import
counts, at module level and inside functions (the lazy ones kept for start-up speed are still
dependencies), except those under ``if TYPE_CHECKING:`` (annotations only, never run). An
import names the module it takes its names from (``from wheelport.builders import images`` is
``wheelport.builders.images``; ``from wheelport.lock import dumps`` is ``wheelport.lock``);
the parent packages Python runs first are not edges.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    path: Path  # relative to the source root
    line: int
    lazy: bool  # inside a function (or a class body), not run at import time

    def __str__(self) -> str:
        where = "function-level" if self.lazy else "module-level"
        return f"{self.source} -> {self.target} ({self.path.as_posix()}:{self.line}, {where})"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement that runs, with whether it sits inside a function or class."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def walk(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.orelse:  # the else branch runs
                    walk_one(stmt, lazy)
                continue
            walk_one(child, lazy)

    def walk_one(node: ast.AST, lazy: bool) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append((node, lazy))
            return
        inner = lazy or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        walk(node, inner)

    walk(tree, False)
    return found


def import_graph(root: Path, package: str) -> dict[str, list[Edge]]:
    """Module name → its imports of other modules of ``package`` (under ``root``)."""
    files = {module_name(root, p): p for p in sorted((root / package).rglob("*.py"))}

    def known(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, list[Edge]] = {}
    for mod, path in files.items():
        here = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        edges: list[Edge] = []
        for node, lazy in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    up = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                    base = ".".join([*up, *([node.module] if node.module else [])])
                # ``from pkg import mod`` imports the module; ``from mod import name`` the module
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base
                         for a in node.names]  # fmt: skip
            for name in names:
                target = known(name) if name.split(".")[0] == package else None
                edge = Edge(mod, target or "", path.relative_to(root), node.lineno, lazy)
                if target is not None and target != mod and edge not in edges:
                    edges.append(edge)
        graph[mod] = edges
    return graph


def cycles(graph: dict[str, list[Edge]]) -> list[list[Edge]]:
    """One closed chain of imports for each group of modules that import each other (Tarjan's
    strongly connected components, then a shortest way round each)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def strong(v: str) -> None:  # recursion depth: the number of modules (a few dozen)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for e in graph.get(v, ()):
            if e.target not in index:
                strong(e.target)
                low[v] = min(low[v], low[e.target])
            elif e.target in on_stack:
                low[v] = min(low[v], index[e.target])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return [_round(graph, set(g), g[0]) for g in groups]


def _round(graph: dict[str, list[Edge]], members: set[str], start: str) -> list[Edge]:
    """The shortest chain of edges inside ``members`` from ``start`` back to ``start``."""
    came: dict[str, Edge] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for e in graph[v]:
                if e.target not in members or e.target in came:
                    continue
                came[e.target] = e
                if e.target == start:
                    chain = [e]
                    while chain[0].source != start:
                        chain.insert(0, came[chain[0].source])
                    return chain
                following.append(e.target)
        frontier = following
    raise AssertionError(f"{start} is in a cycle but no way round was found")  # pragma: no cover


def describe(chain: list[Edge]) -> str:
    names = " -> ".join([e.source for e in chain] + [chain[0].source])
    return names + "\n    " + "\n    ".join(str(e) for e in chain)


# --------------------------------------------------------------------------- the rules


def test_no_import_cycles() -> None:
    graph = import_graph(SRC, "wheelport")
    assert len(graph) > 40 and sum(map(len, graph.values())) > 150  # the walk saw the package
    found = cycles(graph)
    assert not found, "import cycles in src/wheelport:\n" + "\n".join(map(describe, found))


#: what the layout may build on: the error types, the manifest's types, bootstrap.py's stdlib
#: helpers (hashing, containment) — nothing that resolves, locks, fetches or builds
WHEELHOUSE_MAY_IMPORT = {"wheelport.errors", "wheelport.manifest", "wheelport.bootstrap"}


def test_the_layout_imports_nothing_above_it() -> None:
    graph = import_graph(SRC, "wheelport")
    above = [str(e) for e in graph["wheelport.wheelhouse"] if e.target not in WHEELHOUSE_MAY_IMPORT]
    assert not above, "wheelhouse.py imports above the layout:\n" + "\n".join(above)
    for low in sorted(WHEELHOUSE_MAY_IMPORT):  # and those import nothing that climbs back
        climbs = [str(e) for e in graph[low] if e.target not in WHEELHOUSE_MAY_IMPORT]
        assert not climbs, f"{low} imports above the layout:\n" + "\n".join(climbs)


#: the layers of docs/architecture.md, lowest first: a module imports its own layer or lower
#: ones (a name is a module and everything below it; the longest name that fits wins)
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__init__", "errors", "bootstrap", "conflicts"),
    ("targets", "manifest", "config", "credentials", "process", "resources", "importers"),
    ("wheelhouse",),
    ("cache", "reproduce", "index"),
    ("selection", "explain", "resolve"),
    ("lock", "fetch", "verify", "finish", "inventory"),
    ("builders",),
    ("site",),
    ("api", "sync", "provision", "rebuild", "ci", "serve", "export"),
    ("output", "cli", "export.commands", "__main__"),
)


def layer_of(module: str) -> int | None:
    rel = module.removeprefix("wheelport").lstrip(".") or "__init__"
    fits = [(len(name), i) for i, names in enumerate(LAYERS) for name in names
            if rel == name or rel.startswith(name + ".")]  # fmt: skip
    return max(fits)[1] if fits else None


def test_no_import_runs_back_up_the_layers() -> None:
    graph = import_graph(SRC, "wheelport")
    unplaced = sorted(m for m in graph if layer_of(m) is None)
    assert not unplaced, f"modules in no layer (add them to LAYERS and the docs): {unplaced}"
    climbs = [
        f"{e} (layer {layer_of(e.source)} -> {layer_of(e.target)})"
        for edges in graph.values()
        for e in edges
        if (layer_of(e.target) or 0) > (layer_of(e.source) or 0)
    ]
    assert not climbs, "imports running back up the layers:\n" + "\n".join(climbs)


# --------------------------------------------------------------------------- the walk itself


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


def test_a_cycle_through_a_function_level_import_is_found_and_named(tmp_path: Path) -> None:
    root = _package(tmp_path, {
        "__init__.py": "",
        "low.py": "def f():\n    from pkg.sub import high\n    return high\n",
        "sub/__init__.py": "",
        "sub/high.py": "from pkg.mid import g\n",
        "mid.py": "import pkg.low\ng = 1\n",
        "apart.py": "from pkg import low\n",
    })  # fmt: skip
    found = cycles(import_graph(root, "pkg"))
    assert len(found) == 1
    text = describe(found[0])
    assert text.startswith("pkg.low -> pkg.sub.high -> pkg.mid -> pkg.low\n")
    assert "pkg/low.py:2, function-level" in text and "pkg/sub/high.py:1, module-level" in text
    assert "pkg.apart" not in text


def test_type_checking_imports_are_not_edges(tmp_path: Path) -> None:
    root = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n"
                "else:\n    import json\n",
        "b.py": "from pkg import a\nclass B: ...\n",
    })  # fmt: skip
    graph = import_graph(root, "pkg")
    assert graph["pkg.a"] == [] and [e.target for e in graph["pkg.b"]] == ["pkg.a"]
    assert cycles(graph) == []


@pytest.mark.parametrize("line", ["from . import b", "from .b import B", "import pkg.b as b"])
def test_relative_and_aliased_imports_are_edges(tmp_path: Path, line: str) -> None:
    root = _package(tmp_path, {
        "__init__.py": "", "a.py": line + "\n", "b.py": "from pkg.a import *\nB = 1\n",
    })  # fmt: skip
    assert [describe(c).splitlines()[0] for c in cycles(import_graph(root, "pkg"))] == [
        "pkg.a -> pkg.b -> pkg.a"
    ]
