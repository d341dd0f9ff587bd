"""Options declared once: a dataclass field carries its help, flag spellings and bounds.

Configuration sections (:mod:`ptychopinn.config`, the simulator's
:class:`~ptychopinn.simulate.SimulationConfig`) declare each field with :func:`option`; the
command line builds its flags from these declarations (``ptychopinn.cli.flags``), so a new
field needs no CLI edit, and help shows the default from the field itself (pty-chi's options
classes and Lightning's typed signatures are the models).

This module depends on nothing else in the package.
"""

from __future__ import annotations

import dataclasses
from typing import Any

_MISSING = dataclasses.MISSING


def option(
    default: Any = _MISSING,
    help: str = "",  # noqa: A002 - argparse's word
    *,
    flags: tuple[str, ...] = (),
    metavar: str | None = None,
    choices: tuple[str, ...] | None = None,
    minimum: float | None = None,
    exclusive_minimum: bool = False,
    default_text: str | None = None,
    shortcuts: tuple[tuple[tuple[str, ...], Any, str], ...] = (),
    scan_data: bool = False,
    group: str | None = None,
    default_factory: Any = _MISSING,
) -> Any:
    """A dataclass field with what a command line needs to offer it.

    Parameters
    ----------
    default : object
        The field's default (shown in help unless ``default_text`` says it better).
    help : str
        One line: what the value means, with its unit.
    flags : tuple of str
        Spellings on the command line, the preferred first; none: not a flag.
    metavar, choices :
        As for :meth:`argparse.ArgumentParser.add_argument`.
    minimum, exclusive_minimum :
        Lower bound of a number (a flag's type refuses less; the dataclass validates too).
    default_text : str, optional
        How help states the default (``"one per position"`` for None).
    shortcuts : tuple of (flags, value, help)
        Extra flags setting this field to a fixed value (``--disable-mlflow``: logger none).
    scan_data : bool
        About scan files or grouping: left out of commands without scan files (``pretrain``).
    group : str, optional
        The help section listing the flag (default: the configuration section's name).
    """
    metadata = {
        "help": help,
        "flags": tuple(flags),
        "metavar": metavar,
        "choices": None if choices is None else tuple(choices),
        "minimum": minimum,
        "exclusive_minimum": exclusive_minimum,
        "default_text": default_text,
        "shortcuts": tuple(shortcuts),
        "scan_data": scan_data,
        "group": group,
    }
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def option_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of a dataclass declared with :func:`option` and at least one flag."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("flags")]


def help_with_default(field: dataclasses.Field) -> str:
    """The field's help followed by its default, read from the field (never repeated by hand)."""
    text = field.metadata.get("help", "")
    shown = field.metadata.get("default_text")
    if shown is None and field.default is not _MISSING and field.default is not None:
        value = field.default
        if isinstance(value, bool):
            shown = "on" if value else "off"
        elif isinstance(value, float):
            shown = f"{value:g}"
        else:
            shown = str(value)
    return f"{text} (default {shown})" if shown else text
