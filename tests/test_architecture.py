"""The import rules of docs/architecture.md, checked on the source (every import, deferred ones too)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ptychopinn"

#: what each top-level part may import of ours (docs/architecture.md, "Layers"), besides the
#: leaves every part may import: units, options (the Options base) and registry
LEAVES = {"units", "options", "registry"}
ALLOWED = {
    "units": set(),
    "options": set(),
    "registry": set(),
    "common": set(),  # the fields several options classes share (devices, photons, progress)
    "physics": set(),
    "io": set(),
    "simulate": {"io", "physics"},
    "data": {"io", "physics", "simulate"},
    "evaluation": set(),
    "refine": {"physics"},
    # config reads the holdout syntax and the bounded file reader when it validates
    "config": {"common", "data", "io"},
    "models": {"config", "physics"},
    "workflows": {
        "common", "config", "data", "evaluation", "io", "models", "physics", "refine", "simulate", "root",
    },  # fmt: skip
    "integrations": {"io", "workflows"},
    "cli": {"workflows", "root"},
    "__main__": {"cli"},
    "root": set(),
}


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}`` from the source (deferred imports too)."""
    root = package_dir.parent
    modules = {_module_name(p, root): p for p in package_dir.rglob("*.py")}
    top = package_dir.name
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
                if (target == top or target.startswith(top + ".")) and target != name:
                    found.add(target)
        graph[name] = found
    return graph


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every set of modules that import one another in a loop (Tarjan's components), no exemption.

    A package's ``__init__`` is a module like any other: an ``__init__`` importing a submodule
    that imports the package back is a loop.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "root"


def layer_violations(graph: dict[str, set[str]], allowed: dict[str, set[str]]) -> list[str]:
    """``"a imports b"`` for every import across parts that the layers do not allow."""
    return sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        for target in targets
        if _part(target) != _part(module)
        and _part(target) not in LEAVES
        and _part(target) not in allowed[_part(module)]
    )


def test_no_module_imports_one_that_imports_it_back():
    cycles = import_cycles(import_graph(PACKAGE))
    assert not cycles, f"import cycles: {cycles}"


def test_each_part_imports_only_what_the_layers_allow():
    broken = layer_violations(import_graph(PACKAGE), ALLOWED)
    assert not broken, "\n".join(broken)


def _write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / next(iter(files)).split("/")[0]


def test_the_cycle_check_catches_a_loop_through_a_package_init(tmp_path):
    """The loops the former check hid: config -> models.generators (its __init__) -> base -> config."""
    package = _write_package(tmp_path, {
        "toy/__init__.py": "",
        "toy/config.py": "def names():\n    from .models.generators import list_generators\n",
        "toy/models/__init__.py": "",
        "toy/models/generators/__init__.py": "from .base import Generator\n",
        "toy/models/generators/base.py": "from ...config import names\n",
        "toy/fine.py": "from .config import names\n",
    })  # fmt: skip
    cycles = import_cycles(import_graph(package))
    assert cycles == [["toy.config", "toy.models.generators", "toy.models.generators.base"]]
    # a package importing back from its own __init__ is a loop too
    package = _write_package(tmp_path / "two", {
        "pkg/__init__.py": "from .a import x\ny = 1\n",
        "pkg/a.py": "from pkg import y\nx = 2\n",
    })  # fmt: skip
    assert import_cycles(import_graph(package)) == [["pkg", "pkg.a"]]


def test_the_layer_check_catches_an_import_against_the_layers(tmp_path):
    package = _write_package(tmp_path, {
        "toy/__init__.py": "",
        "toy/physics/__init__.py": "from ..workflows import job\n",
        "toy/workflows/__init__.py": "from ..physics import fft\nfrom ..options import option\n",
        "toy/options.py": "",
    })  # fmt: skip
    rules = {"physics": set(), "workflows": {"physics"}, "options": set(), "root": set()}
    assert layer_violations(import_graph(package), rules) == ["toy.physics imports toy.workflows"]


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


#: the one place a flag is made (the builder) and the parser's own flags (main)
FLAG_MAKERS = {"cli/flags.py", "cli/main.py"}


def hand_made_flags(package_dir: Path, allowed: set[str]) -> list[str]:
    """``file:line`` of every ``add_argument(`` call outside the flag builder and main."""
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        name = path.relative_to(package_dir).as_posix()
        if name in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
                found.append(f"{name}:{node.lineno}")
    return found


def test_flags_are_made_only_by_the_builder():
    assert not hand_made_flags(PACKAGE, FLAG_MAKERS), "flags declared by hand; declare an option() field"


def test_the_flag_check_catches_a_hand_made_flag(tmp_path):
    package = _write_package(tmp_path, {
        "toy/__init__.py": "",
        "toy/cli/flags.py": "def build(parser):\n    parser.add_argument('--fine')\n",
        "toy/cli/commands.py": "def add(parser):\n    group = parser\n    group.add_argument('--epochs')\n",
    })  # fmt: skip
    assert hand_made_flags(package, {"cli/flags.py"}) == ["cli/commands.py:3"]


def _code_measures():
    import importlib.util

    path = PACKAGE.parents[1] / "scripts" / "code_measures.py"
    spec = importlib.util.spec_from_file_location("code_measures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_size_targets_of_docs_architecture_hold():
    """docs/architecture.md, "Targets": a long signature or function comes back as a failure."""
    measures = _code_measures().measures(PACKAGE)
    assert measures["functions_over_10_parameters_workflows"] == []
    assert len(measures["functions_over_10_parameters"]) <= 3, measures["functions_over_10_parameters"]
    assert len(measures["functions_over_80_lines"]) <= 5, measures["functions_over_80_lines"]
    assert len(measures["files_over_450_lines"]) <= 3, measures["files_over_450_lines"]
    assert measures["cli_largest_function"] <= 40


def test_the_size_measures_see_a_long_signature_and_a_long_function(tmp_path):
    package = _write_package(tmp_path, {
        "toy/__init__.py": "",
        "toy/workflows/job.py": "def job(a, b, c, d, e, f, g, h, i, j, k):\n    'Eleven.'\n    return a\n",
        "toy/cli/main.py": "def main():\n    \"\"\"Doc\n\n    not code.\n    \"\"\"\n" + "    x = 1\n" * 45,
    })  # fmt: skip
    measures = _code_measures().measures(package)
    assert measures["functions_over_10_parameters_workflows"] == ["workflows/job.py:job"]
    assert measures["cli_largest_function"] == 46  # the def line and 45 of code; the docstring not
