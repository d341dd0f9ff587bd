"""The generator contract, checked over every registered generator (torchvision's pattern).

A new generator file in ``src/ptychopinn/models/generators/`` is picked up here with no edit:
shapes for every allowed gridsize, gradients reaching every parameter, a bundle round trip and
determinism under a seed. Generator-specific behaviour follows.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptychopinn.config import GENERATOR_NAMES, ModelConfig, RunConfig
from ptychopinn.models import build_module
from ptychopinn.models.generators import (
    GENERATORS,
    Generator,
    build_generator,
    get_generator,
    list_generators,
    register_generator,
)
from ptychopinn.workflows import load_model_bundle, save_model_bundle

TINY = {"width": 4, "depth": 2, "modes": 4}


def _gridsizes(name: str) -> tuple[int, ...]:
    allowed = get_generator(name).gridsizes
    return (1, 2) if allowed is None else tuple(g for g in allowed if g <= 2) or allowed[:1]


def _size(name: str) -> int:
    return max(16, get_generator(name).size_multiple(ModelConfig(generator=name, **TINY)))


def _inputs(net: Generator, batch: int, gridsize: int, size: int) -> tuple[torch.Tensor, ...]:
    channels = gridsize**2
    x = torch.rand(batch, channels, size, size)
    grid = torch.arange(gridsize, dtype=torch.float64) * 4.0 - 2.0 * (gridsize - 1)
    offsets = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(1, channels, 2)
    c = torch.arange(size) - size // 2
    probe = torch.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / (size / 4) ** 2).to(torch.complex64)[None]
    return net.forward_arguments(x, offsets.repeat(batch, 1, 1), probe)


def test_the_registry_lists_every_generator_once_sorted():
    names = list_generators()
    assert names == tuple(sorted(names)) == tuple(GENERATORS) == GENERATOR_NAMES
    assert {"cnn", "fno", "hybrid", "region", "unrolled"} <= set(names)
    for name in names:
        assert issubclass(GENERATORS[name], Generator) and GENERATORS[name].name == name


def test_unknown_names_and_bad_registrations_are_clear_errors():
    with pytest.raises(ValueError, match="unknown generator 'unet'; choose from cnn, fno"):
        get_generator("unet")
    with pytest.raises(ValueError, match="model.generator = 'unet': must be one of cnn, fno"):
        ModelConfig(generator="unet")
    with pytest.raises(ValueError, match="taken by FNOGenerator"):
        register_generator("fno")(type("Other", (Generator,), {}))
    with pytest.raises(TypeError, match="not a subclass of Generator"):
        register_generator("plain")(torch.nn.Linear)
    with pytest.raises(ValueError, match="lower-case identifier"):
        register_generator("My-Net")(type("Mine", (Generator,), {}))
    assert "plain" not in GENERATORS and "My-Net" not in GENERATORS


@pytest.mark.parametrize("name", list_generators())
def test_shapes_for_every_allowed_gridsize(name):
    for gridsize in _gridsizes(name):
        size = _size(name)
        net = build_generator(ModelConfig(generator=name, **TINY), gridsize**2, size)
        out = net(*_inputs(net, 2, gridsize, size))
        assert out.shape == (2, gridsize**2, size, size) and out.dtype == torch.complex64
        assert torch.isfinite(torch.view_as_real(out)).all()


@pytest.mark.parametrize("name", list_generators())
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    gridsize = _gridsizes(name)[-1]
    size = _size(name)
    net = build_generator(ModelConfig(generator=name, **TINY), gridsize**2, size)
    # nudge zero-initialised layers so every parameter lies on a path with a gradient
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(1e-2 * torch.randn_like(parameter))
    out = net(*_inputs(net, 2, gridsize, size))
    weight = torch.randn(out.shape, dtype=torch.complex64)  # a loss that sees the phase too
    (out * weight).real.sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"{name}: no gradient reaches {missing}"


@pytest.mark.parametrize("name", list_generators())
def test_bundle_round_trip_gives_the_same_patches(name, tmp_path):
    torch.manual_seed(0)
    gridsize = _gridsizes(name)[-1]
    size = _size(name)
    config = RunConfig().updated({"model": {"generator": name, **TINY}, "data": {"gridsize": gridsize}})
    c = torch.arange(size) - size // 2
    probe = torch.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / (size / 4) ** 2).to(torch.complex64)[None]
    module = build_module(config, size=size, probe_modes=1, probe=probe).eval()
    save_model_bundle(module, tmp_path / "model.zip", config)
    loaded = load_model_bundle(tmp_path / "model.zip").module.eval()
    x = torch.rand(2, gridsize**2, size, size)
    offsets = _inputs(module.net.generator, 2, gridsize, size)
    offsets = offsets[1] if len(offsets) > 1 else torch.zeros(2, gridsize**2, 2, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.net.predict_patches(x, offsets), module.net.predict_patches(x, offsets), rtol=0, atol=0
        )


@pytest.mark.parametrize("name", list_generators())
def test_a_seed_fixes_the_initial_weights(name):
    def weights(seed: int) -> list[np.ndarray]:
        torch.manual_seed(seed)
        net = build_generator(ModelConfig(generator=name, **TINY), 1, _size(name))
        return [p.detach().numpy().copy() for p in net.parameters()]

    first, again, other = weights(3), weights(3), weights(4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_a_generator_defined_elsewhere_is_registered_and_built_by_name(tmp_path):
    """What a new file in the generators folder does, checked without leaving one behind."""

    @register_generator("testonly")
    class TestOnly(Generator):
        gridsizes = (1,)

        def __init__(self, channels, size, width=16, depth=3, modes=12, amplitude_max=2.0):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))

        def forward(self, x):
            return torch.polar(self.scale * x, torch.zeros_like(x))

    try:
        assert "testonly" in list_generators()
        net = build_module(RunConfig().updated({"model": {"generator": "testonly"}}), size=8, probe_modes=1)
        assert isinstance(net.net.generator, TestOnly)
        with pytest.raises(ValueError, match="takes gridsize 1, got 2"):
            build_generator(ModelConfig(generator="testonly"), 4, 8)
    finally:
        GENERATORS.unregister("testonly")


def test_spectral_layer_uses_both_signs_of_frequency():
    from ptychopinn.models.generators.layers import SpectralConv2d

    layer = SpectralConv2d(1, 1, modes=4)
    n = 32
    y = torch.arange(n, dtype=torch.float32)[:, None].expand(n, n)
    # a wave along rows with a negative frequency: -2 cycles per 32 pixels
    negative = torch.cos(2 * np.pi * (-2) * y / n + 0.3)[None, None]
    with torch.no_grad():
        layer.weight_pos.zero_()
    out = layer(negative)
    assert out.abs().max() > 1e-3  # the negative-row weights carry it
    with torch.no_grad():
        layer.weight_neg.zero_()
    assert layer(negative).abs().max() < 1e-6


def _square_offsets(step: float) -> torch.Tensor:
    return (
        torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]], dtype=torch.float64)[None]
        * step
        / 2
    )


def test_region_generator_patches_agree_where_they_overlap():
    torch.manual_seed(0)
    net = build_generator(ModelConfig(generator="region", width=4, depth=2, modes=6), 4, 32)
    with torch.no_grad():
        out = net(torch.rand(1, 4, 32, 32), _square_offsets(8.0))[0]
    # patch 0 sits 8 px up and left of patch 3: they share a 24 x 24 window of one region
    torch.testing.assert_close(out[0, 8:, 8:], out[3, :-8, :-8], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[0, :, 8:], out[1, :, :-8], atol=1e-5, rtol=1e-5)
    # the patches are not all the same picture (the offsets were used)
    assert (out[0] - out[3]).abs().max() > 1e-3


def test_region_generator_follows_its_patterns_when_they_are_reordered():
    torch.manual_seed(0)
    net = build_generator(ModelConfig(generator="region", width=4, depth=2, modes=6), 4, 32)
    x, offsets = torch.rand(1, 4, 32, 32), _square_offsets(6.0)
    order = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        out = net(x, offsets)
        reordered = net(x[:, order], offsets[:, order])
    torch.testing.assert_close(reordered, out[:, order], atol=1e-5, rtol=1e-5)
    # and a pattern moved elsewhere changes the answer: the geometry is an input
    moved = offsets.clone()
    moved[0, 3] += 4.0
    with torch.no_grad():
        assert (net(x, moved) - out).abs().max() > 1e-3


def test_unrolled_generator_starts_as_its_encoder_plus_plain_projection_steps():
    from ptychopinn.models.generators import FNOGenerator, UnrolledGenerator
    from ptychopinn.physics import (
        data_consistency_step,
        extract_patches,
        merge_patches,
        probe_weight,
        region_positions,
        region_size,
    )

    torch.manual_seed(0)
    net = UnrolledGenerator(4, 32, width=4, depth=2, modes=6, iterations=2)
    encoder = FNOGenerator(1, 32, width=4, depth=2, modes=6)
    encoder.load_state_dict(net.encoder.state_dict())  # an fno bundle's weights fit the encoder
    c = torch.arange(32) - 16
    probe = torch.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / 40.0).to(torch.complex64)[None]
    x, offsets = torch.rand(1, 4, 32, 32), _square_offsets(6.0)
    with torch.no_grad():
        out = net(x, offsets, probe)
        # the same computation by hand: merged guesses, two untrained steps (alpha = 1, R = 0)
        side = region_size(offsets, 32)
        guesses = encoder(x.reshape(4, 1, 32, 32)).reshape(1, 4, 32, 32)
        region, _ = merge_patches(guesses, offsets, probe_weight(probe), canvas_size=side)
        positions = region_positions(offsets, side)
        for _ in range(2):
            region = data_consistency_step(region, positions, probe, x, match_energy=True)
        expected = extract_patches(region, positions, 32)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # and the steps did something: the merged guesses alone are another answer
    assert (out - extract_patches(merge_patches(guesses, offsets, probe_weight(probe), canvas_size=side)[0],
                                  positions, 32)).abs().max() > 1e-3  # fmt: skip
