"""rate_distortion.png: the rate-distortion plane of Alemi et al. 2018 ("Fixing a broken ELBO"), rate
R = KL(q(z|x) || p(z)) against distortion D = -E_q[log p(x|z)], so that -ELBO = R + D, over dashed
lines of equal ELBO."""

from __future__ import annotations

import math

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from vaebench.report.colours import series_colours
from vaebench.report.drawing import GREY, MARKERS, caption_below
from vaebench.report.points import Point, aggregate, error_caption, sortable
from vaebench.report.settings import PlotAxes, legend_title, setting_text, short_name


def rate_distortion_figure(rows: list[dict], axes: PlotAxes) -> Figure:
    """One marker per configuration at (rate, distortion): colour for the series, shape for the x
    setting, a thin line through each series in x order; over dashed lines of equal ELBO
    (R + D = -ELBO), each labelled inside the plot with its -ELBO near where it leaves (top or right edge)."""
    rates = aggregate(rows, axes, "val_kl")
    distortions = {label: [_negated(p) for p in series]
                   for label, series in aggregate(rows, axes, "val_reconstruction").items()}
    figure = Figure(figsize=(8, 5.5), dpi=110, layout="constrained")
    ax = figure.add_subplot()
    x_values = sorted({p.x for series in rates.values() for p in series}, key=sortable)
    markers = {x: MARKERS[i % len(MARKERS)] for i, x in enumerate(x_values)}
    colour_of = series_colours(rows, axes)
    by_label = {label: colour_of[label] for label in rates}
    for label, colour in by_label.items():
        rate, distortion = rates[label], distortions[label]
        if len(rate) > 1:
            ax.plot([p.mean for p in rate], [p.mean for p in distortion], color=colour, lw=1, alpha=0.5, zorder=2)
        for r, d in zip(rate, distortion):
            ax.errorbar(r.mean, d.mean, xerr=r.error, yerr=d.error, color=colour, marker=markers[r.x], ms=7,
                        capsize=2, ls="none", zorder=3)
    points = [(r, d) for label in rates for r, d in zip(rates[label], distortions[label])]
    x_limits = _padded(min(r.mean - (r.error or 0) for r, _ in points), max(r.mean + (r.error or 0) for r, _ in points))
    y_limits = _padded(min(d.mean - (d.error or 0) for _, d in points), max(d.mean + (d.error or 0) for _, d in points))
    step = iso_elbo_levels(x_limits, y_limits)[1]
    best = math.floor(min(r.mean + d.mean for r, d in points) / step) * step  # a round -ELBO at or below the best
    x_limits, y_limits = _reach_the_best_run(x_limits, y_limits, best)
    _iso_elbo_lines(ax, x_limits, y_limits, step)
    ax.set_xlim(*x_limits)
    ax.set_ylim(*y_limits)
    ax.set_xlabel("rate R = KL(q(z|x) || p(z))  [nats, val]")
    caption_below(figure, error_caption([p for pair in points for p in pair]))
    ax.set_ylabel("distortion D = −E_q[log p(x|z)]  [nats, val]")
    ax.set_title("Rate and distortion of each configuration (validation split)")
    figure.legend(handles=_rate_distortion_legend(by_label, markers, axes), loc="outside right upper",
                  fontsize=8, title=legend_title(axes), title_fontsize=8)
    return figure


def _negated(point: Point) -> Point:
    return Point(point.x, -point.mean, point.error, point.error_kind, tuple(-v for v in point.values))


def _rate_distortion_legend(colours: dict[str, str], markers: dict, axes: PlotAxes) -> list[Line2D]:
    handles = [Line2D([], [], color=colour, marker="o", lw=1, label=label) for label, colour in colours.items()]
    if axes.x:
        symbol = "β" if axes.x == "beta" else short_name(axes.x)
        handles += [Line2D([], [], color=GREY, marker=marker, ls="none", label=f"{symbol} = {setting_text(x)}" if x is not None else f"no {symbol}")
                    for x, marker in markers.items()]
    handles.append(Line2D([], [], ls="--", lw=0.8, color=GREY, label="equal ELBO, labelled\nwith −ELBO = R + D [nats]"))
    return handles


INSET = 0.045  # where the dashed lines are labelled: this far in from the frame (a fraction of the plot),
#               between the frame and the outermost bars (_padded leaves them 1/12 of the plot away)


def _reach_the_best_run(x_limits: tuple[float, float], y_limits: tuple[float, float],
                        best: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Limits whose labelled dashed lines (those leaving through the top or right edge) reach down to
    `best`, the round -ELBO below the best run's: the padding of a corner run can leave it below them. Widens the cheaper of
    the two ways, leftwards or downwards, and not at all where that costs over half a span."""
    (x0, x1), (y0, y1) = x_limits, y_limits
    left, down = x0 + y1 - best, x1 + y0 - best  # how far each edge must move
    if min(left, down) <= 0:
        return x_limits, y_limits
    if left / (x1 - x0) <= down / (y1 - y0):
        return ((x0 - left * 1.02, x1), y_limits) if left <= 0.5 * (x1 - x0) else (x_limits, y_limits)
    return (x_limits, (y0 - down * 1.02, y1)) if down <= 0.5 * (y1 - y0) else (x_limits, y_limits)


def _iso_elbo_lines(ax, x_limits: tuple[float, float], y_limits: tuple[float, float], step: float) -> None:
    """Dashed lines R + D = L at round values of L, each labelled once with L inside the plot, on the
    line, a little in from where it leaves through the top edge (or else the right one), clear of the
    frame; a line that leaves only through the top-right corner, where its label would meet the
    others, is left out."""
    (x0, x1), (y0, y1) = x_limits, y_limits
    width, height = x1 - x0, y1 - y0
    levels, step = iso_elbo_levels(x_limits, y_limits, step=step)
    decimals = max(0, -math.floor(math.log10(step)))
    for level in levels:
        # in axes fractions the line is width * u + height * v = level - x0 - y0
        u_top = (level - x0 - y1 + INSET * height) / width
        v_right = (level - y0 - x1 + INSET * width) / height
        if INSET <= u_top <= 1 - 3 * INSET:
            u, v = u_top, 1 - INSET
        elif INSET <= v_right <= 1 - 3 * INSET:
            u, v = 1 - INSET, v_right
        else:
            continue
        ax.plot([x0, x1], [level - x0, level - x1], ls="--", lw=0.8, color="0.7", zorder=1)
        ax.text(x0 + u * width, y0 + v * height, f"{level:.{decimals}f}", rotation=-45, transform_rotates_text=True,
                rotation_mode="anchor", ha="center", va="center", fontsize=7, color=GREY, zorder=2,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.85})


def iso_elbo_levels(x_limits: tuple[float, float], y_limits: tuple[float, float], most: int = 7,
                    step: float | None = None) -> tuple[list[float], float]:
    """Round values of -ELBO for the dashed lines, as many as fit up to `most`, and their step.
    Only lines that leave the plot through its top or right edge, where they are labelled: the
    others cross only the lower-left corner, below the runs' rate-distortion frontier. `most` lines
    over the larger span keep neighbouring labels a label's width apart."""
    (x0, x1), (y0, y1) = x_limits, y_limits
    low, high = min(x0 + y1, x1 + y0), x1 + y1
    step = step or _nice_step((high - low) / most)
    first = math.ceil(low / step) * step
    levels = [first + i * step for i in range(int((high - first) / step) + 1)]
    return [level for level in levels if level <= high], step


def _nice_step(raw: float) -> float:
    """The smallest of 1, 2, 5 times a power of ten that is at least `raw`."""
    if not raw > 0:
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw * (1 - 1e-9))


def _padded(low: float, high: float) -> tuple[float, float]:
    """10% room on each side; a span of one value gets room in proportion to the value itself."""
    span = high - low
    pad = 0.1 * span if span > 1e-9 * max(abs(high), 1.0) else 1e-3 * max(abs(high), 1.0)
    return low - pad, high + pad
