"""The test every comparison of the report and the record scripts goes through: a two-sided t test with
the SE's degrees of freedom, which holds its false-positive share at 5% however few the seeds."""

import math

import numpy as np
import pytest

from vaebench.report.paired import SeedPoints, compare
from vaebench.report.significance import TTest, legend, p_text, seeds_needed, seeds_text


def sweep_with_no_true_difference(rng, seeds, points=50):
    """Two configurations, each seed scoring both on its own points: every run carries its own training
    noise (sd 0.5 nats, shared by all its points) on top of the points' difficulty; the true difference
    is 0."""
    mine, reference = {}, {}
    for seed in range(seeds):
        difficulty = rng.normal(-100, 30, points)
        for side in (mine, reference):
            side[seed] = SeedPoints(f"points of seed {seed}", {"elbo": difficulty + rng.normal(0, 0.5)
                                                              + rng.normal(0, 1, points)}, {})
    return mine, reference


@pytest.mark.parametrize("seeds, two_se_share", [(2, 0.30), (3, 0.18), (5, 0.11)])
def test_with_no_true_difference_five_percent_are_marked_however_few_the_seeds(seeds, two_se_share):
    rng = np.random.default_rng(seeds)
    tests = [compare(*sweep_with_no_true_difference(rng, seeds), "elbo")[0] for _ in range(2000)]
    assert all(test.unit == "seed" and test.df == seeds - 1 for test in tests)
    marked = np.mean([test.real for test in tests])
    old_rule = np.mean([abs(test.mean) >= 2 * test.se for test in tests])
    assert marked == pytest.approx(0.05, abs=0.02)  # binomial sd of the share: 0.005
    assert old_rule == pytest.approx(two_se_share, abs=0.04)  # the same runs by a fixed 2 SE: far off 5%


def test_a_real_difference_is_found_with_enough_seeds():
    rng = np.random.default_rng(7)
    mine, reference = sweep_with_no_true_difference(rng, 5)
    shifted = {seed: SeedPoints(p.points_id, {"elbo": p.values["elbo"] + 3.0}, {}) for seed, p in mine.items()}
    test, how, left_out = compare(shifted, reference, "elbo")
    assert test.real and test.mark == "*" and how == "5 seeds, paired on each seed's points" and not left_out


def test_the_critical_values_and_p_of_the_records():
    assert [round(TTest(0, 1, n).critical, 2) for n in (2, 3, 5)] == [12.71, 4.30, 2.78]
    factor_vae_16 = TTest(-0.120, 0.049, 3)  # DISENTANGLEMENT.md: 2.45 SE at 3 seeds
    assert factor_vae_16.p == pytest.approx(0.134, abs=0.001) and not factor_vae_16.real
    assert factor_vae_16.verdict() == "p = 0.134, t with 2 df"
    assert p_text(0.0499) == "p = 0.0499" and p_text(0.0504) == "p = 0.0504" and p_text(0.0004) == "p < 0.001"
    assert TTest(-3.49, 0.46, 500, "point").verdict() == "p < 0.001, t with 499 df"


def test_identical_values_are_no_evidence():
    same = TTest.of([0.0, 0.0, 0.0])
    assert not same.real and same.mark == "=" and same.p is None
    assert same.text() == "+0.00 ± 0.00 =" and same.verdict() == "identical on every seed: no test"
    on_points = TTest.of(np.zeros(500), "point")
    assert not on_points.real and on_points.verdict() == "identical on every point: no test"
    assert TTest.of([0.5, 0.5]).verdict() == "the same difference on every seed: no test"
    assert TTest.of([0.5]).verdict() == "one seed: no spread, no test" and TTest.of([0.5]).mark == ""
    assert "=: the same on every seed or point (identical where it is +0.00): no spread, no test" in legend([same])
    assert seeds_text(same) == "unknown: no spread"


def test_seeds_needed_is_the_fewest_that_pass_at_the_observed_size_and_spread():
    test = TTest(-0.120, 0.049, 3)
    k = test.seeds_needed()
    sd = 0.049 * math.sqrt(3)
    assert k == 5 and seeds_text(test) == "5"
    assert TTest(-0.120, sd / math.sqrt(k), k).real and not TTest(-0.120, sd / math.sqrt(k - 1), k - 1).real
    assert seeds_needed(0.001, 10.0) is None and seeds_text(TTest(0.001, 10.0, 3)) == "> 1,000"
    assert TTest(0.2, 0.01, 500, "point").seeds_needed() is None  # one seed's SE holds no training noise
    assert seeds_text(TTest(0.2, 0.01, 500, "point")).startswith("unknown: one seed")


def test_the_legend_names_each_test_used():
    text = legend([TTest(0.1, 0.05, 3), TTest(0.1, 0.01, 500, "point")])
    assert text == ("*: p < 0.05 in a two-sided t test of the difference against 0 "
                    "(t with 2 df: 3 seeds; t with 499 df: 500 points); unmarked: not told apart from 0")
