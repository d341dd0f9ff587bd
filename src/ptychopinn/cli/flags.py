"""Command-line flags built from the options declared on the options classes.

:func:`add_option_flags` turns every field declared with :func:`ptychopinn.options.option`
into a flag: its spellings, type (from the annotation), bounds, choices, number of values and
help (with the default read from the field). A nested options field adds the flags of its
class, under its name in the destination (``refinement__epochs``) and in a help section of its
own. Every default on the command line is None (= not given), so that defaults < a
``--config`` file < flags, and an options object is built from what the user gave
(:meth:`ptychopinn.options.Options.from_flags`). This module is the one place a flag is made
(``tests/test_architecture.py`` checks that).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Iterable

from ..workflows import field_kinds, format_number, option_choices, plugin_options_class


def help_with_default(field: dataclasses.Field) -> str:
    """The field's help followed by its default, read from the field (never repeated by hand)."""
    text = field.metadata.get("help", "")
    shown = field.metadata.get("default_text")
    if callable(shown):  # a text made when asked (from a registry's plugins)
        shown = shown()
    if shown is None and field.default is not dataclasses.MISSING and field.default is not None:
        value = field.default
        if isinstance(value, bool):
            shown = "on" if value else "off"
        elif isinstance(value, float):
            shown = f"{value:g}"
        elif isinstance(value, tuple):
            shown = " ".join(format_number(v) if isinstance(v, float) else str(v) for v in value)
        else:
            shown = str(value)
    if not shown:
        return text
    return f"{text} (default: {shown})" if " " in str(shown) else f"{text} (default {shown})"


def bounded(kind: type, minimum: float | None = None, exclusive: bool = False):
    """An argparse type: a number of ``kind`` (``int`` or ``float``, finite) at or above ``minimum``.

    Bounds above, and rules between fields, are the options class's to check: its message
    names the field (``refinement.new_mode_power = 2.0: must be < 1``).
    """
    noun = "an integer" if kind is int else "a number"
    rule = "" if minimum is None else f" {'>' if exclusive else '>='} {minimum:g}"

    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {noun}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if minimum is not None and (value < minimum or (exclusive and value == minimum)):
            raise argparse.ArgumentTypeError(f"must be{rule}, got {text}")
        return value

    parse.__name__ = f"{noun}{rule}"  # argparse names the type in its messages
    return parse


def add_option_flags(
    parser: argparse.ArgumentParser,
    options_class: type,
    *,
    section: str | None = None,
    scan_data: bool = True,
    help_overrides: dict[str, str] | None = None,
    choices: dict[str, tuple[str, ...]] | None = None,
    groups: dict[str, argparse._ArgumentGroup] | None = None,
    title: str | None = None,
) -> dict[str, argparse._ArgumentGroup]:
    """Add a flag for every option of ``options_class``; returns the argument groups by name.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    options_class : type
        A dataclass whose fields are declared with :func:`ptychopinn.options.option`.
    section : str, optional
        The destination prefix: each flag's dest is ``section__field`` (read back by
        :meth:`~ptychopinn.options.Options.from_flags`); None: the field's name.
    scan_data : bool
        False leaves out the options about scan files and grouping.
    help_overrides : dict, optional
        Field name -> help text, where a command means something more specific.
    choices : dict, optional
        Field name -> the allowed values, where a command allows fewer.
    groups : dict, optional
        Argument groups already made (shared between calls).
    title : str, optional
        The help section of flags without a ``group`` of their own (default: ``section``; None:
        the command's own options).
    """
    groups = {} if groups is None else groups
    title = section if title is None else title
    kinds = field_kinds(options_class)
    exclusive: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for field in dataclasses.fields(options_class):
        kind = kinds[field.name]
        dest = f"{section}__{field.name}" if section else field.name
        if kind.nested is not None:
            add_option_flags(
                parser, kind.nested, section=dest, scan_data=scan_data, help_overrides=help_overrides,
                choices=choices, groups=groups, title=field.metadata.get("group") or kind.nested.section,
            )  # fmt: skip
            continue
        meta = field.metadata
        if meta.get("plugins") is not None and meta.get("flags"):
            _add_plugin_flags(_target(parser, groups, meta["group"] or title), field, dest)
            continue
        if not (meta.get("flags") or meta.get("positional")) or (meta["scan_data"] and not scan_data):
            continue
        target = _target(parser, groups, meta["group"] or title)
        if meta.get("exclusive"):
            if meta["exclusive"] not in exclusive:
                required = any(
                    f.metadata.get("exclusive") == meta["exclusive"] and f.metadata.get("required")
                    for f in dataclasses.fields(options_class)
                )
                exclusive[meta["exclusive"]] = target.add_mutually_exclusive_group(required=required)
            target = exclusive[meta["exclusive"]]
        text = (help_overrides or {}).get(field.name) or help_with_default(field)
        _add_flag(target, field, kind, dest, text, (choices or {}).get(field.name) or option_choices(field))
    return groups


def _target(parser: argparse.ArgumentParser, groups: dict, name: str | None):
    if name is None:
        return parser
    if name not in groups:
        groups[name] = parser.add_argument_group(name)
    return groups[name]


def _add_plugin_flags(target, field: dataclasses.Field, dest: str) -> None:
    """Dotted flags for the options of every plugin of the field's registry.

    A field declared with ``flags=("--solver",)`` offers a plugin option ``--momentum`` as
    ``--solver.momentum`` (dest ``..._options__momentum``); an option several plugins take is
    one flag, its help naming them. Which plugin's options apply is the owner's choice, and
    the owner refuses one the chosen plugin does not take.
    """
    registry, prefix = field.metadata["plugins"], field.metadata["flags"][0]
    takers: dict[str, list[str]] = {}
    first: dict[str, tuple[dataclasses.Field, object]] = {}
    for name, plugin in registry.items():
        options_class = plugin_options_class(plugin)
        if options_class is None:
            continue
        kinds = field_kinds(options_class)
        for option in dataclasses.fields(options_class):
            if option.metadata.get("flags"):
                takers.setdefault(option.name, []).append(name)
                first.setdefault(option.name, (option, kinds[option.name]))
    for name, (option, kind) in first.items():
        flags = tuple(f"{prefix}.{flag.lstrip('-')}" for flag in option.metadata["flags"])
        text = f"{help_with_default(option)}; {registry.kind}: {', '.join(takers[name])}"
        _add_flag(target, option, kind, f"{dest}__{name}", text, option_choices(option), flags=flags)


def _add_flag(
    target, field: dataclasses.Field, kind, dest: str, text: str, allowed, flags: tuple[str, ...] = ()
) -> None:
    meta = field.metadata
    kwargs: dict = {"help": text}
    if kind.scalar is bool and kind.length is None:
        kwargs["action"] = argparse.BooleanOptionalAction
    else:
        if kind.scalar in (int, float):
            kwargs["type"] = bounded(kind.scalar, meta["minimum"], meta["exclusive_minimum"])
        if kind.length is not None:
            kwargs["nargs"] = "+" if kind.length < 0 else kind.length
        if allowed is not None:
            kwargs["choices"] = allowed
        else:
            kwargs["metavar"] = meta["metavar"] or field.name.upper()
    if meta.get("positional"):
        target.add_argument(dest, **kwargs)
        return
    kwargs.update(dest=dest, default=None)
    if meta.get("required") and not meta.get("exclusive"):
        kwargs["required"] = True
    target.add_argument(*(flags or meta["flags"]), **kwargs)
    for flags, value, shortcut_help in meta["shortcuts"]:
        target.add_argument(*flags, dest=dest, action="store_const", const=value, help=shortcut_help)


def given_values(args: argparse.Namespace, names: Iterable[str] | None = None) -> dict[str, object]:
    """``{field: value}`` of the flags without a section the user gave (not None)."""
    values = vars(args)
    names = values if names is None else names
    return {name: values[name] for name in names if "__" not in name and values.get(name) is not None}


def given_sections(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    """The ``{section: {field: value}}`` the user gave on the command line (nested deeper for a
    plugin's options: ``{"model": {"generator_options": {"gain": 2.0}}}``)."""
    overrides: dict[str, dict[str, object]] = {}
    for dest, value in vars(args).items():
        if "__" in dest and value is not None:
            *path, name = dest.split("__")
            level: dict = overrides
            for part in path:
                level = level.setdefault(part, {})
            level[name] = value
    return overrides
