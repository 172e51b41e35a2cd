"""What every report's figures share, so the same inputs give byte-identical PNGs: figures are drawn on
``matplotlib.figure.Figure`` with an explicit Agg canvas (no pyplot, no global backend switch), under
matplotlib's default style plus ``STYLE`` whatever the user's matplotlibrc says, at a fixed dpi, with no
``Software`` entry in the PNG metadata."""

from __future__ import annotations

import io
from contextlib import contextmanager
from typing import Iterator

import matplotlib
import matplotlib.style
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["DPI", "STYLE", "report_style", "png_bytes"]

DPI = 100
STYLE = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "figure.titlesize": 12,
    "axes.spines.top": False, "axes.spines.right": False,
}


@contextmanager
def report_style() -> Iterator[None]:
    """Draw under the default style plus ``STYLE``; the caller's rcParams come back afterwards."""
    with matplotlib.style.context(["default", STYLE]):
        yield


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()
