"""The empirical-Bayes axis of `vaebench report`: priors ordered by how much they depend on the data
(Tomczak & Welling 2018), from N(0, I) through a learned mixture of Gaussians and VampPriors with K
pseudo-inputs (K on a log scale) to the aggregate posterior of the whole training split (K = N).

Along it the prior takes over more of the training data: the marginal KL, KL(q(z) || p(z)), shrinks to
0 on the training split at K = N, the KL becomes all mutual information, and the train - test ELBO gap
shows what that costs on unseen data. A sweep over the shipped priors (`+experiment=eb_spectrum`, or
any grid over prior, prior.K and prior.learn_inputs) is drawn as prior_axis.png, and report.md gets
the same numbers as a table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from vaebench.report.colours import DERIVED, KNOWN_COLOURS, derived_index
from vaebench.report.drawing import GREY, caption_below, panel_captions
from vaebench.report.points import Point, error_caption, mean_point, sortable
from vaebench.report.table import measured_text


@dataclass(frozen=True)
class Place:
    """Where a run's prior sits: x = 0 for N(0, I), 1 for the MoG, 2 + log10 K for K pseudo-inputs."""
    x: float
    family: str  # the line the point belongs to
    tick: str
    k: str = ""  # the table's K column
    label: str = ""  # the table's name for the place, where the family's does not say it

    @property
    def name(self) -> str:
        return self.label or self.family


STANDARD, MOG = "standard N(0, I)", "MoG (learned)"
# The fixed line runs from K training points to all N of them, where the prior is the aggregate posterior.
LEARNED, FIXED = "VampPrior, learned pseudo-inputs", "training points as fixed pseudo-inputs\n(all N: the aggregate posterior)"
PRIOR_COLOURS = KNOWN_COLOURS["prior"]  # each line in its prior's colour, as in every other figure
FAMILY_STYLE = {STANDARD: (PRIOR_COLOURS["standard"], "s"), MOG: (PRIOR_COLOURS["mog"], "D"),
                LEARNED: (PRIOR_COLOURS["vamp"], "o"), FIXED: (PRIOR_COLOURS["aggregate"], "^")}
OTHER_STYLE = (DERIVED[derived_index("VampPrior, fixed random pseudo-inputs")], "v")

# (title, [(column, split)]): what each panel shows; two splits share a panel, train dashed.
PANELS = (
    ("test log p(x), importance-weighted", [("test_log_likelihood", "test")]),
    ("ELBO", [("train_elbo", "train"), ("test_elbo", "test")]),
    ("train − test ELBO (overfitting)", [("elbo_gap", None)]),
    ("active units", [("test_active_units", "test")]),
    ("KL(q(z|x) || p(z)) = I + marginal KL", [("train_kl", "train"), ("test_kl", "test")]),
    ("mutual information I(n; z)", [("train_mutual_info", "train"), ("test_mutual_info", "test")]),
    ("marginal KL, KL(q(z) || p(z))", [("train_marginal_kl", "train"), ("test_marginal_kl", "test")]),
)
TABLE_COLUMNS = {
    "test_log_likelihood": "test log p(x)", "test_elbo": "test ELBO", "train_elbo": "train ELBO",
    "elbo_gap": "train − test ELBO", "train_kl": "train KL", "test_kl": "test KL", "train_mutual_info": "train I(n;z)",
    "test_mutual_info": "test I(n;z)", "train_marginal_kl": "train KL(q(z) ‖ p(z))",
    "test_marginal_kl": "test KL(q(z) ‖ p(z))", "test_active_units": "active units",
}


def place(row: dict) -> Place | None:
    """The run's place on the axis, None for a prior that has none (a user's own)."""
    prior, k = row.get("prior"), row.get("prior.K")
    if prior == "standard":
        return Place(0.0, STANDARD, "N(0, I)")
    if prior == "mog":
        return Place(1.0, MOG, "MoG", f"{k:,}" if isinstance(k, int) else "")
    if prior == "vamp" and isinstance(k, int) and k > 0:
        if row.get("prior.learn_inputs", True) is not False:
            family, label = LEARNED, ""
        elif row.get("prior.init") == "data":
            family, label = FIXED, "training points, fixed"
        else:
            family, label = "VampPrior, fixed random pseudo-inputs", ""
        return Place(2 + math.log10(k), family, f"{k:,}", f"{k:,}", label)
    if prior == "aggregate":
        n = training_points(row)
        return Place(2 + math.log10(n), FIXED, f"N = {n:,}", f"N = {n:,}", "aggregate posterior (all training points)") if n else None
    return None


def training_points(row: dict) -> int | None:
    """N of the training split, from the bound log N of its mutual information."""
    bound = row.get("train_mutual_info_max")
    return round(math.exp(bound)) if bound is not None else None


# What a sweep along the axis varies: the prior and its settings (through conf/spectrum/ or directly),
# and seeds, which are replicates. A sweep that also varies anything else (beta, ...) is not drawn on
# the axis, whose points would then mix settings.
AXIS_KEYS = ("prior", "spectrum", "seed")


def axis_rows(rows: list[dict], varied: list[str]) -> list[dict]:
    """The rows to draw, each with its place and the ELBO gap, when the runs sit at two places or more
    of the axis and nothing but the prior (and the seed) varies; else none."""
    if any(key not in AXIS_KEYS and not key.startswith("prior.") for key in varied):
        return []
    placed = [{**row, "place": place(row), **elbo_gap(row)} for row in rows if place(row) is not None]
    return placed if len({row["place"] for row in placed}) >= 2 else []


def elbo_gap(row: dict) -> dict:
    """train - test ELBO and its standard error (independent points: the SEs add in quadrature)."""
    if row.get("train_elbo") is None or row.get("test_elbo") is None:
        return {}
    se = [row.get("train_elbo_se"), row.get("test_elbo_se")]
    return {"elbo_gap": row["train_elbo"] - row["test_elbo"],
            **({"elbo_gap_se": math.hypot(*se)} if None not in se else {})}


def points(rows: list[dict], column: str) -> dict[str, list[Point]]:
    """`column` by family, then by place (left to right), seeds averaged."""
    grouped: dict[str, dict[Place, list[dict]]] = {}
    for row in rows:
        if row.get(column) is not None:
            grouped.setdefault(row["place"].family, {}).setdefault(row["place"], []).append(row)
    return {family: [mean_point(p.x, grouped[family][p], column) for p in sorted(grouped[family], key=lambda p: p.x)]
            for family in sorted(grouped, key=lambda f: min(p.x for p in grouped[f]))}


def figure(rows: list[dict]) -> Figure:
    """Seven panels against the axis, the eighth the legend."""
    fig = Figure(figsize=(17, 8), dpi=100, layout="constrained")
    grid = fig.subplots(2, 4)
    places = sorted({row["place"] for row in rows}, key=lambda p: p.x)
    families = list(points(rows, "test_elbo") or points(rows, "train_elbo"))
    used_splits, captions = set(), []
    for ax, (title, columns) in zip(grid.flat, PANELS):
        drawn = []
        for column, split in columns:
            for family, series in points(rows, column).items():
                colour, marker = FAMILY_STYLE.get(family, OTHER_STYLE)
                dashed = split == "train" and len(columns) > 1
                ax.errorbar([p.x for p in series], [p.mean for p in series],
                            yerr=[p.error or 0.0 for p in series] if any(p.error for p in series) else None,
                            color=colour, marker=marker, ms=6, capsize=3, lw=1.4, ls="--" if dashed else "-",
                            mfc="white" if dashed else colour)
                drawn += series
                used_splits.add(split if len(columns) > 1 else None)
        if "mutual_info" in columns[0][0]:
            _mutual_info_bound(ax, rows, title)
        if columns[0][0] == "elbo_gap":
            ax.axhline(0.0, lw=0.8, color=GREY)
        if "active" in title:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        captions.append((title, error_caption(drawn)))
        if not ax.get_title():
            ax.set_title(title, fontsize=10)
        ax.set_ylabel("nats per point" if "active" not in title else "dimensions", fontsize=8)
        _axis_ticks(ax, places)
        ax.grid(alpha=0.25)
    legend = grid.flat[-1]
    legend.axis("off")
    handles = [Line2D([], [], color=FAMILY_STYLE.get(f, OTHER_STYLE)[0], marker=FAMILY_STYLE.get(f, OTHER_STYLE)[1],
                      label=f) for f in families]
    if {"train", "test"} <= used_splits:
        handles += [Line2D([], [], color=GREY, ls="--", marker="o", mfc="white", label="training split"),
                    Line2D([], [], color=GREY, ls="-", marker="o", label="test split")]
    legend.legend(handles=handles, loc="center", fontsize=9, title="prior", title_fontsize=9, frameon=False)
    caption_below(fig, panel_captions(captions))
    fig.suptitle("The empirical-Bayes axis: priors from N(0, I) to the aggregate posterior (K = N); "
                 "right = more of the data in the prior", fontsize=11)
    return fig


def _mutual_info_bound(ax, rows: list[dict], title: str) -> None:
    """The bound I(n; z) <= log N of the training split: drawn where it leaves the data at least half the
    panel, else named in the title, so that it never flattens the data."""
    bound = max((row["train_mutual_info_max"] for row in rows if row.get("train_mutual_info_max")), default=None)
    if bound is None:
        return
    top = max(row.get(c) or 0.0 for row in rows for c in ("train_mutual_info", "test_mutual_info"))
    if bound <= 2 * max(top, 0.0):
        ax.axhline(bound, ls=":", lw=1, color=GREY)
        ax.annotate(f"log N = {bound:.1f}", (0.03, bound), xycoords=("axes fraction", "data"), va="bottom",
                    fontsize=7, color=GREY)
    else:
        ax.set_title(f"{title}\n(at most log N = {bound:.1f}, off scale)", fontsize=10)


def _axis_ticks(ax, places: list[Place]) -> None:
    ticks = {}
    for p in places:
        ticks.setdefault(round(p.x, 6), p.tick)
    ax.set_xticks(list(ticks), list(ticks.values()), fontsize=7, rotation=30)
    if any(p.x >= 2 for p in places) and any(p.x < 2 for p in places):
        ax.axvline(1.5, color="0.85", lw=0.8)  # the fixed-form priors | K on a log scale
    ax.set_xlim(min(ticks) - 0.4, max(ticks) + 0.4)
    ax.set_xlabel("K pseudo-inputs (log scale) →", fontsize=7)


def markdown_table(rows: list[dict]) -> list[str]:
    """report.md's table of the axis: one line per place and family, seeds averaged, left to right."""
    columns = [c for c in TABLE_COLUMNS if any(row.get(c) is not None for row in rows)]
    lines = ["## The empirical-Bayes axis", "",
             "Priors ordered by how much they depend on the data (left to right; nats per point, ± 1 SE, or "
             "± 1 s.d. over seeds):", "",
             "| prior | K | runs | " + " | ".join(TABLE_COLUMNS[c] for c in columns) + " |",
             "|---|---:|---:|" + "---:|" * len(columns)]
    keyed: dict[Place, list[dict]] = {}
    for row in rows:
        keyed.setdefault(row["place"], []).append(row)
    for p in sorted(keyed, key=lambda p: (p.x, sortable(p.family))):
        group = keyed[p]
        cells = []
        for column in columns:
            have = [row for row in group if row.get(column) is not None]
            if not have:
                cells.append("")
                continue
            point = mean_point(p.x, have, column)
            value = int(round(point.mean)) if column.endswith("active_units") else point.mean
            cells.append(measured_text(value, point.error if not isinstance(value, int) else None))
        lines.append(f"| {p.name} | {p.k} | {len(group)} | " + " | ".join(cells) + " |")
    return lines + [""]
