"""Adding a plugin is one file: a generator, a solver or a scan format with an option of its own.

Each test writes the plugin as a module in ``tmp_path``, imports it (what a new file in the
plugins' folder gets from the registry's discovery), and checks through the package's public
doors that it is registered, offered as a choice, shown in ``--help``, validated and recorded.
``test_discovery_imports_every_module_of_the_package`` checks the discovery itself.
"""

from __future__ import annotations

import importlib
import json
import sys
import textwrap

import numpy as np
import pytest

from ptychopinn.cli.main import main
from ptychopinn.config import ModelConfig, RunConfig
from ptychopinn.io import detect_format, inspect_file, read_scan, write_scan
from ptychopinn.models import build_module
from ptychopinn.refine import RefinementConfig
from ptychopinn.registry import FORWARD_MODELS, GENERATORS, SCAN_FORMATS, SOLVERS, Registry
from ptychopinn.simulate import SimulationConfig, simulate_scan
from ptychopinn.workflows import load_model_bundle, save_model_bundle


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """``plugin(name, source)`` imports ``source`` as module ``name``; unregistered after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    made = []

    def write(name: str, source: str, registry: Registry, registered: str):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        made.append((name, registry, registered))
        return importlib.import_module(name)

    yield write
    for name, registry, registered in made:
        registry.unregister(registered)
        sys.modules.pop(name, None)


def _help(command: str, capsys) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return capsys.readouterr().out


SOLVER = """
    from dataclasses import dataclass

    import torch

    from ptychopinn.options import Options, option
    from ptychopinn.refine.solvers import Solver, register_solver

    SEEN = []


    @dataclass(frozen=True)
    class DampedOptions(Options):
        section = "damped"
        damping: float = option(0.5, "share of each step taken", flags=("--damping",), minimum=0.0,
                                maximum=1.0, exclusive_minimum=True)


    @register_solver("damped")
    class DampedSolver(Solver):
        '''Minibatch gradient steps on the object, each shortened by the damping.'''

        defaults = {"learning_rate": 0.01, "batch_size": 16, "loss": "poisson", "probe_start_epoch": 0}
        options = DampedOptions

        def run_epoch(self, epoch, over_budget):
            SEEN.append(self.settings.damping)
            total = 0.0
            for index in self.batches():
                loss = self.problem.batch_loss(index)
                (grad,) = torch.autograd.grad(loss, self.problem.object_real)
                with torch.no_grad():
                    self.problem.object_real -= self.settings.damping * self.config.learning_rate * grad
                total += float(loss) * len(index)
            return total / self.problem.n, False
"""


def test_a_solver_with_an_option_of_its_own_is_one_file(plugin, tmp_path, capsys):
    module = plugin("damped_solver", SOLVER, SOLVERS, "damped")
    assert "damped" in SOLVERS.names()
    chosen = RefinementConfig(optimizer="damped", solver_options={"damping": 0.25})
    assert chosen.solver_settings().damping == 0.25
    with pytest.raises(ValueError, match="damped.damping = 2.0: must be <= 1"):
        RefinementConfig(optimizer="damped", solver_options={"damping": 2.0})
    with pytest.raises(ValueError, match="lbfgs solver takes no options"):
        RefinementConfig(optimizer="lbfgs", solver_options={"damping": 0.25})
    text = _help("reconstruct", capsys)
    assert "damped" in text and "--solver.damping" in text and "share of each step taken" in text

    scan = simulate_scan(SimulationConfig(pattern_size=16, n_positions=16, step_px=3.0, seed=2))
    write_scan(scan, tmp_path / "scan.npz")
    code = main(["reconstruct", str(tmp_path / "scan.npz"), "--output-dir", str(tmp_path / "out"),
                 "--optimizer", "damped", "--solver.damping", "0.3", "--epochs", "3", "--no-pretrained",
                 "--accelerator", "cpu", "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert module.SEEN == [0.3, 0.3, 0.3]
    record = json.loads((tmp_path / "out" / "reconstruct.json").read_text())
    assert record["refinement"]["optimizer"] == "damped"
    assert record["refinement"]["solver_options"] == {"damping": 0.3}
    # the chosen solver is asked: another solver's option is refused before any work
    code = main(["reconstruct", str(tmp_path / "scan.npz"), "--output-dir", str(tmp_path / "no"),
                 "--optimizer", "adam", "--solver.damping", "0.3"])  # fmt: skip
    assert code == 2 and "adam solver takes no options" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


GENERATOR = """
    from dataclasses import dataclass

    import torch

    from ptychopinn.models.generators import Generator, register_generator
    from ptychopinn.options import Options, option


    @dataclass(frozen=True)
    class GainOptions(Options):
        section = "gain"
        gain: float = option(1.0, "amplitude gain", flags=("--gain",), minimum=0.0, exclusive_minimum=True)


    @register_generator("gain")
    class GainGenerator(Generator):
        '''The amplitude times a learned scale times the gain, phase zero.'''

        gridsizes = (1,)
        options = GainOptions

        def __init__(self, channels, size, width=16, depth=3, modes=12, amplitude_max=2.0, gain=1.0):
            super().__init__()
            self.gain = gain
            self.scale = torch.nn.Parameter(torch.ones(()))

        def forward(self, x):
            return torch.polar(self.gain * self.scale * x, torch.zeros_like(x))
"""


def test_a_generator_with_an_option_of_its_own_is_one_file(plugin, tmp_path, capsys):
    plugin("gain_generator", GENERATOR, GENERATORS, "gain")
    assert "gain" in GENERATORS.names()
    assert ModelConfig(generator="gain").plugin_options("generator_options", "gain").gain == 1.0
    with pytest.raises(ValueError, match="gain.gain = -1.0: must be > 0"):
        ModelConfig(generator="gain", generator_options={"gain": -1.0})
    with pytest.raises(ValueError, match="fno generator takes no options"):
        ModelConfig(generator="fno", generator_options={"gain": 2.0})
    text = _help("train", capsys)
    assert "--generator.gain" in text and "{cnn,fno,gain,hybrid,region,unrolled}" in text

    config = RunConfig().updated({"model": {"generator": "gain", "generator_options": {"gain": 3.0}}})
    module = build_module(config, size=8, probe_modes=1)
    assert module.net.generator.gain == 3.0
    save_model_bundle(module, tmp_path / "model.zip", config)
    loaded = load_model_bundle(tmp_path / "model.zip")
    assert loaded.config.model.generator_options == {"gain": 3.0}  # recorded in the bundle
    assert loaded.module.net.generator.gain == 3.0
    # and from the command line, into the run's recorded configuration
    args = ["train", "--output-dir", str(tmp_path / "run"), "--generator", "gain", "--generator.gain", "2"]
    from ptychopinn.cli.main import build_parser, train_overrides

    given = train_overrides(build_parser().parse_args(args))
    assert given["model"] == {"generator": "gain", "generator_options": {"gain": 2.0}}


FORMAT = """
    import numpy as np

    from ptychopinn.io import Scan, ScanFormat, register_format

    MAGIC = b"TOYSCAN1"


    def read_toy(path, *, photons_per_pattern=None):
        with open(path, "rb") as handle:
            handle.read(len(MAGIC))
            with np.load(handle) as stored:
                arrays = dict(stored)
            counts = arrays["counts"]
        if photons_per_pattern is not None:
            counts = counts * (photons_per_pattern / counts.sum(axis=(1, 2)).mean())
        return Scan(diffraction=counts, positions=arrays["positions"], probe=arrays["probe"], source=path)


    register_format(ScanFormat(
        name="toy", description="a one-file test format", detect=lambda path, head: head == MAGIC,
        read=read_toy, contents=lambda path: [("counts", (), "toy")], order=40,
        options=("photons_per_pattern",),
    ))
"""


def test_a_format_with_a_read_option_of_its_own_is_one_file(plugin, tmp_path):
    module = plugin("toy_format", FORMAT, SCAN_FORMATS, "toy")
    scan = simulate_scan(SimulationConfig(pattern_size=16, n_positions=9, step_px=3.0, seed=3))
    path = tmp_path / "scan.toy"
    with open(path, "wb") as handle:
        handle.write(module.MAGIC)
        np.savez(handle, counts=scan.get_patterns(), positions=scan.positions, probe=scan.probe)
    assert detect_format(path) == "toy" and "toy" in SCAN_FORMATS.names()
    assert read_scan(path).n_patterns == 9
    scaled = read_scan(path, photons_per_pattern=10.0)  # the option it takes reaches its reader
    np.testing.assert_allclose(scaled.get_patterns().sum(axis=(1, 2)).mean(), 10.0, rtol=1e-5)
    with pytest.raises(ValueError, match="toy files take no links_within_folder"):
        read_scan(path, links_within_folder=True)  # an option it does not take is refused
    assert inspect_file(path).format == "toy"
    npz = tmp_path / "scan.npz"
    write_scan(scan, npz)
    cxi = tmp_path / "scan.cxi"
    write_scan(scan, cxi)
    with pytest.raises(ValueError, match="cxi files take no photons_per_pattern"):
        read_scan(cxi, photons_per_pattern=10.0)  # --nphotons on a CXI file says so
    with pytest.raises(ValueError, match="unknown read option"):
        module.ScanFormat("bad", "", lambda p, h: False, module.read_toy, lambda p: [], options=("colour",))


def test_discovery_imports_every_module_of_the_package(tmp_path, monkeypatch):
    package = tmp_path / "toyplugins"
    package.mkdir()
    (package / "__init__.py").write_text("")
    registry = Registry("shape", "toyplugins")
    monkeypatch.setitem(sys.modules, "toy_registry", type(sys)("toy_registry"))
    sys.modules["toy_registry"].REGISTRY = registry
    for name in ("disk", "square"):
        (package / f"{name}.py").write_text(
            f"from toy_registry import REGISTRY\n\n@REGISTRY.register('{name}')\nclass Shape:\n    pass\n"
        )
    (package / "_private.py").write_text("raise AssertionError('not a plugin: never imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert registry.names() == ("disk", "square")  # found without importing them by hand
        assert registry.get("disk").name == "disk"
        with pytest.raises(ValueError, match="unknown shape 'star'; choose from disk, square"):
            registry.get("star")
        with pytest.raises(ValueError, match="taken by"):
            registry.register("disk", type("Other", (), {}))
    finally:
        for name in ("toyplugins", "toyplugins.disk", "toyplugins.square"):
            sys.modules.pop(name, None)


ALL_REGISTRIES = [GENERATORS, SOLVERS, SCAN_FORMATS, FORWARD_MODELS]


@pytest.mark.parametrize("registry", ALL_REGISTRIES, ids=lambda r: r.kind)
def test_every_registry_finds_its_plugins_by_itself(registry):
    """A fresh interpreter asks each registry for its names before importing any plugin."""
    import subprocess

    code = (
        "from ptychopinn.registry import REGISTRIES; import sys; "
        f"names = REGISTRIES[{registry.kind!r}].names(); "
        "print(','.join(names))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert tuple(done.stdout.strip().split(",")) == registry.names()


FORWARD_MODEL = """
    from dataclasses import dataclass

    from ptychopinn.options import Options, option
    from ptychopinn.physics import far_field, far_field_inverse
    from ptychopinn.physics.forward_models import ForwardModel, register_forward_model


    @dataclass(frozen=True)
    class FilteredOptions(Options):
        section = "filtered"
        transmission: float = option(1.0, "amplitude transmission of a filter before the detector",
                                     flags=("--transmission",), minimum=0.0, maximum=1.0,
                                     exclusive_minimum=True)


    @register_forward_model("filtered")
    class Filtered(ForwardModel):
        # the far field through a grey filter: counts times transmission squared
        options = FilteredOptions
        unitary = False

        def propagate(self, waves):
            return self.settings.transmission * far_field(waves)

        def adjoint(self, waves):
            return self.settings.transmission * far_field_inverse(waves)
"""


def test_a_forward_model_with_an_option_of_its_own_is_one_file(plugin, tmp_path, capsys):
    plugin("filtered_model", FORWARD_MODEL, FORWARD_MODELS, "filtered")
    assert "filtered" in FORWARD_MODELS.names()
    chosen = RefinementConfig(forward_model="filtered", forward_model_options={"transmission": 0.5})
    assert chosen.forward_settings().transmission == 0.5
    with pytest.raises(ValueError, match="filtered.transmission = 0.0: must be > 0"):
        RefinementConfig(forward_model="filtered", forward_model_options={"transmission": 0.0})
    text = _help("reconstruct", capsys)
    assert "--forward-model.transmission" in text and "filtered" in text
    scan = simulate_scan(SimulationConfig(pattern_size=16, n_positions=16, step_px=3.0, seed=4))
    write_scan(scan, tmp_path / "scan.npz")
    code = main(["reconstruct", str(tmp_path / "scan.npz"), "--output-dir", str(tmp_path / "out"),
                 "--forward-model", "filtered", "--forward-model.transmission", "0.5", "--epochs", "2",
                 "--no-pretrained", "--accelerator", "cpu", "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "out" / "reconstruct.json").read_text())
    assert record["refinement"]["forward_model_options"] == {"transmission": 0.5}
    assert record["forward_model"] == {"name": "filtered", "transmission": 0.5}
