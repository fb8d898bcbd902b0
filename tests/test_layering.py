"""Layering: no import cycle among algocline_nb's modules (lazy and TYPE_CHECKING imports
included), and no module file over MAX_LINES lines."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

PACKAGE = "algocline_nb"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

#: The most lines a module file may have (STYLE: split a module past ~400-500 lines).
MAX_LINES = 520

#: Cycles still allowed, each written from its smallest module name on, as ``cycles`` finds it.
KNOWN_CYCLES: frozenset[tuple[str, ...]] = frozenset()

#: Module files still allowed over MAX_LINES, relative to the package directory.
KNOWN_LONG: frozenset[str] = frozenset()

Graph = Mapping[str, frozenset[str]]


# --------------------------------------------------------------------------- the graph


def module_files(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (``pkg/__init__.py`` is ``pkg`` itself)."""
    modules: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join([package, *parts])] = path
    return modules


def _packages(root: Path = ROOT, package: str = PACKAGE) -> set[str]:
    """Every package by dotted name: with an ``__init__.py`` or namespace (a directory)."""
    return {package} | {
        ".".join([package, *d.relative_to(root).parts])
        for d in root.rglob("*")
        if d.is_dir() and d.name != "__pycache__"
    }


def _imported(tree: ast.AST, name: str, is_package: bool) -> Iterator[str]:
    """The absolute names each import of ``tree`` (module ``name``) asks for, at any depth:
    inside functions and ``if TYPE_CHECKING:`` too. ``from X import y`` yields ``X`` and
    ``X.y`` (``y`` may be a submodule); the caller keeps the names that are modules."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # a package's __init__ is relative to the package itself, a module to its parent
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target
            yield from (f"{target}.{alias.name}" for alias in node.names)


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, frozenset[str]]:
    """``module -> modules of the package it imports``.

    Importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first: those packages are
    edges too, except the importer's own packages (already importing) and namespace packages
    (no code).
    """
    files = module_files(root, package)
    packages = _packages(root, package)
    graph: dict[str, frozenset[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        own = {name, *_ancestors(name)}
        edges: set[str] = set()
        for target in _imported(tree, name, path.name == "__init__.py"):
            if target not in files and target not in packages:
                continue  # a name from a module, or outside the package
            edges.update(m for m in (*_ancestors(target), target) if m in files and m not in own)
        graph[name] = frozenset(edges)
    return graph


def cycles(graph: Graph) -> set[tuple[str, ...]]:
    """Every elementary cycle of ``graph``, each from its smallest node on (a DFS per node,
    through larger nodes only, so each cycle is found once)."""
    found: set[tuple[str, ...]] = set()
    for start in sorted(graph):
        path = [start]
        on_path = {start}
        stack = [iter(sorted(graph[start]))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                on_path.discard(path.pop())
            elif nxt == start:
                found.add(tuple(path))
            elif nxt > start and nxt not in on_path and nxt in graph:
                path.append(nxt)
                on_path.add(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return found


def _show(cycle: tuple[str, ...]) -> str:
    return " -> ".join([*cycle, cycle[0]])


# --------------------------------------------------------------------------- the checks


def test_no_import_cycle() -> None:
    found = cycles(import_graph())
    new = sorted(found - KNOWN_CYCLES)
    assert not new, "import cycles in algocline_nb:\n" + "\n".join(map(_show, new))


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_module_is_too_long() -> None:
    over = {
        rel: n
        for path in module_files().values()
        if (rel := path.relative_to(ROOT).as_posix()) not in KNOWN_LONG
        and (n := _lines(path)) > MAX_LINES
    }
    assert not over, f"modules over {MAX_LINES} lines (split them by concept): {over}"


def test_allow_lists_are_current() -> None:
    """An allowance that no longer applies is reported (as a skip) so it can be deleted."""
    stale = sorted(map(_show, KNOWN_CYCLES - cycles(import_graph())))
    stale += sorted(
        name
        for name in KNOWN_LONG
        if not (ROOT / name).exists() or _lines(ROOT / name) <= MAX_LINES
    )
    if stale:
        pytest.skip(f"delete from KNOWN_CYCLES / KNOWN_LONG in {Path(__file__).name}: {stale}")


# --------------------------------------------------------------------------- the checker itself


def _write(root: Path, files: Mapping[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    _write(
        root,
        {
            "__init__.py": "from ._a import A\n",
            "_a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ._b import B\n",
            "_b.py": "def f():\n    from . import _c\n    import pkg._sub._d\n",
            "_c.py": "from .._outside import x\nimport os\n",
            "_sub/__init__.py": "from . import _d\nfrom .. import _a\n",
            "_sub/_d.py": "from pkg import _c\nfrom ._e import thing\n",
            "_sub/_e.py": "",
            "_ns/_f.py": "from .._sub import _e\n",  # _ns: a namespace package
            "_g.py": "from ._ns import _f\n",
        },
    )
    assert import_graph(root, "pkg") == {
        "pkg": frozenset({"pkg._a"}),
        "pkg._a": frozenset({"pkg._b"}),
        "pkg._b": frozenset({"pkg._c", "pkg._sub", "pkg._sub._d"}),
        "pkg._c": frozenset(),
        "pkg._sub": frozenset({"pkg._sub._d", "pkg._a"}),
        "pkg._sub._d": frozenset({"pkg._c", "pkg._sub._e"}),
        "pkg._sub._e": frozenset(),
        "pkg._ns._f": frozenset({"pkg._sub", "pkg._sub._e"}),
        "pkg._g": frozenset({"pkg._ns._f"}),
    }


def test_cycles_finds_each_cycle_once() -> None:
    graph = {
        "a": frozenset({"b"}),
        "b": frozenset({"a", "c"}),
        "c": frozenset({"a", "c"}),
        "d": frozenset({"a"}),
    }
    assert cycles(graph) == {("a", "b"), ("a", "b", "c"), ("c",)}
    assert cycles({"a": frozenset({"b"}), "b": frozenset()}) == set()


def test_a_lazy_import_back_is_a_cycle(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    _write(
        root,
        {
            "__init__.py": "",
            "_types.py": "class T:\n    def show(self):\n        from ._display import render\n",
            "_display.py": "from ._types import T\n",
        },
    )
    assert cycles(import_graph(root, "pkg")) == {("pkg._display", "pkg._types")}
