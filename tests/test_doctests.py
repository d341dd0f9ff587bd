"""The Examples sections of the package's docstrings, run as doctests (scikit-image's habit)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import ptychopinn

SKIP = {"ptychopinn.__main__"}


def _modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(ptychopinn.__path__, prefix="ptychopinn."):
        if info.name in SKIP:
            continue
        module = importlib.import_module(info.name)
        if any(test.examples for test in doctest.DocTestFinder().find(module, module.__name__)):
            names.append(info.name)
    return names


MODULES = _modules_with_examples()


def test_the_main_public_functions_have_examples():
    for name in ("ptychopinn.models.generators", "ptychopinn.models.lightning_module"):
        assert name in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(
        module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False, report=True
    )
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
