"""Importing the package, or writing its pictures, never switches a notebook's plotting backend."""

from __future__ import annotations

import os
import subprocess
import sys

CODE = """
import matplotlib
before = matplotlib.get_backend()
import numpy as np
import ptychopinn.cli.main, ptychopinn.workflows
from ptychopinn.workflows.outputs import write_loss_curve
files = write_loss_curve([3.0, 2.0, 1.5], {out!r} + "/loss", title="t", ylabel="y")
assert files["png"].read_bytes()[:4] == b"\\x89PNG", "not a PNG"
assert matplotlib.get_backend() == before, (before, matplotlib.get_backend())
print("backend kept:", before)
"""


def test_the_plotting_backend_is_left_alone(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", CODE.format(out=str(tmp_path))],
        capture_output=True, text=True, env={**os.environ, "MPLBACKEND": "pdf"}, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "backend kept: pdf" in done.stdout
