"""Paired comparisons of runs scored on the same test points: the paired SE is the spread of repeated
paired estimates, far below the runs' own SEs; runs on other points are never paired."""

import math

import numpy as np
import pytest

from vaebench.report.paired import Difference, paired_differences, paired_mean_and_se
from vaebench.run.per_point import save_points


def two_runs_on_the_same_points(rng, points=500, shift=0.3):
    """Per-point values whose spread is mostly the points' own (difficulty, sd 30 nats), with a small
    run-specific noise (sd 1 nat): run b is `shift` nats better on average."""
    difficulty = rng.normal(-100, 30, points)
    return difficulty + rng.normal(0, 1, points), difficulty + shift + rng.normal(0, 1, points)


def test_the_paired_se_is_the_spread_of_repeated_paired_estimates():
    rng = np.random.default_rng(0)
    estimates, reported = [], []
    for _ in range(400):
        a, b = two_runs_on_the_same_points(rng)
        mean, se = paired_mean_and_se(b, a)
        estimates.append(mean)
        reported.append(se)
    assert np.std(estimates, ddof=1) == pytest.approx(np.mean(reported), rel=0.1)
    assert np.mean(estimates) == pytest.approx(0.3, abs=3 * np.mean(reported) / math.sqrt(400))
    unpaired = math.hypot(a.std(ddof=1), b.std(ddof=1)) / math.sqrt(len(a))
    assert unpaired > 10 * np.mean(reported)  # what two runs' own SEs would have suggested


def test_a_difference_within_two_ses_is_marked_as_noise():
    assert Difference("b", "a", "elbo", 0.19, 0.1, "paired").within_noise
    assert not Difference("b", "a", "elbo", -0.21, 0.1, "paired").within_noise
    assert Difference("b", "a", "elbo", 0.19, 0.1, "paired").text() == "+0.19 ± 0.10 ~"


def fake_run(sweep, folder, prior, seed, x, values):
    import torch

    run = sweep / folder
    run.mkdir(parents=True)
    save_points(run, torch.as_tensor(x), {name: torch.as_tensor(v) for name, v in values.items()})
    return {"run": folder, "prior": prior, "seed": seed}


def test_runs_pair_only_on_the_same_points_and_seeds_give_the_spread(tmp_path):
    rng = np.random.default_rng(1)
    points = {seed: rng.random((50, 4)) for seed in (0, 1, 2)}  # each seed its own test split
    rows = []
    for seed in (0, 1, 2):
        a, b = two_runs_on_the_same_points(rng, points=50, shift=2.0)
        rows.append(fake_run(tmp_path, str(len(rows)), "standard", seed, points[seed], {"elbo": a}))
        rows.append(fake_run(tmp_path, str(len(rows)), "vamp", seed, points[seed], {"elbo": b}))
    found, notes = paired_differences(rows, ["prior", "seed"], tmp_path)
    (difference,) = found
    assert (difference.label, difference.reference, difference.term) == ("VampPrior", "standard", "elbo")
    assert difference.how == "3 seeds, paired on each seed's points" and not notes
    assert difference.mean == pytest.approx(2.0, abs=4 * difference.se) and not difference.within_noise

    elsewhere = [rows[0], fake_run(tmp_path, "9", "vamp", 0, points[1], {"elbo": rng.normal(size=50)})]
    found, notes = paired_differences(elsewhere, ["prior"], tmp_path)
    assert found == [] and "not compared" in notes[0] and "same test points" in notes[0]
