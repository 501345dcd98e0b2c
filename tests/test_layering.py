"""The layering of ``ccr_core``: every import (top-level and inside functions, relative ones resolved)
goes to the same unit or down the layer table below, and no two modules import each other in a circle.

A unit is a top-level package or module of ``ccr_core`` (``ccr_core.training``, ``ccr_core.cli``). An
edge goes to the module an import names: ``import a.b`` and ``from a import b`` (``b`` a submodule)
point at ``a.b``; ``from a.b import name`` points at ``a.b``. The implicit import of parent packages is
not an edge: a submodule importing its own package's ``__init__`` is how Python packages work.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import ccr_core

PACKAGE_ROOT = Path(ccr_core.__file__).parent

# The layers, lowest first: a unit may import its own layer's units or lower ones, never a higher one.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("ccr_core", "ccr_core._compat", "ccr_core.io", "ccr_core.paths", "ccr_core.registry")),
    ("data", ("ccr_core.data",)),
    ("backbones", ("ccr_core.backbones",)),
    ("methods and metrics", ("ccr_core.methods", "ccr_core.devices", "ccr_core.metrics")),
    ("caches and encoding", ("ccr_core.features", "ccr_core.encoding", "ccr_core.index")),
    ("training", ("ccr_core.training",)),
    ("evaluation", ("ccr_core.eval",)),
    ("study", ("ccr_core.study", "ccr_core.experiments")),
    ("applications", ("ccr_core.cli", "ccr_core.dashboard", "ccr_core.setup_demo", "ccr_core.testing")),
)
LAYER_OF = {unit: rank for rank, (_, units) in enumerate(LAYERS) for unit in units}


def package_modules(root: Path = PACKAGE_ROOT, package: str = "ccr_core") -> dict[str, Path]:
    """``{dotted module name: file}`` of every module under ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def import_graph(modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    """``{module: {package module it imports anywhere in its source: line of the first such import}}``."""
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            found = []
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names if alias.name in modules]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: ``from ..x import y`` inside package a.b -> a.x
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                for alias in node.names:
                    if f"{module}.{alias.name}" in modules:
                        found.append(f"{module}.{alias.name}")
                    elif module in modules:
                        found.append(module)
            for target in found:
                targets[target] = min(targets.get(target, node.lineno), node.lineno)
        targets.pop(name, None)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, dict[str, int] | set[str]]) -> list[str] | None:
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


def unit_of(module: str, depth: int = 2) -> str:
    """The unit a module belongs to: its first ``depth`` name parts (``ccr_core.training.train`` -> ``ccr_core.training``)."""
    return ".".join(module.split(".")[:depth])


def unit_graph(graph: dict[str, dict[str, int]]) -> dict[str, set[str]]:
    """The import graph between units (imports inside one unit left out)."""
    out: dict[str, set[str]] = {}
    for source, targets in graph.items():
        out.setdefault(unit_of(source), set()).update(unit_of(t) for t in targets if unit_of(t) != unit_of(source))
    return out


def upward_imports(graph: dict[str, dict[str, int]], modules: dict[str, Path], layers=LAYERS) -> list[str]:
    """Every import from a unit to a unit of a higher layer, as ``file:line: a imports b (layer x -> layer y)``."""
    names = [name for name, _ in layers]
    layer_of = {unit: rank for rank, (_, units) in enumerate(layers) for unit in units}
    out = []
    for source, targets in sorted(graph.items()):
        for target, line in sorted(targets.items()):
            low, high = layer_of[unit_of(source)], layer_of[unit_of(target)]
            if high > low:
                where = modules[source].relative_to(PACKAGE_ROOT.parent) if modules[source].is_relative_to(PACKAGE_ROOT.parent) else modules[source]
                out.append(f"{where}:{line}: {source} imports {target} (layer {names[low]!r} -> higher layer {names[high]!r})")
    return out


@pytest.fixture(scope="module")
def ccr_graph():
    modules = package_modules()
    return modules, import_graph(modules)


def test_every_unit_has_a_layer(ccr_graph):
    modules, _ = ccr_graph
    missing = sorted({unit_of(m) for m in modules} - set(LAYER_OF))
    assert not missing, f"units without a layer: {missing}; add each to LAYERS in tests/test_layering.py"


def test_no_import_runs_up_the_layers(ccr_graph):
    modules, graph = ccr_graph
    assert {"ccr_core.eval.retrieval", "ccr_core.training.train", "ccr_core.encoding", "ccr_core.metrics"} <= set(modules)
    upward = upward_imports(graph, modules)
    assert not upward, "imports that run up the layers (a lower layer must not import a higher one):\n" + "\n".join(upward)


def test_no_import_cycle_between_units_or_modules(ccr_graph):
    _, graph = ccr_graph
    cycle = find_cycle(unit_graph(graph))
    assert cycle is None, "import cycle between units of ccr_core: " + " -> ".join(cycle)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle between modules of ccr_core: " + " -> ".join(cycle)


def test_evaluation_builds_on_training_and_never_the_reverse(ccr_graph):
    _, graph = ccr_graph
    units = unit_graph(graph)
    assert "ccr_core.training" in units["ccr_core.eval"]
    assert "ccr_core.eval" not in units["ccr_core.training"]


# Units whose modules still import project modules inside functions; every other unit imports them at the
# top, so a module's dependencies are all in its first lines. Take a unit out of here once it does too.
LAZY_IMPORTS_LEFT = ("ccr_core.dashboard", "ccr_core.setup_demo")


def function_level_imports(modules: dict[str, Path], package: str = "ccr_core") -> list[str]:
    """``file:line: module`` of every import of a package module inside a function or method."""
    out = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.Import) and any(a.name.split(".")[0] == package for a in node.names):
                    out.append(f"{path.name}:{node.lineno}: {name}")
                elif isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] == package):
                    out.append(f"{path.name}:{node.lineno}: {name}")
    return sorted(set(out))


def test_project_modules_are_imported_at_module_top(ccr_graph):
    modules, _ = ccr_graph
    checked = {name: path for name, path in modules.items() if not unit_of(name).startswith(LAZY_IMPORTS_LEFT)}
    assert "ccr_core.training.train" in checked and "ccr_core.cli" in checked
    lazy = function_level_imports(checked)
    assert not lazy, "project modules imported inside functions (import them at the top of the module):\n" + "\n".join(lazy)


def _write(pkg: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)


def test_the_checker_finds_cycles_through_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "pkg"
    _write(pkg, {"__init__.py": "", "sub/__init__.py": "", "a.py": "from pkg.sub import b\n",
                 "sub/b.py": "def f():\n    from ..c import thing\n    return thing\n",  # lazy and relative
                 "c.py": "import os\nthing = 1\n"})
    graph = import_graph(package_modules(pkg, "pkg"))
    assert graph["pkg.a"] == {"pkg.sub.b": 1} and graph["pkg.sub.b"] == {"pkg.c": 2} and graph["pkg.c"] == {}
    assert find_cycle(graph) is None
    (pkg / "c.py").write_text("import pkg.a\nthing = 1\n")
    graph = import_graph(package_modules(pkg, "pkg"))
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]
    assert find_cycle(unit_graph(graph)) == ["pkg.a", "pkg.sub", "pkg.c", "pkg.a"]


def test_the_checker_names_an_upward_import_with_file_and_line(tmp_path):
    pkg = tmp_path / "pkg"
    _write(pkg, {"__init__.py": "", "low/__init__.py": "", "low/x.py": "import os\n\n\ndef f():\n    from pkg.high import y\n",
                 "high/__init__.py": "", "high/y.py": "from pkg.low import x\n"})
    modules = package_modules(pkg, "pkg")
    found = upward_imports(import_graph(modules), modules, layers=(("low", ("pkg", "pkg.low")), ("high", ("pkg.high",))))
    assert len(found) == 1
    assert found[0].endswith("low/x.py:5: pkg.low.x imports pkg.high.y (layer 'low' -> higher layer 'high')")
    assert function_level_imports(modules, "pkg") == ["x.py:5: pkg.low.x"]


def test_docstrings_cite_documents_inside_the_repository(ccr_graph):
    modules, _ = ccr_graph
    repo = PACKAGE_ROOT.parent
    outside, missing = [], []
    for name, path in modules.items():
        text = path.read_text(encoding="utf-8")
        outside += [f"{path.name}: {m}" for m in re.findall(r"shared/docs/[\w./-]+", text)]
        missing += [f"{path.name}: {m}" for m in re.findall(r"\bdocs/[\w./-]+\.md\b", text)
                    if "shared/" + m not in text and not (repo / m).is_file()]
    assert not outside, "docstrings citing documents outside the repository:\n" + "\n".join(sorted(set(outside)))
    assert not missing, "cited documents that are not in docs/:\n" + "\n".join(sorted(set(missing)))


ARGUMENT_PARSERS = {"ccr_core.cli.build_parser"}  # declarative: one add_argument per option, nothing to split


def test_no_function_in_ccr_core_is_over_100_lines():
    """Long bodies are split into named steps (issue 31); argument parsers, which only declare, are the exception."""
    long = []
    for name, path in package_modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 100:
                if f"{name}.{node.name}" not in ARGUMENT_PARSERS:
                    long.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not long, long
