"""The code measures of docs/architecture.md ("Targets"), read off the source.

Prints a table and writes JSON (``--json FILE``): lines per file and per function, parameters
per function, lines of ``cli/``. ``tests/test_architecture.py`` holds the targets.

    python scripts/code_measures.py [--json measures.json]
"""

from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ptychopinn"


def functions(package: Path = PACKAGE) -> list[dict]:
    """Every function and method: ``{"name", "file", "lines", "parameters"}``.

    ``lines`` counts its code: the ``def`` line and the body after the docstring (a numpy
    docstring is documentation, not length).
    """
    found = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
                names = [n for n in names if n not in ("self", "cls")]
                docstring = ast.get_docstring(node, clean=False)
                body = node.body[1:] if docstring is not None and len(node.body) > 1 else node.body
                # its code: from the signature's end (or the docstring's) to its last line
                start = body[0].lineno if docstring is not None else node.body[0].lineno
                found.append({
                    "name": node.name, "file": path.relative_to(package).as_posix(),
                    "lines": node.end_lineno - start + 1 + 1, "parameters": len(names),
                })  # fmt: skip
    return found


def file_lines(package: Path = PACKAGE) -> dict[str, int]:
    """Lines per file, by path relative to the package."""
    paths = sorted(package.rglob("*.py"))
    return {p.relative_to(package).as_posix(): len(p.read_text().splitlines()) for p in paths}


def measures(package: Path = PACKAGE) -> dict:
    """The measures of docs/architecture.md's "Targets"."""
    funcs, files = functions(package), file_lines(package)
    cli = [f for f in funcs if f["file"].startswith("cli/")]

    def named(items) -> list[str]:
        return sorted(f"{f['file']}:{f['name']}" for f in items)

    return {
        "files": len(files),
        "lines": sum(files.values()),
        "cli_lines": sum(n for name, n in files.items() if name.startswith("cli/")),
        "cli_largest_function": max((f["lines"] for f in cli), default=0),
        "functions_over_10_parameters_workflows": named(
            f for f in funcs if f["parameters"] > 10 and f["file"].startswith("workflows/")
        ),
        "functions_over_10_parameters": named(f for f in funcs if f["parameters"] > 10),
        "functions_over_80_lines": sorted(
            f"{f['file']}:{f['name']} ({f['lines']})" for f in funcs if f["lines"] > 80
        ),
        "files_over_450_lines": sorted(f"{name} ({n})" for name, n in files.items() if n > 450),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the measures here")
    args = parser.parse_args()
    result = measures()
    for key, value in result.items():
        shown = f"{len(value)}: {', '.join(value)}" if isinstance(value, list) else value
        print(f"{key:42s} {shown}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
