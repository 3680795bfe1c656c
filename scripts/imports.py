"""Import graph of the llamaman package: circles, package loops and imports that point up the layers.

Run `python scripts/imports.py` for the tables; tests/unit/test_architecture.py asserts on them.
Every import counts: module level, inside functions and under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "llamaman"

# Lowest first. A package may import its own layer or any lower one, never a higher one.
# Why this order: leaves and records at the bottom, the things that launch and serve instances
# above them, then the rooms that act on many of those, and the composition root on top.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "config", "validation", "webio", "periodic", "accesslog", "healthcheck"),
    ("storage",),
    ("auth", "runtime", "cluster", "recording"),
    ("proxy",),
    ("instances",),
    ("models", "monitoring", "presets"),
    ("settings",),
    ("downloads",),
    ("scheduler",),
    ("backup", "cleanup", "dropin"),
    ("compat",),
    ("services", "web", "ui", "cli"),
)


@dataclass(frozen=True)
class Edge:
    """One import of module `target` by module `source`."""

    source: str
    target: str
    line: int


def module_name(path: Path, root: Path = ROOT) -> str:
    """Dotted module name of a file under the package root."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def discover(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    return {module_name(p, root): p for p in sorted((root / PACKAGE).rglob("*.py"))}


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([name] if name else []))


def _targets(node: ast.AST, module: str, is_package: bool, modules: dict[str, Path]) -> list[str]:
    """Package modules one import statement loads (a `from x import y` may name submodule y)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        base = _resolve_relative(module, is_package, node.level, node.module)
    found = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
    return found if len(found) == len(node.names) else [base, *found]


def _owning_module(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def edges(modules: dict[str, Path] | None = None, root: Path = ROOT) -> list[Edge]:
    """Every import between two package modules (an import of a package counts as its __init__)."""
    modules = modules if modules is not None else discover(root)
    found: list[Edge] = []
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for name in _targets(node, module, is_package, modules):
                target = _owning_module(name, modules) if name.startswith(PACKAGE) else None
                if target and target != module and target != PACKAGE:
                    found.append(Edge(module, target, node.lineno))
    return found


def package_of(module: str) -> str:
    """The room a module belongs to: `llamaman.downloads.runner` → `downloads`."""
    return module.split(".")[1]


def layer_of(package: str) -> int:
    """Index of a package's layer; unknown packages raise so new rooms get placed on purpose."""
    for index, names in enumerate(LAYERS):
        if package in names:
            return index
    raise KeyError(f"package {package!r} has no layer in scripts/imports.py LAYERS")


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Components of more than one node (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        component.append(top)
                        if top == node:
                            break
                    if len(component) > 1:
                        result.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return sorted(result)


def circles(found: list[Edge]) -> list[list[str]]:
    """Groups of modules that import each other, directly or round a ring."""
    graph: dict[str, set[str]] = {}
    for e in found:
        graph.setdefault(e.source, set()).add(e.target)
    return strongly_connected(graph)


def package_edges(found: list[Edge]) -> dict[str, set[str]]:
    """Which rooms import which (imports inside one room left out)."""
    graph: dict[str, set[str]] = {}
    for e in found:
        src, dst = package_of(e.source), package_of(e.target)
        if src != dst:
            graph.setdefault(src, set()).add(dst)
    return graph


def package_loops(found: list[Edge]) -> list[list[str]]:
    """Groups of rooms that import each other."""
    return strongly_connected(package_edges(found))


def upward(found: list[Edge]) -> list[Edge]:
    """Imports from a lower layer into a higher one."""
    return [e for e in found if layer_of(package_of(e.source)) < layer_of(package_of(e.target))]


def short(module: str) -> str:
    """Module name without the package prefix."""
    return module.removeprefix(PACKAGE + ".")


def report(found: list[Edge]) -> str:
    """The three tables as text."""
    lines = [f"modules: {len(discover())}  imports: {len(found)}", ""]
    found_circles = circles(found)
    lines.append(f"circles: {len(found_circles)}")
    lines += ["  " + " ↔ ".join(short(m) for m in c) for c in found_circles]
    ups = upward(found)
    lines.append(f"upward imports: {len(ups)}")
    lines += [f"  {short(e.source)}:{e.line} → {short(e.target)}" for e in ups]
    loops = package_loops(found)
    lines.append(f"package loops: {len(loops)}")
    lines += ["  " + " ↔ ".join(loop) for loop in loops]
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(edges()))
    sys.exit(0)
