"""The library's import graph: no module of ``workbench`` imports itself through others.

Every ``import`` and ``from ... import`` of a ``workbench`` module is an edge, at module
level or inside a function (a function-level import hides a circle, it does not remove
it); only those under ``if TYPE_CHECKING:`` are left out, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, Path]:
    """``{dotted name: file}`` of every module of the package, subpackages included."""
    out = {}
    for path in sorted((SRC / "workbench").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported(name: str, path: Path) -> set[str]:
    """The dotted names ``name``'s file imports (``from a import b`` names ``a`` and
    ``a.b``: ``b`` may be a module), outside ``if TYPE_CHECKING:`` blocks."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking(child):
                for other in child.orelse:  # the else branch does run
                    visit_node(other)
            else:
                visit_node(child)

    def visit_node(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        visit(node)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


def _graph() -> dict[str, set[str]]:
    """``{module: the workbench modules it imports}``."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        edges = set()
        for target in _imported(name, path):
            while target and target not in modules:  # workbench.x.Name -> workbench.x
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := walk(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := walk(start)):
            return found
    return None


def test_the_graph_sees_function_level_imports_and_skips_type_checking(tmp_path):
    mod = tmp_path / "workbench" / "x.py"
    mod.parent.mkdir()
    mod.write_text("from typing import TYPE_CHECKING\n"
                   "from . import a\n"
                   "if TYPE_CHECKING:\n    from workbench.b import B\n"
                   "def f():\n    from workbench.c import C\n    import workbench.d\n")
    found = _imported("workbench.x", mod)
    assert {"workbench.a", "workbench.c.C", "workbench.d"} <= found
    assert not any(name.startswith("workbench.b") for name in found)
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_itself_through_others():
    graph = _graph()
    assert "workbench.serving" in graph and graph["workbench.serving"]  # it did parse
    cycle = _cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])
