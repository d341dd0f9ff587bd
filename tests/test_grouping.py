"""Grouping positions into solution regions; generator output shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptychopinn.config import GENERATOR_NAMES, ModelConfig
from ptychopinn.data import group_positions, split_positions
from ptychopinn.models.generators import GENERATORS, build_generator


def scattered_positions(n=200, seed=0):
    return np.random.default_rng(seed).uniform(0, 100, size=(n, 2))


def test_groups_are_reproducible_under_a_seed_and_differ_across_seeds():
    positions = scattered_positions()
    a = group_positions(positions, gridsize=2, seed=5)
    b = group_positions(positions, gridsize=2, seed=5)
    c = group_positions(positions, gridsize=2, seed=6)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.offsets, b.offsets)
    assert not np.array_equal(a.indices, c.indices)


@pytest.mark.parametrize("gridsize", [2, 3])
def test_group_members_are_among_the_k_nearest_neighbours_of_the_seed(gridsize):
    positions = scattered_positions()
    k = 2 * gridsize**2 - 1
    groups = group_positions(positions, gridsize=gridsize, k_neighbors=k, seed=1)
    assert groups.indices.shape == (200, gridsize**2)
    distances = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    nearest = np.argsort(distances, axis=1)[:, 1 : k + 1]  # brute force, no KD-tree
    for members in groups.indices:
        seed, partners = members[0], members[1:]
        assert len(set(members)) == len(members)  # no repeated pattern
        assert set(partners) <= set(nearest[seed])


def test_offsets_are_relative_to_the_centroid():
    positions = scattered_positions()
    groups = group_positions(positions, gridsize=2, n_groups=50, seed=2)
    np.testing.assert_allclose(groups.offsets.sum(axis=1), 0, atol=1e-9)
    np.testing.assert_allclose(positions[groups.indices], groups.centroids[:, None] + groups.offsets)


def test_more_groups_than_positions_draw_new_neighbour_sets():
    positions = scattered_positions(30)
    groups = group_positions(positions, gridsize=2, n_groups=90, seed=3)
    assert len(groups) == 90
    assert np.bincount(groups.indices[:, 0], minlength=30).tolist() == [3] * 30
    assert len({tuple(sorted(g)) for g in groups.indices}) > 40


def test_gridsize_one_and_edge_cases():
    positions = scattered_positions(10)
    single = group_positions(positions)
    np.testing.assert_array_equal(single.indices[:, 0], np.arange(10))
    np.testing.assert_array_equal(single.offsets, 0)
    assert len(group_positions(positions, n_groups=4, seed=0)) == 4
    with pytest.raises(ValueError, match="at least C = 9"):
        group_positions(positions[:5], gridsize=3)
    with pytest.raises(ValueError, match="k_neighbors"):
        group_positions(positions, gridsize=2, k_neighbors=2)
    with pytest.raises(ValueError, match="non-finite"):
        group_positions(np.full((4, 2), np.nan))


def test_split_is_seeded_and_disjoint():
    train, val = split_positions(100, 0.2, seed=1)
    assert len(val) == 20 and len(train) == 80 and not set(train) & set(val)
    np.testing.assert_array_equal(val, split_positions(100, 0.2, seed=1)[1])
    assert split_positions(10, 0.0, 0)[1].size == 0


def test_registry_matches_the_config_names():
    assert tuple(GENERATORS) == GENERATOR_NAMES


@pytest.mark.parametrize("name", GENERATOR_NAMES)
@pytest.mark.parametrize("gridsize", [1, 2])
@pytest.mark.parametrize("size", [64, 128])
def test_generator_output_shape_for_g_and_n(name, gridsize, size):
    channels = gridsize**2
    net = build_generator(ModelConfig(generator=name, width=4, depth=3, modes=8), channels, size)
    x = torch.rand(2, channels, size, size)
    inputs = [x]
    if getattr(net, "uses_offsets", False):
        grid = torch.arange(gridsize, dtype=torch.float64) * 8.0 - 4.0 * (gridsize - 1)
        offsets = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(1, channels, 2)
        inputs.append(offsets.repeat(2, 1, 1))
    if getattr(net, "uses_probe", False):
        c = torch.arange(size) - size // 2
        inputs.append(
            torch.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / (size / 4) ** 2).to(torch.complex64)[None]
        )
    out = net(*inputs)
    assert out.shape == (2, channels, size, size) and out.dtype == torch.complex64
    assert torch.isfinite(torch.view_as_real(out)).all()
    if name != "unrolled":  # its data-consistency steps are not bounded by the output layer
        amplitude = out.abs()
        assert amplitude.min() > 0 and amplitude.max() < 2.0


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
