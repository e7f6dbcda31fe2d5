"""What every report figure shares: markers, error bars, a numeric x axis, PNG files (colours: colours.py)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.axes import Axes
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
    ax.set_xlabel(with_note(axis_name(key), "log scale") if log else axis_name(key))


def with_note(label: str, note: str) -> str:
    """`label` with `note` in its parentheses: 'β (weight of the KL; log scale)', not '... KL) (log scale)'."""
    return f"{label[:-1]}; {note})" if label.endswith(")") else f"{label} ({note})"


KEY_RATIOS = (2.4, 1.0)  # plot : legend column, room for a legend entry of ~35 characters at 8 pt


def plot_beside_key(figsize: tuple[float, float], dpi: int) -> tuple[Figure, Axes, Axes]:
    """A figure of one plot and a column right of it for its legend (axes turned off): the plot is as
    wide with a long legend, a short one or none, so that the plots of one report line up."""
    figure = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    ax, key = figure.subplots(1, 2, width_ratios=KEY_RATIOS)
    key.axis("off")
    return figure, ax, key


def caption_below(figure: Figure, caption: str) -> None:
    """What the error bars are, under the figure's axes (nothing when it has none)."""
    if caption:
        figure.supxlabel(caption, fontsize=8, color="0.2")


def panel_captions(captions: list[tuple[str, str]]) -> str:
    """One caption for a figure of panels from each panel's (title, caption): the caption alone where
    every panel has it, else a line per caption naming its panels; panels without bars are not named."""
    grouped: dict[str, list[str]] = {}
    for title, caption in captions:
        grouped.setdefault(caption, []).append(title.replace("\n", " "))
    if len(grouped) == 1:
        return next(iter(grouped))
    return "\n".join(f"{', '.join(titles)}: {caption}" for caption, titles in grouped.items() if caption)


def save_png(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)  # the Agg canvas: PNG files without a display
    figure.savefig(path)
