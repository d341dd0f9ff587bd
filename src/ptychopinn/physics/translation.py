"""Sub-pixel translation operators: cutting patches out of an image and putting them back.

One interpolation is used everywhere in the package: **bilinear**. It is local (no wrap-around),
exact for integer shifts, reproduces linear functions, is differentiable with respect to both
the image and the positions, and its adjoint is a scatter-add with the same four weights.

Position convention (docs/conventions.md): a patch of size ``(h, w)`` at position ``(y, x)`` covers rows
``y - h//2 .. y - h//2 + h - 1`` and the matching columns; its pixel ``(h//2, w//2)`` sits at
the position. Samples that fall outside the image read as zero; contributions that fall
outside the canvas are dropped.
"""

from __future__ import annotations

import torch

# The four bilinear taps: (row offset, column offset).
_TAPS = ((0, 0), (0, 1), (1, 0), (1, 1))


def _size2(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def _check_batched(images: torch.Tensor, positions: torch.Tensor, what: str) -> None:
    if images.ndim != 3:
        raise ValueError(f"{what} must have shape (B, H, W), got {tuple(images.shape)}")
    if positions.ndim != 3 or positions.shape[-1] != 2 or positions.shape[0] != images.shape[0]:
        raise ValueError(
            f"positions must have shape (B, K, 2) with B = {images.shape[0]}, got {tuple(positions.shape)}"
        )


def _bilinear_indices(
    positions: torch.Tensor, patch_hw: tuple[int, int], image_hw: tuple[int, int], real_dtype
):
    """Flat image indices, validity and weights of the four taps of every patch pixel.

    Yields, for each tap, ``(flat_index, weight)`` with shapes ``(B, K, h, w)``; weight is zero
    where the tap falls outside the image (and the index is then clamped to a valid one).
    """
    h, w = patch_hw
    height, width = image_hw
    batch = positions.shape[0]
    offset = torch.tensor([h // 2, w // 2], dtype=positions.dtype, device=positions.device)
    top_left = positions - offset
    base = torch.floor(top_left)
    frac = (top_left - base).to(real_dtype)  # differentiable with respect to positions
    base = base.long()
    rows0 = base[..., 0, None] + torch.arange(h, device=positions.device)  # (B, K, h)
    cols0 = base[..., 1, None] + torch.arange(w, device=positions.device)  # (B, K, w)
    fy = frac[..., 0, None, None]
    fx = frac[..., 1, None, None]
    image_offset = (torch.arange(batch, device=positions.device) * height * width).view(-1, 1, 1, 1)
    for dy, dx in _TAPS:
        rows = rows0 + dy
        cols = cols0 + dx
        valid = ((rows >= 0) & (rows < height))[..., :, None] & ((cols >= 0) & (cols < width))[..., None, :]
        flat = rows.clamp(0, height - 1)[..., :, None] * width + cols.clamp(0, width - 1)[..., None, :]
        weight = (fy if dy else 1 - fy) * (fx if dx else 1 - fx)
        yield flat + image_offset, weight * valid.to(real_dtype)


def _real_dtype(t: torch.Tensor) -> torch.dtype:
    return t.real.dtype if t.is_complex() else t.dtype


def extract_patches(
    images: torch.Tensor, positions: torch.Tensor, size: int | tuple[int, int]
) -> torch.Tensor:
    """Cut patches centred on sub-pixel positions out of images (bilinear interpolation).

    Parameters
    ----------
    images : torch.Tensor
        Real or complex images, shape ``(B, H, W)``.
    positions : torch.Tensor
        Patch centres ``(y, x)`` in image pixels, shape ``(B, K, 2)``, float.
    size : int or (int, int)
        Patch size ``(h, w)``; the patch pixel ``(h//2, w//2)`` samples the position.

    Returns
    -------
    torch.Tensor
        Patches, shape ``(B, K, h, w)``, same dtype as ``images``.
    """
    _check_batched(images, positions, "images")
    patch_hw = _size2(size)
    flat_images = images.reshape(-1)
    out = None
    for flat, weight in _bilinear_indices(positions, patch_hw, tuple(images.shape[-2:]), _real_dtype(images)):
        term = flat_images[flat] * weight
        out = term if out is None else out + term
    return out


def scatter_patches(patches: torch.Tensor, positions: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Add patches onto canvases at sub-pixel positions: the adjoint of :func:`extract_patches`.

    Each patch pixel is split over its four neighbouring canvas pixels with the bilinear
    weights that :func:`extract_patches` reads them with, so that
    ``<extract(I, r), p> == <I, scatter(p, r)>`` for every image ``I`` and patch ``p``.

    Parameters
    ----------
    patches : torch.Tensor
        Real or complex patches, shape ``(B, K, h, w)``.
    positions : torch.Tensor
        Patch centres ``(y, x)`` in canvas pixels, shape ``(B, K, 2)``.
    shape : (int, int)
        Canvas shape ``(H, W)``.

    Returns
    -------
    torch.Tensor
        Canvases ``(B, H, W)`` holding the sum of all scattered patches.
    """
    if patches.ndim != 4:
        raise ValueError(f"patches must have shape (B, K, h, w), got {tuple(patches.shape)}")
    batch = patches.shape[0]
    height, width = int(shape[0]), int(shape[1])
    canvas = torch.zeros(batch * height * width, dtype=patches.dtype, device=patches.device)
    _check_batched(canvas.view(batch, height, width), positions, "canvas")
    for flat, weight in _bilinear_indices(
        positions, tuple(patches.shape[-2:]), (height, width), _real_dtype(patches)
    ):
        canvas = canvas.index_add(0, flat.reshape(-1), (patches * weight).reshape(-1))
    return canvas.view(batch, height, width)


def translate(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Translate images by sub-pixel vectors: ``out(p) = image(p - shift)``, zero fill.

    Parameters
    ----------
    images : torch.Tensor
        Real or complex images, shape ``(B, H, W)``.
    shift : torch.Tensor
        Translation ``(dy, dx)`` in pixels per image, shape ``(B, 2)``; positive values move
        content towards larger row / column indices.

    Returns
    -------
    torch.Tensor
        Translated images, shape ``(B, H, W)``.
    """
    height, width = images.shape[-2:]
    centre = torch.tensor([height // 2, width // 2], dtype=shift.dtype, device=shift.device)
    return extract_patches(images, (centre - shift)[:, None, :], (height, width))[:, 0]
