"""One self-contained HTML page per run: pictures, curves, metrics and configuration.

Images are embedded as base64 data, so the page opens offline anywhere, and can be mailed or
archived as one file.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import os
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from .. import __version__
from ..io import atomic_path

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; padding-bottom: .2em; }
figure { display: inline-block; margin: .5em; vertical-align: top; }
figure img { max-width: 560px; border: 1px solid #ddd; }
figcaption { font-size: .9em; color: #555; }
table { border-collapse: collapse; margin: .5em 0; }
td, th { border: 1px solid #ccc; padding: .25em .6em; text-align: left; font-size: .9em; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: .85em; }
.meta { color: #666; font-size: .85em; }
"""


def _image(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    label = html.escape(caption)
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{label}" title="{html.escape(path.name)}">'
        f"<figcaption>{label} ({html.escape(path.name)})</figcaption></figure>"
    )


def _flatten(values: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{name}.")
        elif isinstance(value, (list, tuple)) and len(value) > 6:
            continue  # curves (FRC, losses) are drawn, not tabulated
        else:
            yield name, value


def _table(values: Mapping[str, Any]) -> str:
    rows = []
    for name, value in _flatten(values):
        shown = f"{value:.6g}" if isinstance(value, float) else str(value)
        rows.append(f"<tr><th>{html.escape(name)}</th><td>{html.escape(shown)}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def training_curves(output_dir: Path, metrics_csv: Path | None) -> Path | None:
    """Plot train/validation loss per epoch from this run's CSV log (None without one).

    ``metrics_csv`` is the file the run's own logger wrote: never another run's log.
    """
    if metrics_csv is None or not Path(metrics_csv).is_file():
        return None
    epochs: dict[str, dict[int, float]] = {"train_loss": {}, "val_loss": {}}
    with open(metrics_csv) as handle:
        for row in csv.DictReader(handle):
            for key in epochs:
                if row.get(key) not in (None, "") and row.get("epoch") not in (None, ""):
                    epochs[key][int(float(row["epoch"]))] = float(row[key])
    if not any(epochs.values()):
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for key, series in epochs.items():
        if series:
            xs = sorted(series)
            ax.plot([x + 1 for x in xs], [series[x] for x in xs], marker=".", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("training curves", fontsize=10)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = output_dir / "training_curves.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return path


def write_report(
    output_dir: str | os.PathLike,
    title: str,
    *,
    images: Iterable[tuple[str, str | os.PathLike]] = (),
    metrics: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    details: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``report.html`` into ``output_dir``; returns its path.

    Parameters
    ----------
    images : iterable of (caption, path)
        PNG files to embed (missing ones are skipped).
    metrics : mapping, optional
        Nested metrics (tabulated; long lists such as curves are left out).
    config : mapping, optional
        The effective configuration, shown as YAML.
    details : mapping, optional
        Anything else worth a table (timings, devices, ...).
    """
    out = Path(output_dir)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='meta'>ptychopinn {html.escape(__version__)}, "
        f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}, {html.escape(str(out.resolve()))}</p>",
    ]
    figures = [(caption, Path(path)) for caption, path in images if Path(path).is_file()]
    if figures:
        parts.append("<h2>Pictures</h2>")
        parts.extend(_image(path, caption) for caption, path in figures)
    if metrics:
        parts.append("<h2>Metrics</h2>" + _table(metrics))
    if details:
        parts.append("<h2>Run</h2>" + _table(details))
    if config:
        text = yaml.safe_dump(json.loads(json.dumps(config, default=str)), sort_keys=False)
        parts.append("<h2>Configuration</h2><pre>" + html.escape(text) + "</pre>")
    parts.append("</body></html>")
    path = out / "report.html"
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf-8")
    return path
