"""Options declared once: a field carries its help, flags and bounds; one base validates them.

Every options class of the package (the run's configuration sections, the refinement, the
simulator, the corpus, the commands) is a frozen dataclass deriving from :class:`Options`,
with its fields declared by :func:`option`. The base validates every field when the object
is built, from the field's annotation (``int``, ``float``, ``bool``, ``str``, ``tuple[...]``,
a nested :class:`Options`; ``| None`` makes it optional) and its declared bounds and choices,
with one message format, ``section.field = value: rule``. A subclass adds only the rules
that relate several fields, in :meth:`Options.check`. The command line builds its flags from
the same declarations (``ptychopinn.cli.flags``), so a new field needs no CLI edit, and help
shows the default from the field itself (pty-chi's options classes and Lightning's typed
signatures are the models).

This module depends on nothing else in the package.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NoReturn

_MISSING = dataclasses.MISSING

#: what ``choices`` may be: the names, or something that lists them when asked (a registry)
Choices = tuple[str, ...] | Callable[[], tuple[str, ...]] | Any


def option(
    default: Any = _MISSING,
    help: str = "",  # noqa: A002 - argparse's word
    *,
    flags: tuple[str, ...] = (),
    metavar: str | None = None,
    choices: Choices | None = None,
    minimum: float | None = None,
    exclusive_minimum: bool = False,
    maximum: float | None = None,
    exclusive_maximum: bool = False,
    path: bool = False,
    positional: bool = False,
    required: bool = False,
    exclusive: str | None = None,
    plugins: Any = None,
    default_text: str | Callable[[], str] | None = None,
    shortcuts: tuple[tuple[tuple[str, ...], Any, str], ...] = (),
    scan_data: bool = False,
    group: str | None = None,
    default_factory: Any = _MISSING,
) -> Any:
    """A dataclass field with its help, its command-line spellings and the rules of its value.

    Parameters
    ----------
    default : object
        The field's default (shown in help unless ``default_text`` says it better).
    help : str
        One line: what the value means, with its unit.
    flags : tuple of str
        Spellings on the command line, the preferred first; none: not a flag.
    metavar : str, optional
        As for :meth:`argparse.ArgumentParser.add_argument`.
    choices : tuple of str, or a registry, optional
        The allowed values (of each element, for a tuple field). A registry (anything with
        ``names()``) or a callable is asked when a value is validated, so plugins registered
        later are allowed too.
    minimum, exclusive_minimum, maximum, exclusive_maximum :
        Bounds of a number (the flag's type refuses what is out of them; so does the class).
    path : bool
        The value is a file path: a :class:`os.PathLike` is accepted and stored as ``str``.
    positional : bool
        On the command line, a positional argument (its metavar is the first of ``flags``).
    required : bool
        The command line requires it (the class may still have a default).
    exclusive : str, optional
        Flags naming the same group exclude each other (required when one of them is).
    plugins : Registry, optional
        The field is a mapping of the options of a plugin chosen by another field (a solver's,
        a generator's): its keys are the fields of that plugin's ``options`` class (an
        :class:`Options` subclass; none: the plugin takes no options). The owner checks them
        with :meth:`Options.plugin_options`; the command line offers them as dotted flags,
        ``--solver.momentum`` for a field declared with ``flags=("--solver",)``.
    default_text : str or callable, optional
        How help states the default (``"one per position"`` for None); a callable is asked
        when help is shown (a text made from a registry's plugins).
    shortcuts : tuple of (flags, value, help)
        Extra flags setting this field to a fixed value (``--disable-mlflow``: logger none).
    scan_data : bool
        About scan files or grouping: left out of commands without scan files (``pretrain``).
    group : str, optional
        The help section listing the flag (default: the options' section).

    Examples
    --------
    >>> @dataclasses.dataclass(frozen=True)
    ... class Steps(Options):
    ...     section = "steps"
    ...     count: int = option(4, "how many", minimum=1, maximum=64)
    >>> Steps(count=8).count
    8
    >>> Steps(count=0)
    Traceback (most recent call last):
    ...
    ValueError: steps.count = 0: must be >= 1
    """
    metadata = {
        "help": help,
        "flags": tuple(flags),
        "metavar": metavar,
        "choices": tuple(choices) if isinstance(choices, (tuple, list)) else choices,
        "minimum": minimum,
        "exclusive_minimum": exclusive_minimum,
        "maximum": maximum,
        "exclusive_maximum": exclusive_maximum,
        "path": path,
        "positional": positional,
        "required": required,
        "exclusive": exclusive,
        "plugins": plugins,
        "default_text": default_text,
        "shortcuts": tuple(shortcuts),
        "scan_data": scan_data,
        "group": group,
    }
    if plugins is not None and default is _MISSING and default_factory is _MISSING:
        default_factory = dict
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def option_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of a dataclass declared with :func:`option` and at least one flag.

    A plugin-options field is left out: its flag is the prefix of its plugins' flags.
    """
    fields = dataclasses.fields(cls)
    return [f for f in fields if f.metadata.get("flags") and f.metadata.get("plugins") is None]


def option_choices(field: dataclasses.Field) -> tuple[str, ...] | None:
    """The allowed values of ``field`` now (a registry's names are read when asked)."""
    choices = field.metadata.get("choices")
    if choices is None or isinstance(choices, tuple):
        return choices
    names = choices.names if hasattr(choices, "names") else choices
    return tuple(names())


def format_number(value: float) -> str:
    """A bound as help and messages show it: ``1``, ``0.5``, ``1e+09``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e6:
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


# --- the kinds of value a field can hold, read once per class from its annotations -------------


@dataclasses.dataclass(frozen=True)
class FieldKind:
    """What a field's annotation allows.

    ``scalar`` is ``bool``, ``int``, ``float`` or ``str`` (``None``: not checked by type, as
    for a union such as ``int | str``); ``length`` is set for a ``tuple[...]`` of scalars
    (``-1``: any length); ``nested`` is an :class:`Options` subclass.
    """

    scalar: type | None
    optional: bool
    length: int | None = None
    nested: type | None = None


def _members(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _kind_of(hint: Any) -> FieldKind:
    members = _members(hint)
    optional = type(None) in members
    kinds = [m for m in members if m is not type(None)]
    if len(kinds) != 1:
        return FieldKind(None, optional)
    kind = kinds[0]
    if kind in (bool, int, float, str):
        return FieldKind(kind, optional)
    if isinstance(kind, type) and issubclass(kind, Options):
        return FieldKind(None, optional, nested=kind)
    if typing.get_origin(kind) is tuple:
        args = typing.get_args(kind)
        if len(args) == 2 and args[1] is Ellipsis and args[0] in (bool, int, float, str):
            return FieldKind(args[0], optional, length=-1)
        if args and all(a is args[0] for a in args) and args[0] in (bool, int, float, str):
            return FieldKind(args[0], optional, length=len(args))
    return FieldKind(None, optional)


@functools.cache
def field_kinds(cls: type) -> dict[str, FieldKind]:
    """``{field: FieldKind}`` of a dataclass, from its resolved annotations."""
    hints = typing.get_type_hints(cls)
    return {f.name: _kind_of(hints[f.name]) for f in dataclasses.fields(cls)}


def _scalar_rule(value: Any, kind: type, meta: Mapping[str, Any]) -> tuple[str | None, Any]:
    """``(rule broken or None, the value as stored)`` for one scalar."""
    if kind is bool:
        return (None, value) if isinstance(value, bool) else ("must be true or false", value)
    if kind is str:
        if meta.get("path") and isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str):
            return ("must be a file path" if meta.get("path") else "must be a text", value)
        return None, value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ("must be an integer" if kind is int else "must be a finite number"), value
    if kind is int and not isinstance(value, int):
        if not (isinstance(value, float) and value.is_integer()):
            return "must be an integer", value
        value = int(value)
    if kind is float:
        if not math.isfinite(value):
            return "must be a finite number", value
        value = float(value)
    low, high = meta.get("minimum"), meta.get("maximum")
    if low is not None:
        exclusive = meta.get("exclusive_minimum", False)
        if value < low or (exclusive and value == low):
            return f"must be {'>' if exclusive else '>='} {format_number(low)}", value
    if high is not None:
        exclusive = meta.get("exclusive_maximum", False)
        if value > high or (exclusive and value == high):
            return f"must be {'<' if exclusive else '<='} {format_number(high)}", value
    return None, value


@dataclasses.dataclass(frozen=True)
class Options:
    """Base of the package's options classes: validated on creation, from the declarations.

    Subclasses are frozen dataclasses with a ``section`` name (used in messages and
    configuration files) and fields declared by :func:`option` (or plain defaults, checked by
    type only); they override :meth:`check` for rules relating several fields.

    Examples
    --------
    >>> @dataclasses.dataclass(frozen=True)
    ... class Window(Options):
    ...     section = "window"
    ...     size: int = option(8, "pixels", minimum=1)
    ...     kind: str = option("disk", "shape", choices=("disk", "square"))
    >>> Window().updated({"size": 16}).to_dict()
    {'size': 16, 'kind': 'disk'}
    >>> Window(kind="star")
    Traceback (most recent call last):
    ...
    ValueError: window.kind = 'star': must be one of disk, square
    """

    section: ClassVar[str] = "options"

    def __post_init__(self) -> None:
        self.normalise()
        kinds = field_kinds(type(self))
        for field in dataclasses.fields(self):
            self._validate(field, kinds[field.name])
        self.check()

    def plugin_options(self, name: str, plugin: str) -> Options:
        """The options of ``plugin`` (registered in field ``name``'s registry) from that field.

        Raises
        ------
        ValueError
            An option the plugin does not take, or a value its options refuse.
        """
        field = next(f for f in dataclasses.fields(self) if f.name == name)
        options_class = plugin_options_class(field.metadata["plugins"].get(plugin))
        given = getattr(self, name)
        if options_class is None:
            if given:
                self.fail(name, f"the {plugin} {field.metadata['plugins'].kind} takes no options")
            return NoOptions()
        return options_class.from_dict(given, source=f"{self.section}.{name}")

    def normalise(self) -> None:
        """Map accepted spellings to the stored one, before validation (none by default).

        Runs on unvalidated values: an override must leave a value it does not know alone.
        """

    def check(self) -> None:
        """Rules relating several fields (raise through :meth:`fail`); none by default."""

    def fail(self, name: str, rule: str) -> NoReturn:
        """Raise the one message format: ``section.field = value: rule``."""
        raise ValueError(f"{self.section}.{name} = {getattr(self, name)!r}: {rule}")

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def _validate(self, field: dataclasses.Field, kind: FieldKind) -> None:
        name, value, meta = field.name, getattr(self, field.name), field.metadata
        if meta.get("plugins") is not None:
            if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
                self.fail(name, "must be a mapping of option names to values")
            self._set(name, dict(value))
            return
        if value is None:
            if kind.optional or (kind.scalar is None and kind.nested is None):
                return
            self.fail(name, "must be given (it has no None)")
        if kind.nested is not None:
            if isinstance(value, Mapping):
                self._set(name, kind.nested.from_dict(dict(value), source=f"{self.section}.{name}"))
            elif not isinstance(value, kind.nested):
                self.fail(name, f"must be a mapping of {kind.nested.section} options")
            return
        if kind.scalar is None:
            return
        choices = option_choices(field)
        if kind.length is not None:
            if isinstance(value, list):
                value = tuple(value)
            if not isinstance(value, tuple) or (kind.length >= 0 and len(value) != kind.length):
                count = "any number of" if kind.length < 0 else f"{kind.length}"
                self.fail(name, f"must be a list of {count} value(s)")
            stored = []
            for element in value:
                rule, element = _scalar_rule(element, kind.scalar, meta)
                if rule is None and choices is not None and element not in choices:
                    rule = f"must be one of {', '.join(choices)}"
                if rule is not None:
                    raise ValueError(f"{self.section}.{name} = {value!r}: each value {rule}")
                stored.append(element)
            self._set(name, tuple(stored))
            return
        rule, value = _scalar_rule(value, kind.scalar, meta)
        if rule is None and choices is not None and value not in choices:
            rule = f"must be one of {', '.join(choices)}"
        if rule is not None:
            self.fail(name, rule)
        self._set(name, value)

    # --- building, copying and recording ---------------------------------------------------

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, source: str = "configuration"):
        """Options from ``{field: value}`` (unknown keys refused, naming ``source``)."""
        cls._refuse_unknown(values, source)
        return cls(**dict(values))

    def updated(self, values: Mapping[str, Any], *, source: str = "configuration"):
        """A copy with ``values`` applied; a nested options field takes a mapping of its own."""
        self._refuse_unknown(values, source)
        kinds = field_kinds(type(self))
        changes = {}
        for key, value in values.items():
            current = getattr(self, key)
            if kinds[key].nested is not None and isinstance(value, Mapping) and isinstance(current, Options):
                value = current.updated(value, source=f"{source}: {self.section}.{key}")
            changes[key] = value
        return dataclasses.replace(self, **changes)

    def replace(self, **changes: Any):
        """A copy with ``changes`` (validated like a new object)."""
        return self.updated(changes, source=f"{self.section} options")

    def to_dict(self) -> dict[str, Any]:
        """``{field: value}`` with tuples as lists and nested options as mappings (YAML-ready)."""
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, Options):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[field.name] = value
        return out

    @classmethod
    def flag_values(cls, values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
        """The given (not None) values of this class's fields among flat ``values``.

        ``values`` maps a flag's destination to its value: a field's name, joined to the
        names of the nested options above it by ``__`` (``refinement__epochs``), after
        ``prefix``. Returns ``{field: value}``, nested options as mappings of their own.
        """
        out: dict[str, Any] = {}
        kinds = field_kinds(cls)
        for field in dataclasses.fields(cls):
            key = prefix + field.name
            nested = kinds[field.name].nested
            if nested is not None:
                given = nested.flag_values(values, key + "__")
                if given:
                    out[field.name] = given
            elif field.metadata.get("plugins") is not None:
                inner = {k[len(key) + 2 :]: v for k, v in values.items() if k.startswith(key + "__")}
                given = {k: v for k, v in inner.items() if v is not None}
                if given:
                    out[field.name] = given
            elif values.get(key) is not None:
                out[field.name] = values[key]
        return out

    @classmethod
    def from_flags(cls, values: Mapping[str, Any], prefix: str = ""):
        """Options from a command line's flat ``{destination: value}`` (None: not given).

        Fields not given keep their defaults; see :meth:`flag_values` for the destinations.
        """
        return cls.from_dict(cls.flag_values(values, prefix), source="command line")

    @classmethod
    def _refuse_unknown(cls, values: Any, source: str) -> None:
        if not isinstance(values, Mapping):
            kind = type(values).__name__
            raise ValueError(f"{source}: the {cls.section} options must be a mapping, not {kind}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(key) for key in values if key not in known)
        if unknown:
            raise ValueError(
                f"{source}: unknown field(s) {', '.join(unknown)} in section '{cls.section}' "
                f"(known: {', '.join(sorted(known))})"
            )


@dataclasses.dataclass(frozen=True)
class NoOptions(Options):
    """The options of a plugin that takes none."""

    section = "plugin"


def plugin_options_class(plugin: Any) -> type[Options] | None:
    """A plugin's ``options`` class (an :class:`Options` subclass), or None when it has none."""
    options_class = getattr(plugin, "options", None)
    if isinstance(options_class, type) and issubclass(options_class, Options):
        return None if options_class is NoOptions else options_class
    return None
