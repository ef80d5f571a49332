"""The package's import graph: no module imports another that imports it back, and each head
subpackage imports only what its docstring allows. Every import counts: top level, inside functions and
under TYPE_CHECKING, since each is an edge a reader has to follow."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Folder -> import path, as pyproject.toml maps them.
FOLDERS = {"core": "cmdcl.core", "extract": "cmdcl.extract", "head": "cmdcl.head", "pipelines": "cmdcl.pipelines"}


def modules() -> dict[str, Path]:
    found = {}
    for folder, dotted in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((dotted, *parts)).removesuffix(".__init__")
            found[name] = path
    return found


def _package(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The cmdcl modules that `name` imports, relative imports resolved, `from pkg import module` as the module."""
    edges = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _package(name, path).split(".")
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        edges.update(t for t in targets if t in known and t != name)
    return edges


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]; counter[0] += 1; stack.append(start); on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]; counter[0] += 1; stack.append(child); on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop(); on_stack.discard(member); component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_another_that_imports_it_back():
    assert cycles(import_graph()) == []


# What each head subpackage may import inside cmdcl.head (its __init__ docstring says the same).
HEAD_LAYERS = {
    "cmdcl.head.model": {"cmdcl.head.model"},
    "cmdcl.head.data": set(),
    "cmdcl.head.metrics": {"cmdcl.head.metrics", "cmdcl.head.model", "cmdcl.head.data"},
    "cmdcl.head.training": {"cmdcl.head.training", "cmdcl.head.model", "cmdcl.head.data", "cmdcl.head.metrics"},
    "cmdcl.head.comparison": {"cmdcl.head.comparison", "cmdcl.head.metrics", "cmdcl.head.training"},
    "cmdcl.head.confounding": {"cmdcl.head.confounding", "cmdcl.head.metrics", "cmdcl.head.training",
                               "cmdcl.head.comparison", "cmdcl.head.data"},
}


def _layer(name: str) -> str | None:
    return next((layer for layer in HEAD_LAYERS if name == layer or name.startswith(layer + ".")), None)


@pytest.mark.parametrize("layer", sorted(HEAD_LAYERS))
def test_head_subpackages_import_only_what_they_may(layer):
    graph = import_graph()
    wrong = sorted(f"{name} -> {target}" for name, targets in graph.items() if _layer(name) == layer
                   for target in targets if target.startswith("cmdcl.head") and _layer(target) not in HEAD_LAYERS[layer])
    assert wrong == []


def test_the_stages_keep_their_direction():
    """core imports no stage; the head never imports the extraction stage (it reads only feature files)."""
    graph = import_graph()
    wrong = sorted(f"{name} -> {target}" for name, targets in graph.items() for target in targets
                   if (name.startswith("cmdcl.core") and not target.startswith("cmdcl.core"))
                   or (name.startswith("cmdcl.head") and target.startswith(("cmdcl.extract", "cmdcl.pipelines"))))
    assert wrong == []
