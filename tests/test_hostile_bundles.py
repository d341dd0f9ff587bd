"""Hostile model bundles (issue 15, findings 4, 7, 8): refused with a BundleError, or loaded whole.

Generated from the shipped bundle: every manifest field set to wrong values (with a hash that
matches, so the deeper checks are reached), every tensor poisoned or reshaped, zip members
encrypted, inflated or misdeclared. ``inspect`` must say "problems" exactly when loading fails.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile

import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ptychopinn.cli.main import main
from ptychopinn.workflows import BundleError, inspect_file, load_model_bundle
from ptychopinn.workflows.pretrained import shipped_bundles

BASE = shipped_bundles()[0]
with zipfile.ZipFile(BASE) as _archive:
    MANIFEST = json.loads(_archive.read("manifest.json"))
    WEIGHTS = _archive.read("weights.safetensors")
TENSORS = load_safetensors(WEIGHTS)

BAD_VALUES = [None, -1, 0, 3, 30000, 10**12, 1.5, math.nan, "x", [], {}, True]
FIELDS = ["pattern_size", "channels", "probe_modes", "input_scale", "gridsize", "has_mask",
          "input_normalisation", "generator", "format_version"]  # fmt: skip
CONFIG_FIELDS = [("model", "width"), ("model", "depth"), ("model", "modes"), ("model", "generator"),
                 ("data", "gridsize"), ("execution", "learning_rate")]  # fmt: skip


def bundle_bytes(manifest: dict, weights: bytes, *, encrypt: bool = False) -> bytes:
    manifest = json.loads(json.dumps(manifest))
    manifest["payloads"] = {"weights.safetensors": {"sha256": hashlib.sha256(weights).hexdigest(),
                                                    "bytes": len(weights)}}  # fmt: skip
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        archive.writestr("weights.safetensors", weights)
    data = bytearray(buffer.getvalue())
    if encrypt:  # set the "encrypted" flag bit of every local and central header
        for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            start = 0
            while (start := data.find(signature, start)) >= 0:
                data[start + offset] |= 0x1
                start += 4
    return bytes(data)


def judge(tmp_path, data: bytes) -> str:
    """Load the bundle: "loaded" or "refused"; anything else escapes and fails the test."""
    path = tmp_path / "model.zip"
    path.write_bytes(data)
    try:
        load_model_bundle(path)
        outcome = "loaded"
    except BundleError as exc:
        assert str(path) in str(exc)
        outcome = "refused"
    report = inspect_file(path)
    assert report.ok == (outcome == "loaded"), report.format_text()
    return outcome


@pytest.mark.parametrize("value", BAD_VALUES, ids=repr)
@pytest.mark.parametrize("field", FIELDS)
def test_every_manifest_field_with_a_wrong_value(tmp_path, field, value):
    manifest = {**MANIFEST, field: value}
    outcome = judge(tmp_path, bundle_bytes(manifest, WEIGHTS))
    if field in ("pattern_size", "channels", "probe_modes") and value != MANIFEST[field]:
        assert outcome == "refused"
    if field == "input_scale" and not (isinstance(value, (int, float)) and value > 0 and value == value):
        assert outcome == "refused"


@pytest.mark.parametrize("value", BAD_VALUES, ids=repr)
@pytest.mark.parametrize("section, field", CONFIG_FIELDS)
def test_every_configuration_field_with_a_wrong_value(tmp_path, section, field, value):
    manifest = json.loads(json.dumps(MANIFEST))
    manifest["config"][section][field] = value
    judge(tmp_path, bundle_bytes(manifest, WEIGHTS))


@pytest.mark.parametrize("poison", ["nan", "inf", "reshape", "missing", "extra", "dtype"])
@pytest.mark.parametrize("name", sorted(TENSORS))
def test_every_tensor_poisoned(tmp_path, name, poison):
    tensors = dict(TENSORS)
    tensor = tensors[name]
    if poison in ("nan", "inf"):
        if not tensor.is_floating_point() or tensor.numel() == 0:
            pytest.skip("not a float tensor")
        tensor = tensor.clone()
        tensor.view(-1)[0] = math.nan if poison == "nan" else math.inf
        tensors[name] = tensor
    elif poison == "reshape":
        tensors[name] = torch.zeros(tensor.numel() + 1, dtype=tensor.dtype)
    elif poison == "missing":
        del tensors[name]
    elif poison == "extra":
        tensors[name + ".extra"] = torch.zeros(3)
    else:
        tensors[name] = tensor.to(torch.int32) if tensor.is_floating_point() else tensor.float()
    outcome = judge(tmp_path, bundle_bytes(MANIFEST, save_safetensors(tensors)))
    if poison != "dtype":
        assert outcome == "refused"


def test_the_shipped_bundle_itself_loads(tmp_path):
    assert judge(tmp_path, bundle_bytes(MANIFEST, WEIGHTS)) == "loaded"


def test_an_encrypted_bundle_is_refused(tmp_path, capsys):
    assert judge(tmp_path, bundle_bytes(MANIFEST, WEIGHTS, encrypt=True)) == "refused"
    assert main(["inspect", str(tmp_path / "model.zip")]) == 2
    assert "encrypted" in capsys.readouterr().out


def test_a_bundle_bomb_is_refused_before_inflating(tmp_path):
    zeros = bytes(600 * 1024**2)  # 600 MiB of zeros deflate to about 600 kiB
    manifest = dict(MANIFEST)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        manifest["payloads"] = {"weights.safetensors": {"sha256": hashlib.sha256(zeros).hexdigest()}}
        archive.writestr("manifest.json", json.dumps(manifest))
        archive.writestr("weights.safetensors", zeros)
    del zeros
    path = tmp_path / "bomb.zip"
    path.write_bytes(buffer.getvalue())
    assert path.stat().st_size < 4 * 1024**2
    with pytest.raises(BundleError, match="declares 600 MiB but the file stores"):
        load_model_bundle(path)


def test_deeply_nested_manifest_is_refused(tmp_path):
    text = "[" * 100_000 + "]" * 100_000
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("manifest.json", text)
        archive.writestr("weights.safetensors", WEIGHTS)
    assert judge(tmp_path, buffer.getvalue()) == "refused"
