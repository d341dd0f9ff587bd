"""Scan data: the in-memory type, file formats (PtychoPINN NPZ, CXI 1.6) and inspection.

Depends on nothing else in the package except :mod:`ptychopinn.units`.
"""

from .atomic import atomic_path
from .bundle import BUNDLE_FORMAT_VERSION, BundleError, read_bundle, write_bundle
from .cxi import read_cxi, write_cxi
from .errors import ScanFileError, ScanValidationError
from .formats import FORMATS, detect_format, format_for_output, read_scan, write_scan
from .inspection import FileReport, inspect_file
from .lazy import HDF5Patterns, MappedAmplitudes
from .npz import amplitudes_are_counts, read_npz, write_npz
from .scan import PatternSource, Scan, ScanMetadata

__all__ = [
    "BUNDLE_FORMAT_VERSION",
    "BundleError",
    "read_bundle",
    "write_bundle",
    "FORMATS",
    "FileReport",
    "HDF5Patterns",
    "MappedAmplitudes",
    "PatternSource",
    "Scan",
    "ScanFileError",
    "ScanMetadata",
    "ScanValidationError",
    "amplitudes_are_counts",
    "atomic_path",
    "detect_format",
    "format_for_output",
    "inspect_file",
    "read_cxi",
    "read_npz",
    "read_scan",
    "write_cxi",
    "write_npz",
    "write_scan",
]
