"""No import cycle in the ``ccr_core`` package: every module's imports (top-level and inside functions,
relative ones resolved) form a graph without cycles, so any module can be imported first and a lazy
import is never what keeps two modules from importing each other half-initialised.

An edge goes to the module an import names: ``import a.b`` and ``from a import b`` (``b`` a submodule)
point at ``a.b``; ``from a.b import name`` points at ``a.b``. The implicit import of parent packages
is not an edge: a submodule importing its own package's ``__init__`` is how Python packages work.
"""
from __future__ import annotations

import ast
from pathlib import Path

import ccr_core

PACKAGE_ROOT = Path(ccr_core.__file__).parent


def package_modules(root: Path = PACKAGE_ROOT, package: str = "ccr_core") -> dict[str, Path]:
    """``{dotted module name: file}`` of every module under ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """``{module: the package modules it imports anywhere in its source}``."""
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names if alias.name in modules)
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: ``from ..x import y`` inside package a.b -> a.x
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                for alias in node.names:
                    if f"{module}.{alias.name}" in modules:
                        targets.add(f"{module}.{alias.name}")
                    elif module in modules:
                        targets.add(module)
        targets.discard(name)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None (depth-first search, deterministic order)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_ccr_core_has_no_import_cycle():
    modules = package_modules()
    assert {"ccr_core.evaluate", "ccr_core.training.train", "ccr_core.encoding", "ccr_core.methods.base"} <= set(modules)
    graph = import_graph(modules)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle in ccr_core: " + " -> ".join(cycle)
    # the direction this package keeps: evaluation builds on training, never the reverse
    assert "ccr_core.training.train" in graph["ccr_core.evaluate"] or "ccr_core.training.checkpoint" in graph["ccr_core.evaluate"]
    assert not any(m.startswith("ccr_core.evaluate") for m in graph["ccr_core.training.train"])


def test_the_checker_finds_cycles_through_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..c import thing\n    return thing\n")  # lazy and relative
    (pkg / "c.py").write_text("import os\nthing = 1\n")
    modules = package_modules(pkg, "pkg")
    graph = import_graph(modules)
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.c"} and graph["pkg.c"] == set()
    assert find_cycle(graph) is None
    (pkg / "c.py").write_text("import pkg.a\nthing = 1\n")
    cycle = find_cycle(import_graph(package_modules(pkg, "pkg")))
    assert cycle == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]
