"""Command-line flags built from the options declared on the configuration dataclasses.

:func:`add_option_flags` turns every field declared with :func:`ptychopinn.options.option`
into a flag: its spellings, type (from the annotation), bounds, choices and help (with the
default read from the field). Every default on the command line is None (= not given), so
that defaults < a ``--config`` file < flags, and a configuration object is built from what
the user gave (:func:`given_values`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from collections.abc import Iterable

from ..workflows import help_with_default, option_fields


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    value = _number(text, float)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite positive number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    value = _number(text, float)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def int_at_least(minimum: int):
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        value = _number(text, int)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def _number(text: str, kind: type) -> float | int:
    try:
        return kind(text)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"'{text}' is not {noun}") from None


def _value_type(field: dataclasses.Field, owner: type) -> type:
    """int, float, bool or str: the field's annotation without None."""
    hint = typing.get_type_hints(owner)[field.name]
    kinds = [k for k in typing.get_args(hint) or (hint,) if k is not type(None)]
    if len(kinds) == 1 and kinds[0] in (bool, int, float):
        return kinds[0]
    return str  # a text, or a union parsed by the configuration (devices: auto, 2, 0,1)


def _argparse_type(kind: type, minimum: float | None, exclusive: bool):
    if kind is int:
        return int if minimum is None else int_at_least(int(minimum) + (1 if exclusive else 0))
    if kind is float:
        if minimum == 0 and exclusive:
            return positive_float
        if minimum == 0:
            return non_negative_float
        return float
    return None


def add_option_flags(
    parser: argparse.ArgumentParser,
    config_class: type,
    *,
    section: str | None = None,
    scan_data: bool = True,
    help_overrides: dict[str, str] | None = None,
    choices: dict[str, tuple[str, ...]] | None = None,
    groups: dict[str, argparse._ArgumentGroup] | None = None,
) -> dict[str, argparse._ArgumentGroup]:
    """Add a flag for every option of ``config_class``; returns the argument groups by name.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    config_class : type
        A dataclass whose fields are declared with :func:`ptychopinn.options.option`.
    section : str, optional
        The configuration section (``data``, ``model``, ...): each flag's dest is
        ``section__field`` (read back by :func:`given_values`) and the flags are listed under
        it; None: the dest is the field's name.
    scan_data : bool
        False leaves out the options about scan files and grouping.
    help_overrides : dict, optional
        Field name -> help text, where a command means something more specific.
    choices : dict, optional
        Field name -> the allowed values, where they come from a registry (generators).
    groups : dict, optional
        Argument groups already made (shared between calls).
    """
    groups = {} if groups is None else groups
    for field in option_fields(config_class):
        meta = field.metadata
        if meta["scan_data"] and not scan_data:
            continue
        name = meta["group"] or section
        if name is None:
            target = parser
        else:
            if name not in groups:
                groups[name] = parser.add_argument_group(name)
            target = groups[name]
        dest = f"{section}__{field.name}" if section else field.name
        kind = _value_type(field, config_class)
        text = (help_overrides or {}).get(field.name) or help_with_default(field)
        kwargs: dict = {"dest": dest, "default": None, "help": text}
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            value_type = _argparse_type(kind, meta["minimum"], meta["exclusive_minimum"])
            if value_type is not None:
                kwargs["type"] = value_type
            allowed = (choices or {}).get(field.name, meta["choices"])
            if allowed is not None:
                kwargs["choices"] = allowed
            else:
                kwargs["metavar"] = meta["metavar"] or field.name.upper()
        target.add_argument(*meta["flags"], **kwargs)
        for flags, value, shortcut_help in meta["shortcuts"]:
            target.add_argument(*flags, dest=dest, action="store_const", const=value, help=shortcut_help)
    return groups


def given_values(args: argparse.Namespace, names: Iterable[str] | None = None) -> dict[str, object]:
    """``{field: value}`` of the flags without a section the user gave (not None)."""
    values = vars(args)
    names = values if names is None else names
    return {name: values[name] for name in names if "__" not in name and values.get(name) is not None}


def given_sections(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    """The ``{section: {field: value}}`` the user gave on the command line."""
    overrides: dict[str, dict[str, object]] = {}
    for dest, value in vars(args).items():
        if "__" in dest and value is not None:
            section, name = dest.split("__", 1)
            overrides.setdefault(section, {})[name] = value
    return overrides
