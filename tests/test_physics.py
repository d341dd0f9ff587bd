"""Physics operators tested against physics: Parseval, shift theorems, exact adjoints,
merge/extract as inverses, stitching that puts patches back where they came from."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptychopinn.physics import (
    PatchStitcher,
    amplitude_mae,
    diffraction_intensity,
    disk_weight,
    enforce_overlap,
    extract_from_region,
    extract_patches,
    far_field,
    far_field_inverse,
    fresnel_propagate,
    merge_patches,
    poisson_nll,
    probe_weight,
    scatter_patches,
    stitch_patches,
    translate,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def random_complex(*shape, seed=0, dtype=torch.complex64):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=dtype)


def smooth_object(height, width, seed=0, sigma=4.0):
    """A band-limited complex object (amplitude 0.5..1, phase within +-1 rad)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    amp = ndimage.gaussian_filter(rng.standard_normal((height, width)), sigma)
    phase = ndimage.gaussian_filter(rng.standard_normal((height, width)), sigma)
    amp = 0.75 + 0.25 * amp / np.abs(amp).max()
    phase = phase / np.abs(phase).max()
    return torch.from_numpy((amp * np.exp(1j * phase)).astype(np.complex64))


def gaussian_blob(height, width, centre, sigma=2.0):
    yy, xx = np.mgrid[:height, :width]
    blob = np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * sigma**2))
    return torch.from_numpy(blob)


def centroid(image: torch.Tensor) -> np.ndarray:
    weights = image.abs().double()
    yy, xx = torch.meshgrid(
        torch.arange(image.shape[0], dtype=torch.float64),
        torch.arange(image.shape[1], dtype=torch.float64),
        indexing="ij",
    )
    total = weights.sum()
    return np.array([float((weights * yy).sum() / total), float((weights * xx).sum() / total)])


# --- propagation -----------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_far_field_obeys_parseval_and_inverts(device):
    psi = random_complex(5, 3, 32, 32).to(device)
    detector = far_field(psi)
    assert torch.allclose(
        detector.abs().pow(2).sum(dim=(-2, -1)), psi.abs().pow(2).sum(dim=(-2, -1)), rtol=1e-5
    )
    assert torch.allclose(far_field_inverse(detector), psi, atol=1e-5)


def test_far_field_puts_zero_frequency_at_centre_pixel():
    n = 16
    flat = torch.ones(n, n, dtype=torch.complex64)
    intensity = far_field(flat).abs() ** 2
    assert intensity[n // 2, n // 2] == pytest.approx(n * n, rel=1e-5)  # all the power, by Parseval
    intensity[n // 2, n // 2] = 0
    assert float(intensity.max()) < 1e-6


def test_far_field_shift_theorem():
    """Translating the exit wave multiplies the far field by a linear phase ramp."""
    n, shift = 32, (3, -5)
    psi = random_complex(n, n, seed=1)
    moved = torch.roll(psi, shifts=shift, dims=(0, 1))
    freq = torch.fft.fftshift(torch.fft.fftfreq(n))
    ramp = torch.exp(-2j * np.pi * (freq[:, None] * shift[0] + freq[None, :] * shift[1]))
    assert torch.allclose(far_field(moved), far_field(psi) * ramp.to(torch.complex64), atol=1e-5)
    assert torch.allclose(far_field(moved).abs(), far_field(psi).abs(), atol=1e-5)


def test_fresnel_propagation_is_unitary_and_reversible():
    field = random_complex(48, 48, seed=2)
    forward = fresnel_propagate(field, 2e-6, 1.4e-10, 5e-8)
    assert torch.allclose(forward.abs().pow(2).sum(), field.abs().pow(2).sum(), rtol=1e-5)
    assert not torch.allclose(forward, field, atol=1e-3)
    assert torch.allclose(fresnel_propagate(forward, -2e-6, 1.4e-10, 5e-8), field, atol=1e-4)


# --- forward model and losses ------------------------------------------------------------------
def test_diffraction_intensity_matches_numpy_and_modes_add_incoherently():
    n = 16
    patches = random_complex(4, n, n, seed=3)
    modes = random_complex(2, n, n, seed=4)
    expected = sum(
        np.abs(np.fft.fftshift(np.fft.fft2(modes[m].numpy() * patches.numpy(), norm="ortho"), axes=(-2, -1)))
        ** 2
        for m in range(2)
    )
    got = diffraction_intensity(patches, modes)
    assert got.shape == (4, n, n)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-5)
    single = diffraction_intensity(patches, modes[0]) + diffraction_intensity(patches, modes[1])
    assert torch.allclose(got, single, rtol=1e-5)


def test_poisson_nll_is_minimised_by_the_measured_counts():
    counts = torch.tensor([[0.0, 3.0], [10.0, 250.0]], dtype=torch.float64)
    lam = counts.clone().clamp_min(1e-3).requires_grad_(True)
    poisson_nll(lam, counts, eps=0.0).backward()
    # d/dlambda (lambda - I log lambda) = 1 - I / lambda = 0 at lambda = I (I > 0)
    assert torch.allclose(lam.grad[counts > 0], torch.zeros(3, dtype=torch.float64), atol=1e-12)
    assert poisson_nll(counts * 1.2, counts) > poisson_nll(counts, counts)


def test_losses_ignore_masked_pixels():
    counts = torch.full((2, 4, 4), 5.0)
    prediction = counts.clone()
    prediction[:, 0, 0] = 1000.0  # a wild value on a pixel the mask excludes
    mask = torch.ones(4, 4, dtype=torch.bool)
    mask[0, 0] = False
    assert poisson_nll(prediction, counts, mask) == pytest.approx(float(poisson_nll(counts, counts, mask)))
    assert float(amplitude_mae(prediction, counts, mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(amplitude_mae(prediction, counts)) > 1.0


# --- translation operators ---------------------------------------------------------------------
def test_extract_at_integer_positions_is_slicing():
    image = random_complex(2, 40, 50, seed=5)
    positions = torch.tensor([[[20.0, 25.0], [8.0, 8.0]], [[31.0, 41.0], [16.0, 30.0]]], dtype=torch.float64)
    patches = extract_patches(image, positions, 16)
    for b in range(2):
        for k in range(2):
            y, x = (int(v) for v in positions[b, k])
            assert torch.equal(patches[b, k], image[b, y - 8 : y + 8, x - 8 : x + 8])


def test_scatter_is_the_exact_adjoint_of_extract():
    image = random_complex(3, 30, 34, seed=6)
    positions = torch.tensor(np.random.default_rng(0).uniform(2, 30, size=(3, 5, 2)))
    patches = random_complex(3, 5, 12, 12, seed=7)
    lhs = (extract_patches(image, positions, 12).conj() * patches).sum()
    rhs = (image.conj() * scatter_patches(patches, positions, (30, 34))).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-4)


def test_translate_integer_shift_is_roll_with_zero_fill():
    image = random_complex(1, 24, 24, seed=8)
    shifted = translate(image, torch.tensor([[3.0, -2.0]], dtype=torch.float64))
    expected = torch.zeros_like(image)
    expected[:, 3:, :22] = image[:, :21, 2:]
    assert torch.equal(shifted, expected)


def test_translate_subpixel_moves_the_centroid_by_the_shift():
    blob = gaussian_blob(48, 48, (20.0, 23.0))[None]
    shift = torch.tensor([[2.37, -1.61]], dtype=torch.float64)
    moved = translate(blob, shift)[0]
    np.testing.assert_allclose(centroid(moved) - centroid(blob[0]), shift[0].numpy(), atol=1e-6)


def test_translate_subpixel_agrees_with_the_fourier_shift_theorem_on_smooth_images():
    image = gaussian_blob(64, 64, (32.0, 32.0), sigma=5.0)
    shift = (0.4, -0.7)
    freq = np.fft.fftfreq(64)
    ramp = np.exp(-2j * np.pi * (freq[:, None] * shift[0] + freq[None, :] * shift[1]))
    fourier = np.fft.ifft2(np.fft.fft2(image.numpy()) * ramp).real
    bilinear = translate(image[None], torch.tensor([shift], dtype=torch.float64))[0].numpy()
    assert np.abs(bilinear - fourier).max() < 0.01 * fourier.max()


def test_extract_is_differentiable_in_positions():
    image = smooth_object(40, 40).to(torch.complex128)[None]
    positions = torch.tensor([[[19.3, 20.6], [22.8, 17.1]]], dtype=torch.float64, requires_grad=True)

    def loss(pos):
        return extract_patches(image, pos, 8).abs().pow(2).sum()

    loss(positions).backward()
    eps = 1e-6
    numeric = torch.zeros_like(positions)
    for idx in np.ndindex(*positions.shape):
        bumped = positions.detach().clone()
        bumped[idx] += eps
        lowered = positions.detach().clone()
        lowered[idx] -= eps
        numeric[idx] = (loss(bumped) - loss(lowered)) / (2 * eps)
    assert torch.allclose(positions.grad, numeric, rtol=1e-4, atol=1e-6)


# --- overlap constraint ------------------------------------------------------------------------
def group_from_object(obj, offsets, n):
    """Patches cut from one object at centroid + offsets: they agree on their overlap."""
    centre = torch.tensor([obj.shape[0] // 2, obj.shape[1] // 2], dtype=offsets.dtype)
    return extract_patches(obj[None], (offsets + centre)[None], n)


@pytest.mark.parametrize("device", DEVICES)
def test_merge_then_extract_returns_consistent_patches_unchanged_integer_offsets(device):
    n = 16
    obj = random_complex(64, 64, seed=9)  # rough on purpose: exactness must not rely on smoothness
    offsets = torch.tensor([[-5.0, -4.0], [-5.0, 3.0], [4.0, -4.0], [3.0, 5.0]], dtype=torch.float64)
    patches = group_from_object(obj, offsets, n).to(device)
    weight = probe_weight(random_complex(n, n, seed=10)).to(device) * disk_weight(n, 6, device=device)
    out = extract_from_region(
        merge_patches(patches, offsets[None].to(device), weight)[0], offsets[None].to(device), n
    )
    support = (weight > 0).expand_as(patches)
    assert torch.allclose(out[support], patches[support], atol=1e-5)


def test_merge_then_extract_subpixel_offsets_agree_to_interpolation_accuracy():
    n = 32
    obj = smooth_object(96, 96, seed=11)
    offsets = torch.tensor([[-4.3, -3.8], [-4.1, 4.6], [3.7, -4.4], [4.2, 3.9]], dtype=torch.float64)
    patches = group_from_object(obj, offsets, n)
    weight = disk_weight(n, 12.0)
    out = enforce_overlap(patches, offsets[None], weight)
    inner = (disk_weight(n, 10.0) > 0).expand_as(patches)
    error = (out - patches)[inner].abs().max() / patches[inner].abs().max()
    # two bilinear passes blur a feature of 4-pixel correlation length by about 1 %
    assert error < 1e-2


def test_merge_uses_one_window_so_a_constant_survives_to_the_edge_of_the_window():
    n = 16
    offsets = torch.tensor([[[-3.5, 0.25], [2.75, -1.5]]], dtype=torch.float64)
    patches = torch.full((1, 2, n, n), 0.7 + 0.2j, dtype=torch.complex64)
    weight = probe_weight(
        torch.from_numpy(np.exp(-((np.arange(n) - 8.0) ** 2) / 20.0))[None, :]
        .expand(n, n)
        .to(torch.complex64)
    )
    region, weight_sum = merge_patches(patches, offsets, weight)
    covered = weight_sum > 1e-6
    assert torch.allclose(region[covered], torch.full_like(region[covered], 0.7 + 0.2j), atol=1e-5)
    assert torch.all(region[~covered] == 0)


def test_overlap_constraint_is_a_projection():
    """Inconsistent patches become consistent; enforcing twice changes nothing more."""
    n = 16
    patches = random_complex(2, 4, n, n, seed=12)
    offsets = torch.tensor([[[-4.0, -4.0], [-4.0, 4.0], [4.0, -4.0], [4.0, 4.0]]] * 2, dtype=torch.float64)
    weight = disk_weight(n, 7.0)
    once = enforce_overlap(patches, offsets, weight)
    twice = enforce_overlap(once, offsets, weight)
    support = (weight > 0).expand_as(once)
    assert not torch.allclose(once[support], patches[support], atol=1e-2)
    assert torch.allclose(twice[support], once[support], atol=1e-5)


# --- stitching ---------------------------------------------------------------------------------
def test_patch_cut_at_subpixel_position_and_stitched_back_lands_where_it_came_from():
    obj = gaussian_blob(80, 80, (37.4, 44.2), sigma=3.0).to(torch.complex64)
    position = torch.tensor([[38.27, 42.61]], dtype=torch.float64)
    patch = extract_patches(obj[None], position[None], 32)[0]
    stitched = stitch_patches(patch, position, torch.ones(32, 32), shape=(80, 80), threshold=1e-6)
    np.testing.assert_allclose(centroid(stitched.object), centroid(obj), atol=1e-3)


def test_patch_cut_at_integer_position_is_stitched_back_exactly():
    obj = random_complex(60, 60, seed=13)
    position = torch.tensor([[30.0, 27.0]], dtype=torch.float64)
    patch = extract_patches(obj[None], position[None], 16)[0]
    stitched = stitch_patches(patch, position, torch.ones(16, 16), shape=(60, 60))
    assert torch.equal(stitched.object[22:38, 19:35], obj[22:38, 19:35])
    assert stitched.coverage.sum() == 16 * 16
    assert torch.all(stitched.object[~stitched.coverage] == 0)


def raster(n_side, step, start, jitter=0.0, seed=0):
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(np.arange(n_side), np.arange(n_side), indexing="ij"), -1).reshape(-1, 2)
    return torch.tensor(grid * step + start + rng.uniform(-jitter, jitter, grid.shape), dtype=torch.float64)


@pytest.mark.parametrize("device", DEVICES)
def test_stitching_exact_patches_reproduces_the_object_in_the_covered_region(device):
    n = 16
    obj = random_complex(64, 64, seed=14).to(device)
    positions = raster(6, 6, 12).to(device)
    patches = extract_patches(obj[None], positions[None], n)[0]
    weight = probe_weight(random_complex(n, n, seed=15)).to(device)
    stitched = stitch_patches(patches, positions, weight, shape=(64, 64))
    cov = stitched.coverage
    assert cov.sum() > 0.5 * 64 * 64 and not cov.all()
    assert torch.allclose(stitched.object[cov], obj[cov], atol=1e-4)


def test_stitching_subpixel_positions_reproduces_a_smooth_object():
    n = 32
    obj = smooth_object(120, 120, seed=16)
    positions = raster(7, 9, 25, jitter=1.5, seed=3)
    patches = extract_patches(obj[None], positions[None], n)[0]
    c = torch.arange(n, dtype=torch.float32) - n // 2
    window = torch.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / (2 * 6.0**2))  # probe-like
    stitched = stitch_patches(patches, positions, window, shape=(120, 120))
    # Where a window's tail barely reaches, a pixel sees one side of its bilinear
    # neighbourhood only; compare where a tenth of a window peak has landed.
    covered = stitched.weight_sum >= 0.1
    assert covered.sum() > 0.4 * 120 * 120
    error = (stitched.object[covered] - obj[covered]).abs() / obj.abs().max()
    assert error.max() < 1.5e-2 and error.mean() < 3e-3


def test_stitcher_in_batches_equals_one_call_and_canvas_is_sized_from_positions():
    n = 16
    obj = random_complex(70, 70, seed=17)
    positions = raster(5, 7.5, 10.25)
    patches = extract_patches(obj[None], positions[None], n)[0]
    weight = disk_weight(n, 7.0)
    whole = stitch_patches(patches, positions, weight)
    stitcher = PatchStitcher(whole.object.shape, weight)
    stitcher.add(patches[:10], positions[:10])
    stitcher.add(patches[10:], positions[10:])
    batched = stitcher.result()
    assert torch.allclose(batched.object, whole.object, atol=1e-6)
    assert torch.equal(batched.coverage, whole.coverage)
    top = positions.max(dim=0).values.tolist()
    assert whole.object.shape == (
        int(np.ceil(top[0])) + n // 2 + 1,
        int(np.ceil(top[1])) + n // 2 + 1,
    )


def test_operators_reject_malformed_shapes():
    with pytest.raises(ValueError, match="positions must have shape"):
        extract_patches(torch.zeros(1, 8, 8), torch.zeros(2, 1, 2), 4)
    with pytest.raises(ValueError, match="probe must have shape"):
        diffraction_intensity(
            torch.zeros(4, 4, dtype=torch.complex64), torch.zeros(1, 1, 4, 4, dtype=torch.complex64)
        )
    with pytest.raises(ValueError, match="zero intensity"):
        probe_weight(torch.zeros(4, 4, dtype=torch.complex64))


# --- data consistency (the unrolled generator's physics layer) ---------------------------


def _group_problem(seed: int = 0):
    """A 3 x 3 group on a 40 x 40 region with a smooth complex object and a 16-pixel probe."""
    from ptychopinn.physics import diffraction_intensity, extract_patches

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:40, :40]
    phase = np.sin(yy / 5.0) * np.cos(xx / 7.0) + 0.3 * rng.standard_normal((40, 40)) * 0.1
    obj = torch.from_numpy(((0.8 + 0.2 * np.cos(xx / 4.0)) * np.exp(1j * phase)).astype(np.complex64))
    c = np.arange(16) - 8
    probe = np.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / 18.0) * np.exp(
        1j * 0.05 * (c[:, None] ** 2 + c[None, :] ** 2)
    )
    probe = torch.from_numpy((probe * 30).astype(np.complex64))
    grid = torch.tensor([-4.0, 0.0, 4.0], dtype=torch.float64)
    positions = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(1, 9, 2) + 20.0
    amplitude = diffraction_intensity(extract_patches(obj[None], positions, 16), probe).sqrt()
    return obj, probe, positions, amplitude


def _misfit(region, probe, positions, amplitude):
    from ptychopinn.physics import diffraction_intensity, extract_patches

    model = diffraction_intensity(extract_patches(region, positions, 16), probe).sqrt()
    return float(((model - amplitude) ** 2).sum())


def test_replace_modulus_imposes_the_amplitude_and_keeps_the_phase():
    from ptychopinn.physics import replace_modulus

    waves = torch.randn(2, 3, 8, 8, dtype=torch.complex64)  # 3 incoherent modes
    amplitude = torch.rand(2, 8, 8) + 0.1
    out = replace_modulus(waves, amplitude)
    torch.testing.assert_close((out.abs() ** 2).sum(dim=1).sqrt(), amplitude, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.angle(out * waves.conj()), torch.zeros(2, 3, 8, 8), atol=1e-5, rtol=0)


def test_the_true_object_is_a_fixed_point_of_data_consistency():
    from ptychopinn.physics import data_consistency_step

    obj, probe, positions, amplitude = _group_problem()
    updated = data_consistency_step(obj[None], positions, probe, amplitude)
    torch.testing.assert_close(updated, obj[None], atol=1e-4, rtol=1e-4)


def test_data_consistency_steps_reduce_the_misfit_and_ignore_the_input_scale_when_asked():
    from ptychopinn.physics import data_consistency_step

    obj, probe, positions, amplitude = _group_problem()
    start = (obj * torch.exp(1j * 0.4 * torch.rand(40, 40, generator=torch.Generator().manual_seed(1))))[None]
    region, misfits = start, [_misfit(start, probe, positions, amplitude)]
    for _ in range(5):
        region = data_consistency_step(region, positions, probe, amplitude)
        misfits.append(_misfit(region, probe, positions, amplitude))
    assert misfits[-1] < 0.3 * misfits[0]
    assert all(later <= earlier * 1.0001 for earlier, later in zip(misfits, misfits[1:], strict=False))
    # with energy matching, amplitudes in arbitrary units make the same step
    scaled = data_consistency_step(start, positions, probe, 7.5 * amplitude, match_energy=True)
    plain = data_consistency_step(start, positions, probe, amplitude, match_energy=True)
    torch.testing.assert_close(scaled, plain, atol=1e-5, rtol=1e-5)
