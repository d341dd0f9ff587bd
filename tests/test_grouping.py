"""Grouping positions into solution regions."""

from __future__ import annotations

import numpy as np
import pytest

from ptychopinn.data import group_positions, split_positions


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
