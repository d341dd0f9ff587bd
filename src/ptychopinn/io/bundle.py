"""Model bundles: one zip file, safe to open when it comes from a stranger.

Layout (format version 1):

- ``manifest.json``: format name and version, package version, creation time, the run's
  configuration and model facts (generator, N, gridsize, the frozen input normalisation
  constant, photon scale, ...), and the SHA-256 of every payload;
- ``weights.safetensors``: every tensor (network weights, the probe, the constants).

No pickle anywhere: JSON and safetensors cannot carry code. Reading checks, before anything is
deserialised, that the members are exactly these two, with plain names (no ``..``, no absolute
paths), that the format version is not newer than this package reads, and that each payload's
hash matches the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from .atomic import atomic_path
from .errors import ScanFileError
from .safety import DEFAULT_LIMITS, require_regular_file

BUNDLE_FORMAT = "ptychopinn-bundle"
BUNDLE_FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
WEIGHTS_NAME = "weights.safetensors"
_ALLOWED_MEMBERS = {MANIFEST_NAME, WEIGHTS_NAME}
_MAX_MANIFEST_BYTES = 16 * 1024 * 1024
_MAX_WEIGHTS_BYTES = 8 * 1024**3


class BundleError(ValueError):
    """A model bundle that cannot be trusted or read; the message says why."""

    def __init__(self, message: str, *, source: str | None = None):
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_bundle(path: str | os.PathLike, manifest: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Write a bundle atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.zip`` file to write.
    manifest : dict
        JSON-serialisable facts; ``format``, ``format_version`` and ``payloads`` are filled in.
    tensors : dict of str to torch.Tensor
        Everything numeric (contiguous CPU copies are taken).
    """
    payload = save_safetensors({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    manifest = dict(manifest)
    manifest.update(
        format=BUNDLE_FORMAT,
        format_version=BUNDLE_FORMAT_VERSION,
        payloads={WEIGHTS_NAME: {"sha256": _sha256(payload), "bytes": len(payload)}},
    )
    text = json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False)
    with (
        atomic_path(path) as tmp,
        zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive,
    ):
        archive.writestr(MANIFEST_NAME, text)
        archive.writestr(WEIGHTS_NAME, payload)


def _check_member_names(archive: zipfile.ZipFile, source: str) -> None:
    names = archive.namelist()
    for name in names:
        if name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/") or ":" in name:
            raise BundleError(f"refusing member with an unsafe path {name!r}", source=source)
    if len(names) != len(set(names)):
        raise BundleError("duplicate member names", source=source)
    unexpected = sorted(set(names) - _ALLOWED_MEMBERS)
    if unexpected:
        raise BundleError(
            f"unexpected member(s) {unexpected}; a bundle holds only {sorted(_ALLOWED_MEMBERS)}",
            source=source,
        )
    missing = sorted(_ALLOWED_MEMBERS - set(names))
    if missing:
        raise BundleError(f"missing member(s) {missing}", source=source)


def _read_member(archive: zipfile.ZipFile, name: str, limit: int, source: str) -> bytes:
    info = archive.getinfo(name)
    if info.file_size > limit:
        raise BundleError(
            f"member {name!r} is {info.file_size} bytes, over the {limit}-byte limit", source=source
        )
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, EOFError, OSError, RuntimeError, NotImplementedError, ValueError) as exc:
        raise BundleError(f"member {name!r} is corrupt ({exc})", source=source) from None


def read_bundle(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read and verify a bundle: ``(manifest, tensors)``.

    Raises
    ------
    BundleError
        Not a zip, unsafe or unexpected members, unreadable manifest, a format version newer
        than this package reads, a payload whose hash differs from the manifest (tampered or
        corrupt), or a payload that is not safetensors.
    """
    source = os.fspath(path)
    try:
        require_regular_file(source, what="model bundle")
    except ScanFileError as exc:
        raise BundleError(exc.reason, source=source) from None
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise BundleError(f"not a model bundle (not a zip archive: {exc})", source=source) from None
    with archive:
        _check_member_names(archive, source)
        for info in archive.infolist():
            if info.flag_bits & 0x1:
                raise BundleError(f"member {info.filename!r} is encrypted; bundles never are", source=source)
            try:  # inflated sizes bounded before anything is inflated (no zip bombs)
                DEFAULT_LIMITS.check_stored(
                    float(info.file_size), float(info.compress_size), source=source, key=info.filename,
                    what="member",
                )  # fmt: skip
            except ScanFileError as exc:
                raise BundleError(exc.reason, source=source) from None
        raw_manifest = _read_member(archive, MANIFEST_NAME, _MAX_MANIFEST_BYTES, source)
        try:
            manifest = json.loads(raw_manifest)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise BundleError(f"manifest.json is not valid JSON ({exc})", source=source) from None
        if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"manifest.json does not describe a {BUNDLE_FORMAT}", source=source)
        version = manifest.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise BundleError(f"manifest format_version {version!r} is not an integer", source=source)
        if version > BUNDLE_FORMAT_VERSION:
            raise BundleError(
                f"bundle format version {version} is newer than this ptychopinn reads "
                f"(up to {BUNDLE_FORMAT_VERSION}); upgrade ptychopinn to open it",
                source=source,
            )
        payloads = manifest.get("payloads")
        if not isinstance(payloads, dict) or set(payloads) != {WEIGHTS_NAME}:
            raise BundleError(f"manifest must list exactly the payload {WEIGHTS_NAME!r}", source=source)
        described = payloads[WEIGHTS_NAME] if isinstance(payloads[WEIGHTS_NAME], dict) else {}
        expected = described.get("sha256")
        declared = described.get("bytes")
        if declared is not None and declared != archive.getinfo(WEIGHTS_NAME).file_size:
            raise BundleError(
                f"{WEIGHTS_NAME} holds {archive.getinfo(WEIGHTS_NAME).file_size} bytes, the manifest "
                f"says {declared!r}: the bundle was modified or corrupted",
                source=source,
            )
        payload = _read_member(archive, WEIGHTS_NAME, _MAX_WEIGHTS_BYTES, source)
    if _sha256(payload) != expected:
        raise BundleError(
            f"{WEIGHTS_NAME} does not match the SHA-256 in the manifest: the bundle was "
            "modified or corrupted; refusing to load it",
            source=source,
        )
    try:
        tensors = load_safetensors(payload)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise BundleError(f"{WEIGHTS_NAME} is not a safetensors payload ({exc})", source=source) from None
    for name, tensor in tensors.items():
        if tensor.is_floating_point() or tensor.is_complex():
            if not bool(torch.isfinite(tensor).all()):
                raise BundleError(f"tensor {name!r} holds NaN or infinite values; refusing it", source=source)
    return manifest, tensors
