"""The package's floors, checked against the real import graph (every ``import`` in paitune/).

Each subpackage imports only from floors below its own. The floors section of docs/CONTRACTS.md is
rendered from the same table: ``python -m tests.test_layers`` prints it.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "paitune"

# Bottom first. Each entry may import only from entries on lower floors.
FLOORS = [
    ("errors",),
    ("config", "plugins", "registry"),
    ("data", "models"),
    ("pruning",),
    ("proxies",),
    ("training",),
    ("sparse",),
    ("trial", "spaces"),
    ("results",),
    ("analysis", "search"),
    ("cli",),
    ("__main__",),
]
PAI_LIBRARY = ("data", "models", "pruning", "proxies", "training", "sparse")
FORBIDDEN_IN_LIBRARY = ("ray", "optuna")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    module = _module_name(path)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            found.add(".".join(base + ([node.module] if node.module else [])))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def import_graph() -> dict[str, set[str]]:
    """Subpackage -> the subpackages (and third-party top-level modules) it imports."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        source = _top(_module_name(path))
        for target in _imports(path):
            graph[source].add(_top(target) if target.startswith("paitune.") else "!" + target.split(".")[0])
    return graph


def module_graph() -> dict[str, set[str]]:
    """Module -> the paitune modules it imports (``from pkg import mod`` names the module ``mod``)."""
    paths = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for module, path in paths.items():
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                source = ".".join(base + ([node.module] if node.module else []))
                targets.update(f"{source}.{a.name}" if f"{source}.{a.name}" in paths else source for a in node.names)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[module] = {target for target in targets if target in paths and target != module}
    return graph


def floors_markdown() -> str:
    return "Floors, bottom first (each imports only from the floors below it):\n" + "\n".join(
        f"{i}. {', '.join(floor)}" for i, floor in enumerate(FLOORS)
    )


def test_every_import_goes_down():
    floor_of = {name: i for i, floor in enumerate(FLOORS) for name in floor}
    graph = import_graph()
    assert set(graph) <= set(floor_of), f"subpackages missing from FLOORS: {set(graph) - set(floor_of)}"
    upward = [
        f"{source} -> {target}"
        for source, targets in graph.items()
        for target in targets
        if not target.startswith("!") and target != source and floor_of[target] >= floor_of[source]
    ]
    assert upward == []


def test_no_module_imports_itself_back():
    """No import cycle between modules, counting the imports inside functions too."""
    graph = module_graph()
    done: set[str] = set()
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycles.append(" -> ".join(path[path.index(module) :] + [module]))
            return
        if module in done:
            return
        for target in sorted(graph[module]):
            visit(target, path + [module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert cycles == []


def test_the_pai_library_never_imports_ray_or_optuna():
    graph = import_graph()
    assert [(p, t) for p in PAI_LIBRARY for t in graph[p] if t.lstrip("!") in FORBIDDEN_IN_LIBRARY] == []


def test_contracts_doc_shows_these_floors():
    assert floors_markdown() in (ROOT / "docs" / "CONTRACTS.md").read_text()


if __name__ == "__main__":
    print(floors_markdown())
