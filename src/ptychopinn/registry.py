"""One registry shape for every kind of plugin: generators, solvers, scan formats, forward models.

A plugin is one file in its kind's package that registers itself at import::

    @GENERATORS.register("mine")
    class MyGenerator(Generator): ...

A registry finds its plugins by importing every module of its package the first time it is
asked for a name (:meth:`Registry.discover`), so an options field can list a registry as its
``choices`` (:func:`ptychopinn.options.option`) and a command's help, the validation of a
configuration and the tests over every plugin all see a new file with no other edit. The
registry names its package as a string: discovery is a run-time lookup, so this module (and
the options that refer to a registry) import nothing of the plugins' packages, and the
import graph stays one-way. Modelled on torchvision's ``register_model`` / ``get_model`` /
``list_models``.

This module depends on nothing else in the package.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Plugins of one kind by name.

    Parameters
    ----------
    kind : str
        What a plugin is, for messages (``"generator"``).
    package : str, optional
        The dotted name of the package whose modules register the plugins; every module of
        it not starting with ``_`` is imported on first use.
    check : callable, optional
        ``check(name, item)`` raising ``TypeError`` / ``ValueError`` for an item this kind
        refuses (checked when it registers, before anything is stored).

    Examples
    --------
    >>> shapes = Registry("shape")
    >>> @shapes.register("disk")
    ... class Disk:
    ...     pass
    >>> shapes.names(), shapes.get("disk") is Disk, Disk.name
    (('disk',), True, 'disk')
    >>> shapes.get("star")
    Traceback (most recent call last):
    ...
    ValueError: unknown shape 'star'; choose from disk
    """

    def __init__(
        self,
        kind: str,
        package: str | None = None,
        *,
        check: Callable[[str, Any], None] | None = None,
    ):
        self.kind = kind
        self.package = package
        self._check = check
        self._items: dict[str, T] = {}
        self._discovered = package is None

    def register(self, name: str, item: T | None = None) -> Any:
        """Register ``item`` as ``name``; without ``item``, a class decorator doing that.

        A class gets ``name`` as its ``name`` attribute. Registering the same item again
        under its name is allowed (a module imported twice).

        Raises
        ------
        ValueError
            The name is not a non-empty text, or another item has it.
        """

        def add(value: T) -> T:
            if not isinstance(name, str) or not name:
                raise ValueError(f"a {self.kind} name must be a non-empty text, got {name!r}")
            if self._check is not None:
                self._check(name, value)
            known = self._items.get(name)
            if known is not None and known is not value and known != value:
                owner = getattr(known, "__qualname__", repr(known))
                raise ValueError(f"{self.kind} name '{name}' is taken by {owner}")
            if isinstance(value, type):
                value.name = name  # type: ignore[attr-defined]
            self._items[name] = value
            return value

        return add if item is None else add(item)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a plugin a test registered for a while)."""
        self._items.pop(name, None)

    def discover(self) -> None:
        """Import every module of the registry's package once (each registers its plugins)."""
        if self._discovered:
            return
        self._discovered = True  # before importing: a module may ask for names while loading
        try:
            package = importlib.import_module(self.package)
            for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda module: module.name):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{self.package}.{info.name}")
        except BaseException:
            self._discovered = False
            raise

    def get(self, name: str) -> T:
        """The item registered as ``name``.

        Raises
        ------
        ValueError
            No item has that name (the message lists the registered ones).
        """
        self.discover()
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown {self.kind} {name!r}; choose from {', '.join(self.names())}") from None

    def names(self) -> tuple[str, ...]:
        """The registered names, sorted."""
        self.discover()
        return tuple(sorted(self._items))

    def items(self) -> list[tuple[str, T]]:
        """``(name, item)`` pairs, sorted by name."""
        return [(name, self._items[name]) for name in self.names()]

    def __contains__(self, name: object) -> bool:
        self.discover()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __getitem__(self, name: str) -> T:
        self.discover()
        return self._items[name]

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._items)})"


# --- the package's registries: each names the package its plugins live in ---------------------


def _is_identifier(kind: str) -> Callable[[str, Any], None]:
    def check(name: str, item: Any) -> None:
        if not name.isidentifier() or name != name.lower():
            raise ValueError(f"{kind} name {name!r} must be a lower-case identifier")

    return check


def _generator_check(name: str, item: Any) -> None:
    _is_identifier("generator")(name, item)
    # the contract of models/generators/base.Generator, checked by its attributes (no import)
    if not isinstance(item, type) or not all(hasattr(item, a) for a in ("from_config", "forward_arguments")):
        raise TypeError(f"generator '{name}': {item!r} is not a subclass of Generator")


def _solver_check(name: str, item: Any) -> None:
    _is_identifier("solver")(name, item)
    if not isinstance(item, type) or not all(hasattr(item, a) for a in ("run_epoch", "defaults")):
        raise TypeError(f"solver '{name}': {item!r} is not a Solver class")


#: networks from diffraction patterns to object patches (``models/generators/<name>.py``)
GENERATORS: Registry[Any] = Registry("generator", "ptychopinn.models.generators", check=_generator_check)
#: refinement solvers (``refine/solvers/<name>.py``)
SOLVERS: Registry[Any] = Registry("solver", "ptychopinn.refine.solvers", check=_solver_check)
#: scan file formats (``io/<name>.py``)
SCAN_FORMATS: Registry[Any] = Registry("scan format", "ptychopinn.io")
#: forward models, exit wave to detector (``physics/forward_models/<name>.py``)
FORWARD_MODELS: Registry[Any] = Registry(
    "forward model", "ptychopinn.physics.forward_models", check=_is_identifier("forward model")
)

REGISTRIES = {
    "generator": GENERATORS, "solver": SOLVERS, "scan format": SCAN_FORMATS, "forward model": FORWARD_MODELS,
}  # fmt: skip
