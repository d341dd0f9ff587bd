"""``ptychopinn``: command-line entry point with one subcommand per job.

This module builds one parser per command of the table in :mod:`~ptychopinn.cli.commands`
(flags from the command's options classes, :mod:`~ptychopinn.cli.flags`) and turns every
error into one line. Exit codes: 0 success;
1 a failure while running; 2 bad input (file, key, value or flag); 3 training stopped by
SIGINT/SIGTERM after saving a checkpoint (continue with ``--resume last``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
import warnings
from collections.abc import Sequence

from .. import __version__
from ..workflows import BundleError, ScanFileError, ScanValidationError, quiet_lightning
from .commands import COMMANDS, EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_INTERRUPTED, Command
from .flags import add_option_flags, given_sections

#: ``{section: {field: value}}`` of the flags given (kept under its former name)
train_overrides = given_sections
__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILURE", "EXIT_INTERRUPTED", "build_parser", "main", "train_overrides"]


def build_parser() -> argparse.ArgumentParser:
    """The ``ptychopinn`` parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="ptychopinn",
        description="Physics-informed neural network for ptychographic reconstruction.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        add_command(sub, command)
    return parser


def add_command(sub: argparse._SubParsersAction, command: Command) -> argparse.ArgumentParser:
    """The parser of one command: the flags of each of its options classes."""
    parser = sub.add_parser(command.name, help=command.help, description=command.description)
    groups: dict = {}
    for options in command.options:
        add_option_flags(
            parser, options, scan_data=command.scan_data, help_overrides=dict(command.help_overrides),
            groups=groups,
        )  # fmt: skip
    return parser


class _StderrHandler(logging.Handler):
    """Writes to the *current* ``sys.stderr`` (which tests and notebooks may swap)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr)


def _show_package_log() -> None:
    """Show the package's info messages (what a reader found in a file, ...) on stderr."""
    logger = logging.getLogger("ptychopinn")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
        logger.setLevel(logging.INFO)


def _show_note(message, category, filename, lineno, file=None, line=None) -> None:
    kind = "note" if issubclass(category, UserWarning) else category.__name__
    print(f"{kind}: {message}", file=sys.stderr)


_WRITES_A_FOLDER = tuple(command.name for command in COMMANDS if command.writes_folder)
_BY_NAME = {command.name: command for command in COMMANDS}
_BAD_INPUT = (ScanFileError, ScanValidationError, BundleError, ValueError, RecursionError)


def _finish_parser(parser: argparse.ArgumentParser) -> None:
    """No abbreviated flags (``--device`` must not become ``--devices``); ``--debug`` everywhere."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                command.allow_abbrev = False
                if name in _WRITES_A_FOLDER:
                    command.add_argument(
                        "--overwrite",
                        action="store_true",
                        help="replace the outputs of an earlier run in --output-dir (removed first; "
                        "inputs are never written). Without it a used folder is refused",
                    )
                command.add_argument(
                    "--debug", action="store_true", help="show the full traceback when a command fails"
                )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every error is one line on stderr naming what is wrong.

    Exit status 0 on success, 2 for bad input (file, key, value or flag), 1 for a failure
    while running (disk full, device error, ...), 3 when a signal stopped training early.
    ``--debug`` adds the traceback.
    """
    parser = build_parser()
    _finish_parser(parser)
    args = parser.parse_args(argv)
    _show_package_log()
    try:
        with warnings.catch_warnings(), quiet_lightning():
            # the package's notes (what a reader detected, masked, calibrated) as one line each
            warnings.showwarning = _show_note
            values = {"overwrite": False, **vars(args)}
            return _BY_NAME[args.command].run(values)
    except KeyboardInterrupt:
        print(f"ptychopinn {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001  (the one place every error becomes a message)
        bad_input = isinstance(exc, _BAD_INPUT)
        if args.debug:
            traceback.print_exc()
        kind = "error" if bad_input else f"failed ({type(exc).__name__})"
        message = str(exc) or type(exc).__name__
        if isinstance(exc, RecursionError):
            message = "input nested too deeply to read"
        if not bad_input:
            message = message.strip().splitlines()[0]
        print(f"ptychopinn {args.command}: {kind}: {message}", file=sys.stderr)
        if not bad_input and not args.debug:
            print(f"ptychopinn {args.command}: run again with --debug for the traceback", file=sys.stderr)
        return EXIT_BAD_INPUT if bad_input else EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
