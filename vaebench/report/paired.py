"""Paired comparisons between a sweep's configurations, on the test points their runs share.

Each run's test terms are means over the same points, and most of a run's standard error is the
points' spread (one image is harder than another for every model): two runs compared by their own
SEs look alike when they are not. Scored on the same points (the run folders' test_points.npz, the
same fingerprint), the difference of two runs is the mean of their per-point differences, with the
standard error of that mean: the paired SE. With several seeds, each seed's runs are paired on that
seed's points, and the difference's SE is the spread of the seeds' differences (sd / sqrt(seeds)),
which holds training's noise as well as the points'. Runs on different points are never paired.

Every configuration is compared with the sweep's first (the configuration of its run 0: the first
value of each swept setting), term by term; a difference within 2 SE is marked as not told apart
from noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaebench.report.runs import natural_key
from vaebench.report.settings import REPLICATE_KEY, prior_label, setting_text, short_name
from vaebench.run.per_point import load_points

TERMS = {"log_likelihood": "log p(x)", "elbo": "ELBO", "reconstruction": "reconstruction", "kl": "KL"}
NOISE_SE = 2.0  # a difference within this many SEs is not told apart from noise


@dataclass(frozen=True)
class Difference:
    """One term of `label` − `reference` on the test points."""
    label: str
    reference: str
    term: str
    mean: float
    se: float
    how: str  # "paired, 500 points" or "3 seeds, paired on each seed's points"

    @property
    def within_noise(self) -> bool:
        return abs(self.mean) < NOISE_SE * self.se

    def text(self) -> str:
        return f"{self.mean:+.2f} ± {self.se:.2f}" + (" ~" if self.within_noise else "")


def paired_mean_and_se(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """The mean of a − b over the same points and its standard error (the differences' sd / sqrt(n))."""
    difference = a.astype(np.float64) - b.astype(np.float64)
    se = difference.std(ddof=1) / math.sqrt(len(difference)) if len(difference) > 1 else 0.0
    return float(difference.mean()), float(se)


def configurations(rows: list[dict], varied: list[str]) -> dict[tuple, list[dict]]:
    """The rows grouped by what the sweep varied, seeds aside; in the order of the sweep's runs."""
    keys = [key for key in varied if key != REPLICATE_KEY]
    groups: dict[tuple, list[dict]] = {}
    for row in sorted(rows, key=lambda row: natural_key(Path(row["run"]))):
        groups.setdefault(tuple((key, row.get(key)) for key in keys), []).append(row)
    return groups


def labels(groups: dict[tuple, list[dict]]) -> dict[tuple, str]:
    """Short names ('VampPrior K=500', 'VampPrior K=500, training points' for fixed pseudo-inputs taken from
    the data, 'beta=4'), or every varied setting where short names collide."""
    def short(config: tuple, row: dict) -> str:
        fixed = ", training points" if row.get("prior.learn_inputs") is False and row.get("prior.init") == "data" else ""
        parts = [prior_label(row) + fixed] if any(key == "prior" or key.startswith("prior.") for key, _ in config) else []
        parts += [f"{short_name(key)}={setting_text(value)}" for key, value in config
                  if not (key == "prior" or key.startswith("prior.") or key == "spectrum") and value is not None]
        return ", ".join(parts) or "the runs"

    named = {config: short(config, rows[0]) for config, rows in groups.items()}
    if len(set(named.values())) < len(named):
        named = {config: ", ".join(f"{short_name(key)}={setting_text(value)}" for key, value in config
                                   if value is not None) for config in groups}
    return named


def paired_differences(rows: list[dict], varied: list[str], sweep_dir: Path) -> tuple[list[Difference], list[str]]:
    """Every configuration's paired differences from the sweep's first, and a note for each that
    could not be paired."""
    groups = configurations(rows, varied)
    if len(groups) < 2:
        return [], []
    names = labels(groups)
    (reference_config, reference_rows), *others = groups.items()
    reference = _points_by_seed(reference_rows, sweep_dir)
    found, notes = [], []
    for config, config_rows in others:
        mine = _points_by_seed(config_rows, sweep_dir)
        if not shared_seeds(mine, reference):
            notes.append(f"{names[config]} is not compared with {names[reference_config]}: no seed of the two "
                         f"was scored on the same test points (or a run kept no test_points.npz).")
            continue
        for term in TERMS:
            found_term = difference_over_seeds(mine, reference, term)
            if found_term is None:
                continue
            mean, se, how = found_term
            found.append(Difference(names[config], names[reference_config], term, mean, se, how))
    return found, notes


def shared_seeds(mine: dict, reference: dict) -> list:
    """The seeds whose runs of both were scored on the same points ({seed: (points_id, values)} each)."""
    return [seed for seed in mine if seed in reference and mine[seed][0] == reference[seed][0]]


def difference_over_seeds(mine: dict, reference: dict, term: str) -> tuple[float, float, str] | None:
    """mine − reference in `term` on the points they share: over one seed, paired over its points; over
    several, the mean of the seeds' paired differences with the SE of that mean (sd / sqrt(seeds)).
    None where no shared seed kept the term."""
    shared = shared_seeds(mine, reference)
    if not shared or not all(term in mine[seed][1] and term in reference[seed][1] for seed in shared):
        return None
    per_seed = [paired_mean_and_se(mine[seed][1][term], reference[seed][1][term]) for seed in shared]
    if len(per_seed) == 1:
        (mean, se), points = per_seed[0], len(mine[shared[0]][1][term])
        return mean, se, f"paired, {points:,} points"
    means = np.array([mean for mean, _ in per_seed])
    return float(means.mean()), float(means.std(ddof=1) / math.sqrt(len(means))), \
        f"{len(means)} seeds, paired on each seed's points"


def _points_by_seed(rows: list[dict], sweep_dir: Path) -> dict:
    """{seed: (points_id, {term: values})} of the rows that kept their test points (one run per seed)."""
    kept = {}
    for row in rows:
        points = load_points(sweep_dir / row["run"])
        if points is not None:
            kept.setdefault(row.get(REPLICATE_KEY), points)
    return kept


def console_lines(differences: list[Difference]) -> list[str]:
    """A table: one line per configuration, one column per term, `+2.31 ± 0.09` (`~`: within 2 SE)."""
    if not differences:
        return []
    first = differences[0]
    terms = [term for term in TERMS if any(d.term == term for d in differences)]
    by_label: dict[str, dict[str, Difference]] = {}
    for d in differences:
        by_label.setdefault(d.label, {})[d.term] = d
    width = max(len(label) for label in by_label)
    lines = [f"Test-point differences from {first.reference} (the sweep's first), nats per point, ± paired SE:",
             "  " + " " * width + "".join(f"  {TERMS[term]:>16}" for term in terms) + "  how"]
    for label, row in by_label.items():
        cells = "".join(f"  {row[term].text() if term in row else '-':>16}" for term in terms)
        lines.append(f"  {label:<{width}}{cells}  {next(iter(row.values())).how}")
    lines.append(f"  ~: within {NOISE_SE:g} SE of 0, not told apart from noise. Differences are "
                 "configuration − reference (higher log p(x), ELBO and reconstruction are better; lower KL is less rate).")
    return lines


def markdown_lines(differences: list[Difference]) -> list[str]:
    if not differences:
        return []
    lines = [f"## Paired differences from {differences[0].reference}", "",
             "Each configuration − the sweep's first on the same test points, nats per point, ± the paired "
             f"SE; *within noise*: less than {NOISE_SE:g} SE from 0.", "",
             "| configuration | term | difference | SE | within noise | how |", "|---|---|---:|---:|---|---|"]
    lines += [f"| {d.label} | {TERMS[d.term]} | {d.mean:+.3f} | {d.se:.3f} | {'yes' if d.within_noise else 'no'} | {d.how} |"
              for d in differences]
    return lines


def differences_figure(differences: list[Difference]):
    """paired_differences.png: one panel per term, each configuration's difference from the reference
    with ±1 paired SE (±2 SE shaded: within it, not told apart from noise)."""
    from matplotlib.figure import Figure

    terms = [term for term in TERMS if any(d.term == term for d in differences)]
    configs = list(dict.fromkeys(d.label for d in differences))
    figure = Figure(figsize=(3.2 * len(terms) + 1.5, 1.4 + 0.45 * len(configs)), dpi=110, layout="constrained")
    axes = figure.subplots(1, len(terms), sharey=True, squeeze=False)[0]
    for ax, term in zip(axes, terms):
        found = {d.label: d for d in differences if d.term == term}
        for position, label in enumerate(configs):
            if label not in found:
                continue
            d = found[label]
            ax.fill_betweenx([position - 0.3, position + 0.3], d.mean - NOISE_SE * d.se, d.mean + NOISE_SE * d.se,
                             color="0.85", lw=0)
            ax.errorbar(d.mean, position, xerr=d.se, fmt="o", color="0.5" if d.within_noise else "C0", capsize=3)
        ax.axvline(0, color="0.3", lw=1)
        ax.set_title(f"{TERMS[term]}", fontsize=10)
        ax.set_xlabel("nats per point")
        ax.grid(axis="x", alpha=0.25)
    axes[0].set_yticks(range(len(configs)), configs)
    axes[0].set_ylim(len(configs) - 0.5, -0.5)
    figure.suptitle(f"Test-point differences from {differences[0].reference}", fontsize=11)
    hows = sorted({d.how for d in differences})
    figure.supxlabel(f"bars: ±1 paired SE ({'; '.join(hows)}); grey band: ±{NOISE_SE:g} SE; grey dots: within it",
                     fontsize=8, color="0.2")
    return figure
