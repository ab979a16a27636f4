"""The project's import graph, read from the source (ast, no imports run).

    python -m tests.support.imports          # package-level arrows
    python -m tests.support.imports --modules

Top-level imports only (those run when a module loads); an import inside a
function is listed separately, since it is the usual way to hide a cycle.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("config", "scheduling", "viral_clips")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" not in path.parts:
                found[_module_name(path)] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The project module an imported name belongs to (a.b.c -> a.b if a.b.c is a symbol)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def graph() -> tuple[dict[str, set[str]], list[tuple[str, str, int]]]:
    """(top-level edges module -> modules, function-level imports (module, target, line))."""
    known = _modules()
    edges: dict[str, set[str]] = defaultdict(set)
    inner: list[tuple[str, str, int]] = []
    for module, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        top = set(tree.body)
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                # `from a.b import c`: the module a.b.c if it is one, else a.b.
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                    for alias in node.names
                ]
            for resolved in {_resolve(target, known) for target in targets}:
                if resolved is None or resolved == module:
                    continue
                if node in top:
                    edges[module].add(resolved)
                else:
                    inner.append((module, resolved, node.lineno))
    return edges, inner


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in edges.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                group.append(item)
                if item == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in list(edges):
        if node not in index:
            visit(node)
    return found


def package_edges(edges: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {
        (a.split(".")[0], b.split(".")[0])
        for a, targets in edges.items()
        for b in targets
        if a.split(".")[0] != b.split(".")[0]
    }


if __name__ == "__main__":
    edges, inner = graph()
    if "--modules" in sys.argv:
        for module in sorted(edges):
            print(f"{module} -> {', '.join(sorted(edges[module]))}")
    else:
        for a, b in sorted(package_edges(edges)):
            print(f"{a} -> {b}")
    print(f"cycles: {cycles(edges) or 'none'}")
    for module, target, line in inner:
        print(f"function-level import: {module}:{line} -> {target}")
