"""`vaebench report` on sweeps whose runs have disentanglement metrics: the table's columns, the CSV,
the metric-vs-beta figure; the traversals of the best run are left out with a note when its
checkpoint is not there. Synthetic metrics.json files, nothing trained."""

import csv

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from tests.report.test_report import record, rows_of, write_sweep
from vaebench.report import command, settings, table
from vaebench.report import disentanglement as dis_rep


def with_factors(beta: float, seed: int = 0, objective: str = "elbo") -> dict:
    metrics = record(beta=beta, prior="standard", K=None, seed=seed)
    metrics["config"]["choices"]["objective"] = objective
    rising = beta / (beta + 4)  # more beta, more disentangled, in this made-up sweep
    metrics["disentanglement"] = {"mig": 0.1 + 0.5 * rising + 0.01 * seed, "factor_vae_score": 0.5 + 0.4 * rising,
                                  "factor_vae_score_se": 0.01, "dci_disentanglement": 0.2 + 0.5 * rising,
                                  "dci_completeness": 0.2 + 0.4 * rising, "dci_informativeness": 0.9 - 0.2 * rising,
                                  "points": 4608, "factor_vae_active_dims": 5}
    metrics["latent_factors"] = {"factors": ["shape", "scale", "orientation", "x", "y"],
                                 "factor_of_dim": ["x", "y"], "factor_share_of_dim": [0.8, 0.7], "active_dims": [0, 1]}
    return metrics


def beta_sweep() -> list[dict]:
    return [with_factors(b, s, o) for b in (1, 4, 16) for s in (0, 1) for o in ("elbo", "beta_tc")]


def test_the_table_and_csv_carry_the_metrics_only_where_runs_have_them(tmp_path):
    rows = rows_of(beta_sweep())
    varied = settings.varied_settings(rows)
    assert "disentanglement_mig" not in varied and "objective" in varied  # a metric, not a setting
    columns = table.table_columns(rows, varied)
    assert {"disentanglement_mig", "disentanglement_factor_vae_score", "disentanglement_dci_disentanglement"} <= set(columns)
    assert "MIG" in table.format_table(rows, varied) and "every split's points" in table.table_note(rows)
    plain = rows_of([record(beta=b) for b in (1, 2)])
    assert not any(c.startswith("disentanglement_") for c in table.csv_columns(plain))
    write_sweep(tmp_path, beta_sweep())
    command.report([str(tmp_path)])
    with (tmp_path / "report.csv").open() as f:
        first = next(csv.DictReader(f))
    assert float(first["disentanglement_dci_completeness"]) > 0


def test_a_beta_sweep_draws_every_metric_against_beta(tmp_path):
    write_sweep(tmp_path, beta_sweep())
    command.report([str(tmp_path)])
    assert (tmp_path / "disentanglement_vs_beta.png").read_bytes().startswith(b"\x89PNG")
    markdown = (tmp_path / "report.md").read_text()
    assert "![disentanglement_vs_beta](disentanglement_vs_beta.png)" in markdown
    # the synthetic runs have no checkpoints: the traversals are left out, and the report says why
    assert "factor_traversals.png left out" in markdown


def test_each_panel_draws_the_mean_over_seeds_of_each_series():
    rows = rows_of(beta_sweep())
    axes = settings.choose_axes(rows, settings.varied_settings(rows))
    assert axes.x == "beta" and axes.series == ("objective",)
    figure = dis_rep.metrics_figure(rows, axes)
    FigureCanvasAgg(figure).draw()
    mig = figure.axes[0]
    assert mig.get_title() == "MIG" and mig.get_xscale() == "log"
    lines = [line for line in mig.get_lines() if line.get_linestyle() == "-"]  # not the error bars' caps
    assert len(lines) == 2  # elbo and beta_tc
    expected = [0.1 + 0.5 * b / (b + 4) + 0.005 for b in (1, 4, 16)]  # seeds 0 and 1 average to +0.005
    assert list(lines[0].get_ydata()) == pytest.approx(expected)


def test_a_sweep_without_factors_gets_no_disentanglement_figure(tmp_path):
    write_sweep(tmp_path, [record(beta=b) for b in (1, 2)])
    command.report([str(tmp_path)])
    assert not list(tmp_path.glob("disentanglement_*.png")) and not (tmp_path / "factor_traversals.png").exists()
