"""The colour of a series, the same in every report: a shipped prior or objective has its own colour
(the standard prior is blue whatever else a sweep compared it with), and any other series takes one
derived from its label's text, never from its rank among the series present."""

from __future__ import annotations

import zlib

from matplotlib import colormaps

from vaebench.report.settings import PlotAxes, series_label


# matplotlib's first ten colours, each given for good to one shipped component; prior_axis.py draws the
# empirical-Bayes axis in the prior's colour too (the aggregate posterior ends its line of fixed inputs).
KNOWN_COLOURS = {
    "prior": {"standard": "C0", "mog": "C1", "vamp": "C2", "aggregate": "C3"},
    "objective": {"elbo": "C4", "beta_tc": "C9", "capacity": "C5", "free_bits": "C8", "iwae": "C6"},
}


# Twenty colours other than those above, for every other series (a user's prior, a K, a beta, a
# combination of settings): picked by a checksum of the label, stable across processes and reports.
DERIVED = tuple(colormaps["tab20b"].colors)
STRIDE = 7  # to the next colour when two series of one figure meet: another hue, not a shade of the same


def known_colour(row: dict, axes: PlotAxes) -> str | None:
    """The fixed colour of the row's series where one shipped component alone tells it apart: the
    prior (also when the sweep varied nothing but it), or the objective."""
    keys = [key for key in axes.series if row.get(key) is not None] if axes.series else ["prior"]
    if len(keys) != 1 or keys[0] not in KNOWN_COLOURS:
        return None
    return KNOWN_COLOURS[keys[0]].get(str(row.get(keys[0])))


def derived_index(label: str) -> int:
    return zlib.crc32(label.encode()) % len(DERIVED)


def series_colours(rows: list[dict], axes: PlotAxes) -> dict[str, object]:
    """Each series label of `rows` -> its colour. Known components take theirs; the others their
    derived colour, or, where two of one figure would share it, the next free one."""
    labels: dict[str, str | None] = {}
    for row in rows:
        labels.setdefault(series_label(row, axes), known_colour(row, axes))
    colours: dict[str, object] = {label: colour for label, colour in labels.items() if colour is not None}
    taken = set(colours.values())
    for label in sorted(label for label, colour in labels.items() if colour is None):
        start = derived_index(label)
        tries = [DERIVED[(start + STRIDE * i) % len(DERIVED)] for i in range(len(DERIVED))]
        colours[label] = next((colour for colour in tries if colour not in taken), tries[0])
        taken.add(colours[label])
    return colours
