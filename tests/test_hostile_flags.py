"""Every flag of every command with hostile values (issue 15, finding 8): exit 2, one line, no traceback.

Generated from the parser itself, so a new flag is covered when it is added. Inputs are
missing files (or, for ``simulate``, an output with an unknown suffix), so a value that is
valid ends in a clear "no such file" (or "suffix") error instead of starting real work.
"""

from __future__ import annotations

import argparse

import pytest

from ptychopinn.cli.main import _finish_parser, build_parser, main

HOSTILE = ["-1", "0", "nan", "inf", "-inf", "1e400", "abc", "", "1e9", "3.5", "[1]", "-0", "0x10"]
#: Each command with arguments that make any valid flag value end in a clear error, fast.
BASES = {
    "simulate": ["--output", "out.txt"],
    "train": ["--train-data", "/nonexistent/scan.npz", "--output-dir", "never"],
    "infer": [
        "--model",
        "/nonexistent/model.zip",
        "--data",
        "/nonexistent/scan.npz",
        "--output-dir",
        "never",
    ],
    "reconstruct": ["/nonexistent/scan.npz", "--output-dir", "never"],
    "evaluate": [
        "--reconstruction",
        "/nonexistent/r.npz",
        "--data",
        "/nonexistent/s.npz",
        "--output-dir",
        "never",
    ],
}


def _valued_flags(command: str) -> list[str]:
    parser = build_parser()
    _finish_parser(parser)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    flags = []
    for action in sub._actions:
        if not action.option_strings or action.nargs == 0 or action.dest in ("help", "output_dir", "output"):
            continue
        if any(flag in BASES[command] for flag in action.option_strings):
            continue
        flags.append(max(action.option_strings, key=len))
    return flags


CASES = [(command, flag, value) for command in BASES for flag in _valued_flags(command) for value in HOSTILE]


@pytest.mark.parametrize("command, flag, value", CASES)
def test_a_hostile_flag_value_is_one_clear_line(tmp_path, monkeypatch, capsys, command, flag, value):
    monkeypatch.chdir(tmp_path)
    try:
        code = main([command, *BASES[command], f"{flag}={value}"])
    except SystemExit as exc:  # argparse: usage and one "error:" line
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1, err
    assert not (tmp_path / "never").exists() and not (tmp_path / "out.txt").exists()


def test_the_suite_is_large():
    assert len(CASES) >= 1000
