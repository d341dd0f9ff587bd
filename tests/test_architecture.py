"""The import rules of docs/architecture.md, checked on the source (every import, deferred ones too)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ptychopinn"

#: what each top-level part may import of ours (docs/architecture.md, "Layers")
ALLOWED = {
    "units": set(),
    "options": set(),
    "physics": set(),
    "io": {"units"},
    "simulate": {"io", "options", "physics", "units"},
    "data": {"io", "physics", "simulate"},
    "evaluation": set(),
    "refine": {"physics"},
    # config reads these for validation only: holdout specs, bounded files, generator names
    "config": {"data", "io", "models", "options"},
    "models": {"config", "physics"},
    "workflows": {
        "config", "data", "evaluation", "io", "models", "options", "physics", "refine", "simulate", "units",
        "root",
    },  # fmt: skip
    "integrations": {"io", "workflows"},
    "cli": {"workflows", "root"},
    "__main__": {"cli"},
    "root": set(),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target.startswith("ptychopinn") and target != name:
                    found.add(target)
        graph[name] = found
    return graph


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "root"


def test_no_module_imports_one_that_imports_it_back():
    graph = _imports()
    # a package's __init__ importing its own modules is how packages work: not a cycle
    edges = {a: {b for b in targets if not b.startswith(a + ".")} for a, targets in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in edges[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


def test_each_part_imports_only_what_the_layers_allow():
    broken = sorted(
        f"{module} imports {target}"
        for module, targets in _imports().items()
        for target in targets
        if _part(target) != _part(module) and _part(target) not in ALLOWED[_part(module)]
    )
    assert not broken, "\n".join(broken)


def test_docstrings_cite_sections_of_the_conventions_that_exist():
    import re

    conventions = (PACKAGE.parents[1] / "docs" / "conventions.md").read_text()
    headings = set(re.findall(r"^## (.+)$", conventions, flags=re.M))
    cited = {
        (path.name, section)
        for path in PACKAGE.rglob("*.py")
        for section in re.findall(r'docs/conventions\.md,\s+"([^"]+)"', path.read_text())
    }
    assert cited, "no docstring cites docs/conventions.md"
    missing = sorted(f"{name}: {section}" for name, section in cited if section not in headings)
    assert not missing, missing
    outside = sorted(p.name for p in PACKAGE.rglob("*.py") if "shared/spec" in p.read_text())
    assert not outside, f"docstrings citing the spec outside the repository: {outside}"
