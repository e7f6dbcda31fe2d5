"""What every report figure shares: colours, markers, error bars, a numeric x axis, PNG files."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from vaebench.report.points import Point
from vaebench.report.settings import axis_name, setting_text


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


GREY = "0.45"


def error_bars(points: list[Point]) -> list[float] | None:
    return [p.error or 0.0 for p in points] if any(p.error is not None for p in points) else None


def numeric_x_axis(ax, values: list, key: str) -> None:
    """Ticks at the values the sweep used, written as typed (1, 2, 4, 8; not 2⁰, 2¹); a log scale
    when they span a factor of 4 or more."""
    values = sorted({float(v) for v in values if v is not None})
    log = values[0] > 0 and values[-1] / values[0] >= 4
    if log:
        ax.set_xscale("log")
        margin = (values[-1] / values[0]) ** 0.06
        ax.set_xlim(values[0] / margin, values[-1] * margin)
    if len(values) <= 12:
        ax.set_xticks(values, [setting_text(v) for v in values])
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(axis_name(key) + (" (log scale)" if log else ""))


def colours(names: list[str]) -> dict[str, str]:
    return {name: f"C{i % 10}" for i, name in enumerate(names)}


def save_png(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)  # the Agg canvas: PNG files without a display
    figure.savefig(path)
