"""Whether a difference is told apart from 0: a two-sided t test at 5%, with the degrees of freedom its
standard error was estimated from.

A difference's SE comes from few numbers: across seeds it is sd(the seeds' differences) / √seeds, with
seeds − 1 degrees of freedom; over one seed's points, sd(the points' differences) / √points, with
points − 1. Judged by a fixed |mean| > 2 SE, a true difference of 0 passes for real in 30% of
comparisons at 2 seeds and 18% at 3; the t quantile of the SE's degrees of freedom (12.7 SE at 2 seeds,
4.30 at 3, 2.78 at 5, 1.96 over 500 points) holds it at 5%. A zero SE is no evidence either way: values
equal on every seed (or point) leave no spread to judge the difference by, so it is not tested.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
MOST_SEEDS = 1000  # beyond this, "seeds needed" is reported as more than it


@dataclass(frozen=True)
class TTest:
    """The mean of `n` differences (one per seed, or per point of one seed) and its SE, tested against 0."""
    mean: float
    se: float
    n: int
    unit: str = "seed"  # what the differences are over: "seed" or "point"

    @classmethod
    def of(cls, differences, unit: str = "seed") -> "TTest":
        values = np.asarray(differences, dtype=np.float64)
        se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else 0.0
        return cls(float(values.mean()), float(se), len(values), unit)

    @property
    def df(self) -> int:
        return self.n - 1

    @property
    def testable(self) -> bool:
        return self.df >= 1 and self.se > 0 and math.isfinite(self.se) and math.isfinite(self.mean)

    @property
    def p(self) -> float | None:
        return float(2 * stats.t.sf(abs(self.mean) / self.se, self.df)) if self.testable else None

    @property
    def real(self) -> bool:
        """Told apart from 0: p < ALPHA. Never for an untestable difference (no spread, or one value)."""
        return self.testable and self.p < ALPHA

    @property
    def critical(self) -> float:
        """How many SEs from 0 a difference must lie to pass: t_{1 − ALPHA/2} at its degrees of freedom."""
        return float(stats.t.ppf(1 - ALPHA / 2, self.df)) if self.df >= 1 else math.inf

    @property
    def mark(self) -> str:
        return "*" if self.real else "=" if self.n > 1 and not self.testable else ""

    def name(self) -> str:
        """e.g. 't with 2 df'"""
        return f"t with {self.df:,} df"

    def text(self, digits: int = 2) -> str:
        """e.g. '+0.08 ± 0.02', '-3.49 ± 0.46 *', '+0.00 ± 0.00 ='"""
        return f"{self.mean:+.{digits}f} ± {self.se:.{digits}f}" + (f" {self.mark}" if self.mark else "")

    def verdict(self) -> str:
        """e.g. 'p = 0.057, t with 2 df', 'p < 0.001, t with 499 df', 'identical on every seed: no test'"""
        if self.n < 2:
            return f"one {self.unit}: no spread, no test"
        if not self.testable:
            same = "identical" if self.mean == 0 else "the same difference"
            return f"{same} on every {self.unit}: no test"
        return f"{p_text(self.p)}, {self.name()}"

    def seeds_needed(self) -> int | None:
        """Across seeds, the fewest seeds at which a difference of this mean and this spread of the seeds'
        differences would pass: the smallest k with |mean| / (sd / √k) > t_{1 − ALPHA/2, k − 1}. At that k,
        were the true difference this size, about half of k-seed sweeps would pass (more seeds for more
        power). None where none up to MOST_SEEDS would, where there is no spread to go by, or over points."""
        if self.unit != "seed" or not self.testable or self.mean == 0:
            return None
        return seeds_needed(self.mean, self.se * math.sqrt(self.n))


def p_text(p: float) -> str:
    """e.g. 'p = 0.134', 'p < 0.001'; never rounded across ALPHA (0.0498 is not 'p = 0.050')."""
    if p < 0.001:
        return "p < 0.001"
    for digits in range(3, 7):
        if round(p, digits) != ALPHA and (round(p, digits) < ALPHA) == (p < ALPHA):
            break
    return f"p = {p:.{digits}f}"


def seeds_needed(mean: float, sd: float, most: int = MOST_SEEDS) -> int | None:
    """The smallest k (≥ 2, ≤ most) with |mean| √k / sd > t_{1 − ALPHA/2, k − 1}; None if there is none."""
    if sd <= 0 or mean == 0:
        return None
    k = np.arange(2, most + 1)
    passes = abs(mean) * np.sqrt(k) / sd > stats.t.ppf(1 - ALPHA / 2, k - 1)
    return int(k[passes.argmax()]) if passes.any() else None


def seeds_text(test: TTest) -> str:
    """What the report says of the seeds a difference would need: '7', '> 1,000', or why it cannot say."""
    if test.unit != "seed":
        return "unknown: one seed (its SE is the points' noise, not training's)"
    if not test.testable:
        return "unknown: no spread"
    needed = test.seeds_needed()
    return f"{needed:,}" if needed is not None else f"> {MOST_SEEDS:,}"


def legend(tests: list[TTest]) -> str:
    """What the marks mean, naming the tests used: '*: p < 0.05 in a two-sided t test of the difference
    against 0 (t with 2 df: 3 seeds); unmarked: not told apart from 0; =: ...'"""
    over = {f"{t.name()}: {t.n:,} {t.unit}s" for t in tests if t.testable}
    lines = f"*: p < {ALPHA:g} in a two-sided t test of the difference against 0"
    lines += f" ({'; '.join(sorted(over))}); unmarked: not told apart from 0" if over else ""
    if any(t.mark == "=" for t in tests):
        lines += "; =: the same on every seed or point (identical where it is +0.00): no spread, no test"
    return lines
