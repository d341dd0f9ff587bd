"""Options declared once: flags, types, bounds and defaults come from the dataclass fields."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from ptychopinn.cli.flags import add_option_flags, given_sections, given_values, help_with_default
from ptychopinn.cli.main import build_parser
from ptychopinn.config import DataConfig, ExecutionConfig, ModelConfig, TrainingConfig
from ptychopinn.options import option, option_fields
from ptychopinn.simulate import SimulationConfig


def _subparser(name: str) -> argparse.ArgumentParser:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


@pytest.mark.parametrize(
    ("command", "section", "options"),
    [("train", "data", DataConfig), ("train", "model", ModelConfig), ("train", "training", TrainingConfig),
     ("train", "execution", ExecutionConfig), ("simulate", None, SimulationConfig)],
)  # fmt: skip
def test_every_declared_option_is_a_flag_with_the_field_default_in_its_help(command, section, options):
    parser = _subparser(command)
    by_flag = {flag: action for action in parser._actions for flag in action.option_strings}
    for field in option_fields(options):
        for flag in field.metadata["flags"]:
            action = by_flag[flag]
            assert action.dest == (f"{section}__{field.name}" if section else field.name)
            assert action.default is None  # not given: the field's default applies
        assert by_flag[field.metadata["flags"][0]].help == help_with_default(field)


def test_a_new_field_becomes_a_flag_with_its_type_bound_and_default():
    @dataclasses.dataclass(frozen=True)
    class Mine:
        steps: int = option(5, "how many steps", flags=("--steps",), minimum=1)
        rate: float = option(0.5, "a rate", flags=("--rate",), minimum=0.0, exclusive_minimum=True)
        fast: bool = option(False, "go fast", flags=("--fast",))
        hidden: int = 3  # no flags: not on the command line

    parser = argparse.ArgumentParser()
    add_option_flags(parser, Mine, section="mine")
    text = parser.format_help()
    assert "how many steps (default 5)" in text and "go fast (default off)" in text
    assert "--hidden" not in text
    args = parser.parse_args(["--steps", "7", "--fast"])
    assert given_sections(args) == {"mine": {"steps": 7, "fast": True}}
    assert Mine(**given_sections(args)["mine"]) == Mine(steps=7, fast=True)
    with pytest.raises(SystemExit):
        parser.parse_args(["--steps", "0"])  # below the declared minimum
    with pytest.raises(SystemExit):
        parser.parse_args(["--rate", "0"])  # the bound is exclusive


def test_simulate_flags_build_the_config_from_what_was_given():
    args = _subparser("simulate").parse_args(["--output", "x.npz", "--step", "4", "--no-noise"])
    names = [f.name for f in option_fields(SimulationConfig)]
    assert given_values(args, names) == {"step_px": 4.0, "noise": False}
    assert SimulationConfig(**given_values(args, names)) == SimulationConfig(step_px=4.0, noise=False)
