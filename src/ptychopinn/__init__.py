"""ptychopinn: physics-informed neural networks for ptychographic reconstruction.

The package is organised by concern, with imports flowing one way:

- :mod:`ptychopinn.units`, :mod:`ptychopinn.physics` and :mod:`ptychopinn.io` depend on
  nothing else of ours;
- :mod:`ptychopinn.simulate` builds synthetic scans from physics and io;
- :mod:`ptychopinn.workflows` composes everything into user-level jobs;
- :mod:`ptychopinn.cli` only parses arguments and calls workflows.

Conventions (units, axes, normalisation): ``docs/conventions.md``: intensities in
photon counts, positions as ``(y, x)`` object pixels, orthonormal FFTs, complex64 fields.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ptychopinn")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
