"""Paired comparisons of runs scored on the same test points: the paired SE is the spread of repeated
paired estimates, far below the runs' own SEs; runs on other points are never paired."""

import math

import numpy as np
import pytest

from vaebench.report.paired import (Difference, console_lines, differences_figure, figure_caption, markdown_lines,
                                    paired_differences, paired_mean_and_se, wrapped_label)
from vaebench.report.significance import TTest
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


def test_a_difference_is_marked_by_a_t_test_with_its_degrees_of_freedom():
    over_seeds = Difference("b", "a", "elbo", TTest(0.080, 0.020, 3), "3 seeds, paired on each seed's points")
    assert not over_seeds.test.real and over_seeds.text() == "+0.08 ± 0.02"  # 4.0 SE, below t = 4.30 at 2 df
    over_points = Difference("b", "a", "elbo", TTest(0.080, 0.020, 500, "point"), "paired, 500 points")
    assert over_points.test.real and over_points.text() == "+0.08 ± 0.02 *"
    lines = console_lines([over_seeds])
    assert "*: p < 0.05 in a two-sided t test of the difference against 0 (t with 2 df: 3 seeds)" in lines[-2]
    assert lines[-1].startswith("  Seeds a difference of that size would need") and "b ELBO 4." in lines[-1]


def fake_run(sweep, folder, prior, seed, x, values, **settings):
    import torch

    run = sweep / folder
    run.mkdir(parents=True)
    save_points(run, torch.as_tensor(x), {name: torch.as_tensor(v) for name, v in values.items()})
    return {"run": folder, "prior": prior, "seed": seed, **settings}


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
    assert difference.mean == pytest.approx(2.0, abs=4 * difference.se) and difference.test.real

    elsewhere = [rows[0], fake_run(tmp_path, "9", "vamp", 0, points[1], {"elbo": rng.normal(size=50)})]
    found, notes = paired_differences(elsewhere, ["prior"], tmp_path)
    assert found == [] and "not compared" in notes[0] and "same test points" in notes[0]


def three_seeds(tmp_path, rng, vamp_seeds=(0, 1, 2), standard=None, vamp=None):
    """standard and vamp runs on each seed's own points; `standard`/`vamp`: per-seed extra row settings."""
    rows = []
    for seed in sorted({0, 1, 2} | set(vamp_seeds)):
        x = rng.random((50, 4))
        a, b = two_runs_on_the_same_points(rng, points=50, shift=2.0)
        if seed in (0, 1, 2):
            rows.append(fake_run(tmp_path, str(len(rows)), "standard", seed, x, {"elbo": a, "log_likelihood": a},
                                 **(standard or {}).get(seed, {})))
        if seed in vamp_seeds:
            rows.append(fake_run(tmp_path, str(len(rows)), "vamp", seed, x, {"elbo": b, "log_likelihood": b},
                                 **(vamp or {}).get(seed, {})))
    return rows


def test_a_seed_missing_from_one_side_is_named(tmp_path):
    rows = three_seeds(tmp_path, np.random.default_rng(2), vamp_seeds=(0, 1, 3))
    found, notes = paired_differences(rows, ["prior", "seed"], tmp_path)
    assert {d.how for d in found} == {"2 seeds, paired on each seed's points"}
    assert notes == ["VampPrior − standard leaves out seed 3: no run of standard; seed 2: no run of VampPrior."]


def test_a_term_missing_in_one_seed_is_named(tmp_path):
    rows = three_seeds(tmp_path, np.random.default_rng(3))
    run = tmp_path / rows[3]["run"]  # vamp, seed 1
    with np.load(run / "test_points.npz") as saved:
        kept = {name: saved[name] for name in saved.files if name != "log_likelihood"}
    np.savez(run / "test_points.npz", **kept)
    found, notes = paired_differences(rows, ["prior", "seed"], tmp_path)
    how = {d.term: d.how for d in found}
    assert how == {"log_likelihood": "2 seeds, paired on each seed's points", "elbo": "3 seeds, paired on each seed's points"}
    assert notes == ["VampPrior − standard leaves out seed 1: the run of VampPrior kept no log p(x)."]


def test_log_px_estimated_with_other_importance_samples_is_not_paired(tmp_path):
    other = {1: {"eval.iw_samples": 100}}
    rows = three_seeds(tmp_path, np.random.default_rng(4), vamp={0: {"eval.iw_samples": 5000}, **other},
                       standard={0: {"eval.iw_samples": 5000}, 1: {"eval.iw_samples": 5000}})
    found, notes = paired_differences(rows, ["prior", "seed"], tmp_path)
    assert {d.term: d.how.split(",")[0] for d in found} == {"log_likelihood": "2 seeds", "elbo": "3 seeds"}
    assert notes == ["VampPrior − standard leaves out seed 1: log p(x) estimated with eval.iw_samples=100 against 5000."]
    # a run saved before the setting was recorded (None on both sides) still pairs
    assert all(row.get("eval.iw_samples") is None for row in rows if row["seed"] == 2)


def test_a_sweep_over_the_importance_samples_compares_them(tmp_path):
    rows = three_seeds(tmp_path, np.random.default_rng(5), vamp={s: {"eval.iw_samples": 100} for s in (0, 1, 2)},
                       standard={s: {"eval.iw_samples": 5000} for s in (0, 1, 2)})
    found, notes = paired_differences(rows, ["prior", "eval.iw_samples", "seed"], tmp_path)
    assert {d.term for d in found} == {"log_likelihood", "elbo"} and not notes


def test_identical_runs_are_not_marked_and_the_report_says_so(tmp_path):
    x, values = np.random.default_rng(6).random((50, 4)), {"elbo": np.linspace(-120, -80, 50)}
    rows = [fake_run(tmp_path, "0", "standard", 0, x, values), fake_run(tmp_path, "1", "vamp", 0, x, values)]
    (same,), _ = paired_differences(rows, ["prior"], tmp_path)
    assert not same.test.real and same.text() == "+0.00 ± 0.00 ="
    assert "=: the same on every seed or point (identical where it is +0.00): no spread, no test" in console_lines([same])[-2]
    table_row = next(line for line in markdown_lines([same]) if line.startswith("| VampPrior"))
    assert "| identical on every point: no test | unknown (one seed) | paired, 50 points |" in table_row
    assert figure_caption([same]).endswith("; hollow: the same on every seed or point, no test")


def test_the_figure_says_which_test_its_band_and_colours_are(tmp_path):
    differences = [Difference("b", "a", "elbo", TTest(0.3, 0.05, 3), "3 seeds, paired on each seed's points"),
                   Difference("b", "a", "kl", TTest(0.3, 0.05, 500, "point"), "paired, 500 points")]
    assert figure_caption(differences) == (
        "Each configuration − a on the same test points; the line at 0: no difference from a. Higher log p(x), "
        "ELBO and reconstruction are better; lower KL is less rate. Bars: ±1 paired SE (3 seeds, paired on each "
        "seed's points; paired, 500 points); grey band around each difference: its 95% t interval (t with 2 df: "
        "±4.30 SE; t with 499 df: ±1.96 SE), clear of 0 where p < 0.05; blue: p < 0.05, two-sided t; grey: not "
        "told apart from 0")
    figure = differences_figure(differences)
    assert [ax.get_title() for ax in figure.axes] == ["ELBO\nhigher is better →", "KL\n← lower: less rate"]
    assert tuple(figure.get_size_inches()) == pytest.approx((6.5, 2.4))  # a paper's text width


def test_the_report_prints_the_test_the_seeds_needed_and_who_was_left_out(tmp_path, capsys):
    """`vaebench report` end to end on a sweep of metrics.json files with their test points: the console,
    report.md and paired_differences.png all go through the same test."""
    import torch

    from tests.report.test_report import record, write_sweep
    from vaebench.report import command

    rng = np.random.default_rng(8)
    records = [record(prior=prior, K=500 if prior == "vamp" else None, seed=seed)
               for seed in (0, 1, 2) for prior in ("standard", "vamp") if (prior, seed) != ("vamp", 2)]
    write_sweep(tmp_path, records)
    points = {seed: torch.as_tensor(rng.random((50, 4))) for seed in (0, 1, 2)}
    for number, metrics in enumerate(records):
        seed, shift = metrics["config"]["seed"], {"standard": 0.0, "vamp": 0.5}[metrics["config"]["choices"]["prior"]]
        values = rng.normal(-100, 30, 50) + shift + 0.4 * seed
        save_points(tmp_path / str(number), points[seed], {"elbo": torch.as_tensor(values)})
    command.report([str(tmp_path)])
    out = capsys.readouterr().out
    assert "*: p < 0.05 in a two-sided t test of the difference against 0 (t with 1 df: 2 seeds)" in out
    assert "VampPrior K=500 − standard leaves out seed 2: no run of VampPrior K=500." in out
    markdown = (tmp_path / "report.md").read_text()
    assert "| configuration | term | difference | SE | test | seeds needed | how |" in markdown
    assert "2 seeds, paired on each seed's points |" in markdown and "t with 1 df" in markdown
    assert (tmp_path / "paired_differences.png").is_file()


def test_a_figure_label_breaks_between_settings_and_cuts_only_a_path():
    label = "VampPrior K=500, model=hvae, experiment=hvae_vampprior_mnist"
    assert wrapped_label(label).split("\n") == ["VampPrior K=500, model=hvae,", "experiment=hvae_vampprior_mnist"]
    path = "dataset.root=/" + "a" * 60
    assert all(len(line) <= 28 for line in wrapped_label(f"standard, {path}").split("\n"))
