"""mutual_info_vs_<key>.png and marginal_kl_vs_<key>.png: the two halves of the KL (ELBO surgery)
against the sweep's x setting, one line per series, seeds averaged."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from vaebench.report.colours import series_colours
from vaebench.report.drawing import GREY, caption_below, error_bars, numeric_x_axis, plot_beside_key
from vaebench.report.points import aggregate, error_caption
from vaebench.report.settings import PlotAxes, axis_name, legend_title, short_name


TERM_PLOTS = {  # term -> (title, symbol)
    "mutual_info": ("Mutual information", "I_q(n; z)"),
    "marginal_kl": ("Marginal KL", "KL(q(z) || p(z))"),
}


def term_figure(rows: list[dict], axes: PlotAxes, term: str, bound: float | None = None) -> Figure:
    """`val_<term>` against the x setting, one line per series through the mean over seeds (the
    seeds themselves as faint dots); without a numeric setting, one tick per configuration."""
    title, symbol = TERM_PLOTS[term]
    by_series = aggregate(rows, axes, f"val_{term}")
    points = [p for series in by_series.values() for p in series]
    figure, ax, key = plot_beside_key((8, 4.5), 110)
    colour_of = series_colours(rows, axes)
    for position, (label, series) in enumerate(by_series.items()):
        colour = colour_of[label]
        if axes.x and all(p.x is None for p in series):  # e.g. the standard prior on a K axis: it has no K
            ax.axhline(series[0].mean, color=colour, ls=":", lw=1.5, label=f"{label} (no {short_name(axes.x)})")
            continue
        series = [p for p in series if p.x is not None] if axes.x else series
        xs = [p.x for p in series] if axes.x else [position]
        ax.errorbar(xs, [p.mean for p in series], yerr=error_bars(series), color=colour, marker="o", ms=5,
                    capsize=3, lw=1.5, label=label)
        for x, p in zip(xs, series):
            if len(p.values) > 1:
                ax.scatter([x] * len(p.values), p.values, color=colour, s=12, alpha=0.35, lw=0)
    if axes.x:
        numeric_x_axis(ax, [p.x for p in points], axes.x)
        ax.set_title(f"{title} against {'β' if axes.x == 'beta' else axis_name(axes.x)}")
    else:
        ax.set_xticks(range(len(by_series)), list(by_series), rotation=20 if len(by_series) > 4 else 0)
        ax.set_xlim(-0.5, len(by_series) - 0.5)
        ax.set_title(f"{title} by {legend_title(axes)}")
    ax.set_ylabel(f"{symbol}  [nats, val]")
    caption_below(figure, error_caption(points))
    handles = ax.get_legend_handles_labels()[0] if axes.x else []  # a categorical axis names them itself
    if bound is not None:
        handles.append(_draw_bound(ax, bound, max(p.mean + (p.error or 0.0) for p in points)))
    if handles:
        key.legend(handles=handles, loc="upper left", borderaxespad=0, title=legend_title(axes) if len(handles) > 1 else None,
                   fontsize=8, title_fontsize=8, alignment="left")
    ax.grid(alpha=0.25)
    return figure


def _draw_bound(ax, bound: float, data_top: float) -> Line2D:
    """The bound log N of the mutual information: drawn where it leaves the data at least half the
    height of the plot, else only named in the legend, so that it never flattens the data."""
    if bound <= 2 * max(data_top, 0.0):
        return ax.axhline(bound, ls="--", lw=1, color=GREY, label=f"log N = {bound:.2f} (upper bound)")
    return Line2D([], [], ls="--", lw=1, color=GREY, label=f"log N = {bound:.2f} (off scale, above)")
