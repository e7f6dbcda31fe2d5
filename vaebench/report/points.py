"""What a figure draws of a term: one point per configuration, the mean over its replicates (seeds)
with its error bar, and what that bar is."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from vaebench.report.bars import SEEDS, Bar, caption, standard_error_bar
from vaebench.report.settings import PlotAxes, series_label


# -- what the plots draw --------------------------------------------------------------------------
@dataclass(frozen=True)
class Point:
    """One term of one configuration: the mean over its replicates (seeds) and the error bar."""
    x: object             # the x setting's value; None on a plot without a numeric axis
    mean: float
    error: float | None   # ±1 s.d. over replicates, else the run's SE, else unknown
    error_kind: Bar | None  # what `error` is (bars.py)
    values: tuple[float, ...]  # the replicates themselves


def aggregate(rows: list[dict], axes: PlotAxes, column: str) -> dict[str, list[Point]]:
    """`column` by series label, then by x value (ascending), over the rows that have it. Series
    come in the order of their settings' values (K=50 before K=500)."""
    grouped: dict[str, dict[object, list[dict]]] = {}
    order: dict[str, tuple] = {}
    for row in rows:
        if row.get(column) is None:
            continue
        label = series_label(row, axes)
        order[label] = tuple(sortable(row.get(key)) for key in axes.series)
        grouped.setdefault(label, {}).setdefault(row.get(axes.x) if axes.x else None, []).append(row)
    return {label: [mean_point(x, grouped[label][x], column) for x in sorted(grouped[label], key=sortable)]
            for label in sorted(grouped, key=lambda label: (order[label], label))}


def mean_point(x, replicates: list[dict], column: str) -> Point:
    values = tuple(float(row[column]) for row in replicates)
    if len(values) > 1:
        return Point(x, statistics.fmean(values), statistics.stdev(values), SEEDS, values)
    se = replicates[0].get(f"{column}_se")
    return Point(x, values[0], se, standard_error_bar(column, replicates[0]) if se is not None else None, values)


def sortable(value) -> tuple:
    """None first, then numbers by value, then text: a key that sorts any mix of settings."""
    if value is None:
        return (0, 0.0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, float(value), "")
    return (2, 0.0, str(value))


def error_caption(points: list[Point]) -> str:
    """What the error bars are, for a caption or an axis label; empty when there are none."""
    return caption({p.error_kind for p in points if p.error is not None})
