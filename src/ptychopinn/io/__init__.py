"""Scan data: the in-memory type, file formats (PtychoPINN NPZ, CXI 1.6, ptychodus) and inspection.

Depends on nothing else in the package except :mod:`ptychopinn.units`.
"""

from .arrays import ArrayLayout, detect_zero_frequency, read_arrays
from .atomic import atomic_path, write_json, write_text
from .bundle import BUNDLE_FORMAT_VERSION, BundleError, read_bundle, write_bundle
from .cxi import read_cxi, write_cxi
from .errors import ScanFileError, ScanValidationError
from .formats import detect_format, format_for_output, read_scan, writable_format, write_scan
from .inspection import FileReport, inspect_file
from .lazy import HDF5Patterns, MappedPatterns
from .npz import read_npz, write_npz
from .npz_values import classify_diffraction_values
from .ptychodus import PtychodusProduct, read_ptychodus, read_ptychodus_product, write_ptychodus_product
from .registry import ScanFormat, get_format, list_formats, register_format
from .scan import PatternSource, Scan, ScanMetadata

__all__ = [
    "ArrayLayout",
    "detect_zero_frequency",
    "read_arrays",
    "BUNDLE_FORMAT_VERSION",
    "BundleError",
    "read_bundle",
    "write_bundle",
    "ScanFormat",
    "get_format",
    "list_formats",
    "register_format",
    "writable_format",
    "FileReport",
    "HDF5Patterns",
    "MappedPatterns",
    "PatternSource",
    "PtychodusProduct",
    "Scan",
    "ScanFileError",
    "ScanMetadata",
    "ScanValidationError",
    "classify_diffraction_values",
    "atomic_path",
    "write_json",
    "write_text",
    "detect_format",
    "format_for_output",
    "inspect_file",
    "read_cxi",
    "read_npz",
    "read_ptychodus",
    "read_ptychodus_product",
    "read_scan",
    "write_cxi",
    "write_npz",
    "write_ptychodus_product",
    "write_scan",
]
