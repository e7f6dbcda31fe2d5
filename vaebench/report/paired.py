"""Paired comparisons between a sweep's configurations, on the test points their runs share.

Each run's test terms are means over the same points, and most of a run's standard error is the
points' spread (one image is harder than another for every model): two runs compared by their own
SEs look alike when they are not. Scored on the same points (the run folders' test_points.npz, the
same fingerprint), the difference of two runs is the mean of their per-point differences, with the
standard error of that mean: the paired SE. With several seeds, each seed's runs are paired on that
seed's points, and the difference's SE is the spread of the seeds' differences (sd / sqrt(seeds)),
which holds training's noise as well as the points'. Runs on different points are never paired, nor
a term estimated with different settings (ESTIMATED_WITH); every seed left out is named.

Every configuration is compared with the sweep's first (the configuration of its run 0: the first
value of each swept setting), term by term, and each difference is tested against 0 by a two-sided
t test with its SE's degrees of freedom (significance.py): seeds − 1 across seeds, points − 1 over
one seed's points.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaebench.report.settings import REPLICATE_KEY, configuration_names, configurations
from vaebench.report.significance import TTest, legend, seeds_text
from vaebench.run.per_point import load_points

TERMS = {"log_likelihood": "log p(x)", "elbo": "ELBO", "reconstruction": "reconstruction", "kl": "KL"}
# The settings a term's per-point estimate depends on, beside the model and the points: the importance
# samples bias log p(x) low by an amount of their number. Runs that differ in one are not paired on that
# term, unless the sweep varies it (then the configurations' labels name it and the difference is its).
ESTIMATED_WITH = {"log_likelihood": ("eval.iw_samples",)}


@dataclass(frozen=True)
class Difference:
    """One term of `label` − `reference` on the test points, tested against 0."""
    label: str
    reference: str
    term: str
    test: TTest
    how: str  # "paired, 500 points" or "3 seeds, paired on each seed's points"

    @property
    def mean(self) -> float:
        return self.test.mean

    @property
    def se(self) -> float:
        return self.test.se

    def text(self) -> str:
        return self.test.text()


@dataclass(frozen=True)
class SeedPoints:
    """One run's test points: their fingerprint, each term's values there, and the run's settings that
    its terms' estimates depend on (ESTIMATED_WITH)."""
    points_id: str
    values: dict[str, np.ndarray]
    settings: dict

    def fingerprint(self, term: str, ignore=()) -> tuple:
        return (self.points_id, *((key, self.settings.get(key)) for key in ESTIMATED_WITH.get(term, ())
                                  if key not in ignore))


def kept_points(run_dir: Path, row: dict) -> SeedPoints | None:
    """The run's test points with the settings of `row` (its table row) they were estimated with; None
    where the run kept none (an earlier vaebench's, or one stopped before its final evaluation)."""
    points = load_points(run_dir)
    if points is None:
        return None
    keys = {key for keys in ESTIMATED_WITH.values() for key in keys}
    return SeedPoints(points[0], points[1], {key: row.get(key) for key in keys})


def paired_mean_and_se(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """The mean of a − b over the same points and its standard error (the differences' sd / sqrt(n))."""
    test = TTest.of(a.astype(np.float64) - b.astype(np.float64), "point")
    return test.mean, test.se


def paired_differences(rows: list[dict], varied: list[str], sweep_dir: Path) -> tuple[list[Difference], list[str]]:
    """Every configuration's paired differences from the sweep's first, and a note for each that could
    not be paired, or was paired without some of its seeds (naming them and why)."""
    groups = configurations(rows, varied)
    if len(groups) < 2:
        return [], []
    names = configuration_names(groups)
    (reference_config, reference_rows), *others = groups.items()
    reference = _points_by_seed(reference_rows, sweep_dir)
    found, notes = [], []
    for config, config_rows in others:
        mine = _points_by_seed(config_rows, sweep_dir)
        sides = (names[config], names[reference_config])
        reasons: dict[str, None] = {}  # ordered, each once: a seed missing from one side is so for every term
        compared = []
        for term in TERMS:
            test, how, why = compare(mine, reference, term, sides, ignore=varied)
            reasons.update(dict.fromkeys(why))
            if test is not None:
                compared.append(Difference(*sides, term, test, how))
        found += compared
        if not compared:
            notes.append(f"{sides[0]} is not compared with {sides[1]}: " + "; ".join(reasons) + ".")
        elif reasons:
            notes.append(f"{sides[0]} − {sides[1]} leaves out " + "; ".join(reasons) + ".")
    return found, notes


def compare(mine: dict, reference: dict, term: str, sides=("it", "the reference"),
            ignore=()) -> tuple[TTest | None, str, list[str]]:
    """mine − reference in `term` ({seed: SeedPoints or None} each), over the seeds where both runs
    scored the same points with the same settings (`ignore`: settings whose difference is the point of
    the comparison): over one seed, paired over its points; over several, the mean of the seeds'
    paired differences, over seeds. Returns the test (None where no seed is left), how it was paired,
    and why each other seed was left out."""
    seeds, why = [], []
    anywhere = any(points is not None and term in points.values
                   for side in (mine, reference) for points in side.values())
    for seed in dict.fromkeys([*mine, *reference]):
        a, b = mine.get(seed), reference.get(seed)
        if seed not in mine or seed not in reference:
            why.append(f"{_seed(seed)}: no run of {sides[seed in mine]}")
        elif a is None or b is None:
            kept_none = " and ".join(side for side, points in zip(sides, (a, b)) if points is None)
            why.append(f"{_seed(seed)}: the run of {kept_none} kept no test_points.npz")
        elif a.points_id != b.points_id:
            why.append(f"{_seed(seed)}: not scored on the same test points")
        elif term not in a.values or term not in b.values:
            if not anywhere:  # a term no run kept (no log p(x) where eval.iw_samples=0) is not a gap
                continue
            lacking = " and ".join(side for side, points in zip(sides, (a, b)) if term not in points.values)
            why.append(f"{_seed(seed)}: the run of {lacking} kept no {TERMS.get(term, term)}")
        elif a.fingerprint(term, ignore) != b.fingerprint(term, ignore):
            settings = ", ".join(f"{key}={a.settings.get(key)} against {b.settings.get(key)}" for key in ESTIMATED_WITH[term]
                                 if key not in ignore and a.settings.get(key) != b.settings.get(key))
            why.append(f"{_seed(seed)}: {TERMS.get(term, term)} estimated with {settings}")
        else:
            seeds.append(seed)
    if not seeds:
        return None, "", why
    if len(seeds) == 1:
        a, b = mine[seeds[0]].values[term], reference[seeds[0]].values[term]
        return TTest.of(a.astype(np.float64) - b.astype(np.float64), "point"), f"paired, {len(a):,} points", why
    means = [paired_mean_and_se(mine[seed].values[term], reference[seed].values[term])[0] for seed in seeds]
    return TTest.of(means, "seed"), f"{len(seeds)} seeds, paired on each seed's points", why


def _seed(seed) -> str:
    return f"seed {seed}" if seed is not None else "the run without a seed"


def _points_by_seed(rows: list[dict], sweep_dir: Path) -> dict:
    """{seed: SeedPoints, or None where its run kept no test points} (one run per seed)."""
    kept = {}
    for row in rows:
        if kept.get(row.get(REPLICATE_KEY)) is None:
            kept[row.get(REPLICATE_KEY)] = kept_points(sweep_dir / row["run"], row)
    return kept


def console_lines(differences: list[Difference]) -> list[str]:
    """A table: one line per configuration, one column per term, `+2.31 ± 0.09 *` (`*`: p < 0.05, with the
    test named below it), then the seeds a difference not told apart would need."""
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
        lines.append(f"  {label:<{width}}{cells}  {'; '.join(dict.fromkeys(d.how for d in row.values()))}")
    lines.append(f"  {legend([d.test for d in differences])}. Differences are configuration − reference "
                 "(higher log p(x), ELBO and reconstruction are better; lower KL is less rate).")
    lines += [f"  {line}" for line in _seeds_lines(differences)]
    return lines


def _seeds_lines(differences: list[Difference]) -> list[str]:
    """What more seeds would settle: for each difference over seeds not told apart, the seeds it would
    need at its size and spread; over one seed, that training's noise is not in its SE."""
    lines = []
    unsettled = [d for d in differences if d.test.unit == "seed" and d.test.testable and not d.test.real]
    if unsettled:
        lines.append("Seeds a difference of that size would need to pass, at its seeds' spread (about even odds "
                     "of passing if it is the true size): " + "; ".join(
                         f"{d.label} {TERMS[d.term]} {seeds_text(d.test)}" for d in unsettled) + ".")
    if any(d.test.unit == "point" for d in differences):
        lines.append("Over one seed the SE is the points' noise only, not training's: a claim about the "
                     "configurations needs several seeds (seed=0,1,2).")
    return lines


def markdown_lines(differences: list[Difference]) -> list[str]:
    if not differences:
        return []
    lines = [f"## Paired differences from {differences[0].reference}", "",
             "Each configuration − the sweep's first on the same test points, nats per point, ± the paired SE; "
             "*test*: a two-sided t test of the difference against 0 with its SE's degrees of freedom "
             "(seeds − 1 across seeds, points − 1 over one seed's points), * where p < 0.05; *seeds needed*: "
             "the fewest seeds at which a difference of that size and spread would pass.", "",
             "| configuration | term | difference | SE | test | seeds needed | how |",
             "|---|---|---:|---:|---|---:|---|"]
    lines += [f"| {d.label} | {TERMS[d.term]} | {d.mean:+.3f} | {d.se:.3f} | {d.test.verdict()}"
              f"{' *' if d.test.real else ''} | {_short_seeds(d.test)} | {d.how} |" for d in differences]
    lines += ["", *_seeds_lines(differences)] if any(d.test.unit == "point" for d in differences) else []
    return lines


def _short_seeds(test: TTest) -> str:
    return "unknown (one seed)" if test.unit == "point" else seeds_text(test)


def differences_figure(differences: list[Difference]):
    """paired_differences.png, a paper's width: one panel per term, each configuration's difference from
    the reference with ±1 paired SE, its 95% t interval shaded around it (±t·SE at its degrees of
    freedom: clear of the line at 0, p < 0.05), and a caption that says so."""
    from matplotlib.figure import Figure

    terms = [term for term in TERMS if any(d.term == term for d in differences)]
    configs = list(dict.fromkeys(d.label for d in differences))
    caption = textwrap.fill(figure_caption(differences), CAPTION_CHARS)
    names = [wrapped_label(label) for label in configs]
    lines = sum(max(1, name.count("\n") + 0.5) for name in names)
    height = 1.25 + 0.22 * lines + 0.12 * (caption.count("\n") + 1)
    figure = Figure(figsize=(PAPER_WIDTH_INCHES, max(2.4, height)), dpi=200, layout="constrained")
    axes = figure.subplots(1, len(terms), sharey=True, squeeze=False)[0]
    for ax, term in zip(axes, terms):
        found = {d.label: d for d in differences if d.term == term}
        for position, label in enumerate(configs):
            if label not in found:
                continue
            test = found[label].test
            if test.testable:
                ax.fill_betweenx([position - 0.3, position + 0.3], test.mean - test.critical * test.se,
                                 test.mean + test.critical * test.se, color="0.85", lw=0)
            colour = "C0" if test.real else "0.5"
            ax.errorbar(test.mean, position, xerr=test.se, fmt="o", ms=3.5, color=colour, capsize=2,
                        mfc=colour if test.testable else "white")
        ax.axvline(0, color="0.3", lw=0.8)
        ax.set_title(f"{TERMS[term]}\n{BETTER[term]}", fontsize=7.5)
        ax.set_xlabel("nats per point", fontsize=7)
        ax.tick_params(labelsize=6.5)
        ax.grid(axis="x", alpha=0.25)
    axes[0].set_yticks(range(len(configs)), names)
    axes[0].set_ylim(len(configs) - 0.5, -0.5)
    figure.suptitle(textwrap.fill(f"Test-point differences from {differences[0].reference}", 110), fontsize=8.5)
    figure.supxlabel(caption, fontsize=6, color="0.2", ha="left", x=0.01)
    return figure


# Which way is better along each term's x axis: a difference is configuration − reference.
BETTER = {"log_likelihood": "higher is better →", "elbo": "higher is better →",
          "reconstruction": "higher is better →", "kl": "← lower: less rate"}
PAPER_WIDTH_INCHES = 6.5  # a paper's text width
CAPTION_CHARS = 150       # a caption line at 6 pt across that width
LABEL_CHARS = 28          # a configuration's name per line, at 6.5 pt beside the first panel


def wrapped_label(label: str) -> str:
    """A configuration's name on lines of about LABEL_CHARS, broken between words: a setting such as
    experiment=hvae_vampprior_mnist stays whole. A name holding a word half as long again (a path) has
    its over-long words cut, so that it cannot squeeze the panels."""
    cut = max(map(len, label.split()), default=0) > LABEL_CHARS * 3 // 2
    return textwrap.fill(label, LABEL_CHARS, break_long_words=cut)


def figure_caption(differences: list[Difference]) -> str:
    reference = differences[0].reference
    tests = {(d.test.name(), d.test.critical): d.how for d in differences if d.test.testable}
    bands = "; ".join(f"{name}: ±{critical:.2f} SE" for name, critical in sorted(tests, key=lambda t: -t[1]))
    hows = "; ".join(sorted({d.how for d in differences}))
    caption = (f"Each configuration − {reference} on the same test points; the line at 0: no difference from "
               f"{reference}. Higher log p(x), ELBO and reconstruction are better; lower KL is less rate. "
               f"Bars: ±1 paired SE ({hows}); grey band around each difference: its 95% t interval ({bands}), "
               "clear of 0 where p < 0.05; blue: p < 0.05, two-sided t; grey: not told apart from 0")
    return caption + ("; hollow: the same on every seed or point, no test"
                      if any(not d.test.testable for d in differences) else "")
