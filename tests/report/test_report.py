"""`vaebench report` from synthetic sweeps: metrics.json files written here, in both record layouts
(components named by Hydra's `choices`, or by each component config's `name`), so that every rule of
the report (which setting is the x axis, which columns the table shows, where a ± goes) is pinned
without training anything (the figures take most of the file's ~20 s)."""

from __future__ import annotations

import csv
import itertools
import json
import math
import statistics
from pathlib import Path

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from omegaconf import OmegaConf

from vaebench.report import bars, command, points, rate_distortion, runs, settings, table, term_plots
from vaebench.config.saved import config_dir

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SE_TERMS = ("elbo", "reconstruction", "kl", "mutual_info", "marginal_kl", "total_correlation")


def record(beta=1.0, prior="vamp", K=500, latent_dim=40, seed=0, lr=5e-4, layout="new", se=True,
           status="completed") -> dict:
    """A plausible metrics.json: the rate falls with beta, the VampPrior spends a little less of it
    on the marginal KL, seeds jitter the numbers."""
    rate = 28.0 / beta ** 0.8 * (1 + 0.02 * seed) * (latent_dim / 40) ** 0.1 * (1.1 if prior == "vamp" else 1)
    marginal_kl = rate * (0.15 if prior == "vamp" else 0.3)
    reconstruction = -(78.0 + 45.0 / (1 + rate / 6) + 0.4 * seed + (0 if prior == "vamp" else 1.5))
    val = {"elbo": reconstruction - rate, "reconstruction": reconstruction, "kl": rate,
           "mutual_info": rate - marginal_kl, "marginal_kl": marginal_kl, "mutual_info_max": math.log(500),
           "total_correlation": 0.1 * rate, "active_units": float(min(latent_dim, round(rate)))}
    if se:
        val.update({f"{term}_se": 0.05 + abs(val[term]) / 1000 for term in SE_TERMS})
    test = {"log_likelihood": val["elbo"] + 2.5, "elbo": val["elbo"] - 0.1}
    if se:
        test.update({"log_likelihood_se": 0.21, "elbo_se": 0.4})
    components = {"dataset": "mnist5k", "model": "mlp", "prior": prior}
    config = {"dataset": {"binarize": "dynamic", "val_size": 500},
              "model": {"latent_dim": latent_dim, "hidden_dim": 300},
              "prior": {"K": K} if K is not None else {"sigma": 1.0},
              "trainer": {"epochs": 50, "lr": lr, "device": "cpu", "batch_size": 100},
              "eval": {"iw_samples": 5000}, "beta": beta, "seed": seed, "resume": None}
    if layout == "new":
        config["choices"] = {**components, "trainer": "default", "eval": "default", "hydra/launcher": "basic"}
        for group in components:
            config[group]["_target_"] = shipped_target(group, components[group])
    else:
        for group, name in components.items():
            config[group]["name"] = name
    return {"status": status, "train": {"elbo": val["elbo"] + 1}, "val": val, "test": test, "config": config,
            "epochs": 50}


def shipped_target(group: str, name: str) -> str:
    """The class a shipped entry builds; a user's own entry names one of theirs."""
    entry = Path(config_dir()) / group / f"{name}.yaml"
    return str(OmegaConf.load(entry)["_target_"]) if entry.exists() else f"my_components.{name}"


def write_sweep(folder: Path, records: list[dict]) -> Path:
    for number, metrics in enumerate(records):
        (folder / str(number)).mkdir(parents=True)
        (folder / str(number) / "metrics.json").write_text(json.dumps(metrics))
    return folder


def beta_by_prior(**kwargs) -> list[dict]:
    """The typical sweep: beta = 0.5 ... 8 against the standard prior and the VampPrior (K=500)."""
    return [record(beta=b, prior=p, K=500 if p == "vamp" else None, **kwargs)
            for b, p in itertools.product((0.5, 1, 2, 4, 8), ("standard", "vamp"))]


def rows_of(records: list[dict]) -> list[dict]:
    return [runs.table_row(runs.Run(str(i), m)) for i, m in enumerate(records)]


def axes_of(records: list[dict]) -> settings.PlotAxes:
    rows = rows_of(records)
    return settings.choose_axes(rows, settings.varied_settings(rows))


# -- reading both layouts -------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["new", "old"])
def test_component_names_are_read_from_either_layout(layout):
    config = record(prior="mog", layout=layout)["config"]
    assert runs.component_name(config, "prior") == "mog"
    assert runs.component_name(config, "dataset") == "mnist5k"
    assert runs.component_name(config, "objective") is None
    settings = runs.run_settings(config)
    assert settings["prior"] == "mog" and settings["prior.K"] == 500
    assert not any(key.endswith(("_target_", ".name")) or key.startswith(("choices", "hydra")) for key in settings)


def test_a_users_own_component_and_unknown_groups_are_read_by_name():
    config = record(prior="student_t", K=None)["config"]
    config["choices"]["objective"] = "iwae"
    config["objective"] = {"_target_": "my.Objective", "samples": 5}
    rows = rows_of([{**record(), "config": config}])
    assert rows[0]["prior"] == "student_t" and rows[0]["objective"] == "iwae"
    assert rows[0]["objective.samples"] == 5
    assert settings.prior_label(rows[0]) == "student_t"


def test_old_and_new_records_of_one_sweep_differ_only_in_what_was_swept():
    assert settings.varied_settings(rows_of([record(beta=1, layout="old"), record(beta=4, layout="new")])) == ["beta"]


# -- which setting goes where ---------------------------------------------------------------------
def test_a_beta_by_prior_sweep_plots_against_beta_with_one_series_per_prior():
    records = beta_by_prior()
    axes = axes_of(records)
    assert axes == settings.PlotAxes("beta", ("prior",))
    labels = {settings.series_label(row, axes) for row in rows_of(records)}
    assert labels == {"standard", "VampPrior K=500"}
    assert settings.plot_key_name(axes) == "beta"


def test_the_standard_prior_ignores_k_so_a_shared_grid_value_does_not_vary():
    rows = rows_of([record(prior=p, K=5, beta=b) for p, b in itertools.product(("standard", "vamp"), (1, 4))])
    assert settings.varied_settings(rows) == ["prior", "beta"]
    assert {row["prior.K"] for row in rows if row["prior"] == "standard"} == {None}


def test_a_sweep_over_k_alone_plots_against_k():
    axes = axes_of([record(K=k) for k in (10, 100, 500)])
    assert axes == settings.PlotAxes("prior.K", ())
    assert settings.plot_key_name(axes) == "K"


def test_a_sweep_over_latent_dim_and_prior_plots_against_latent_dim():
    records = [record(latent_dim=d, prior=p, K=50 if p == "vamp" else None)
               for d, p in itertools.product((2, 10, 40), ("standard", "vamp"))]
    axes = axes_of(records)
    assert axes == settings.PlotAxes("model.latent_dim", ("prior",))
    assert {settings.series_label(row, axes) for row in rows_of(records)} == {"standard", "VampPrior K=50"}


def test_with_beta_and_another_number_varied_beta_is_the_axis_and_the_other_a_series():
    records = [record(beta=b, K=k) for b, k in itertools.product((1, 4), (50, 500))]
    axes = axes_of(records)
    assert axes == settings.PlotAxes("beta", ("prior.K",))
    assert [label for label in points.aggregate(rows_of(records), axes, "val_kl")] == ["VampPrior K=50", "VampPrior K=500"]


def test_seeds_are_replicates_averaged_with_their_spread():
    records = [record(beta=b, seed=s) for b, s in itertools.product((1, 2, 4), (0, 1, 2))]
    axes = axes_of(records)
    assert axes == settings.PlotAxes("beta", ())
    (series,) = points.aggregate(rows_of(records), axes, "val_kl").values()
    assert [p.x for p in series] == [1, 2, 4]
    kls = [record(beta=1, seed=s)["val"]["kl"] for s in range(3)]
    assert series[0].mean == pytest.approx(sum(kls) / 3)
    assert series[0].error == pytest.approx(statistics.stdev(kls))
    assert series[0].error_kind == bars.SEEDS and len(series[0].values) == 3
    assert points.error_caption(series) == "bars: ±1 s.d. over replicate runs (seeds)"


def test_a_single_run_per_point_carries_its_standard_error_or_none():
    (with_se,) = points.aggregate(rows_of([record(beta=1), record(beta=2)]), settings.PlotAxes("beta", ()), "val_kl").values()
    assert with_se[0].error == record()["val"]["kl_se"]
    assert points.error_caption(with_se) == "bars: ±1 SE of the mean over the 500 val points (unpaired)"
    (without,) = points.aggregate(rows_of([record(beta=1, se=False)]), settings.PlotAxes("beta", ()), "val_kl").values()
    assert without[0].error is None and points.error_caption(without) == ""


# -- the table ------------------------------------------------------------------------------------
def test_the_table_shows_what_varies_and_names_the_rest_once_above_it():
    rows = sorted(rows_of(beta_by_prior()), key=settings.by_val_elbo)
    text = table.format_table(rows, settings.varied_settings(rows))
    lines = text.splitlines()
    assert lines[0] == "shared by all 10 runs: dataset=mnist5k model=mlp K=500 (vamp) latent_dim=40 lr=0.0005 seed=0"
    assert lines[2:5] == ["± 1 SE of the mean over the split's points (unpaired): ELBO, recon, KL, test log p(x)",
                          "± 1 SE (Monte-Carlo) over the draws z ~ q(z|x), the split's points held fixed: I(n;z), KL(q(z) ‖ p(z))",
                          "test log p(x): importance-weighted, S = 5,000 samples per point (eval.iw_samples), on the "
                          "test split's points"]
    header = next(line for line in lines if line.startswith("run")).split()
    assert header[:2] == ["run", "configuration"]
    assert not {"dataset", "model", "seed", "latent_dim", "prior", "beta"} & set(header)
    assert lines[-1].split()[:4] == ["1", "VampPrior", "K=500,", "beta=0.5"]  # named as the paired differences name it
    assert max(len(line) for line in lines) <= 140  # a wide terminal; each configuration named in full costs ~15


def test_values_carry_a_plus_minus_only_when_the_record_has_a_standard_error():
    elbo = record()["val"]["elbo"]
    with_se = table.format_table(rows_of([record()]), [])
    assert f"{elbo:.2f} ± {record()['val']['elbo_se']:.2f}" in with_se
    without = table.format_table(rows_of([record(se=False)]), [])
    assert "±" not in without.split("\n", 2)[2] and f"{elbo:.2f}" in without


def test_counts_print_as_integers():
    row = rows_of([record(latent_dim=40, beta=1, prior="standard", K=None)])[0]
    assert row["val_active_units"] == 28.0  # a float in the record
    assert table.metric_cell(row, "val_active_units") == "28"


def test_the_csv_keeps_every_column_the_markdown_the_console_table(tmp_path):
    write_sweep(tmp_path, beta_by_prior())
    command.report([str(tmp_path)])
    with (tmp_path / "report.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10
    assert {"val_elbo", "val_elbo_se", "test_log_likelihood_se", "dataset", "latent_dim", "seed",
            "trainer.batch_size", "train_elbo"} <= set(rows[0])
    assert {r["K"] for r in rows if r["prior"] == "standard"} == {""}
    markdown = (tmp_path / "report.md").read_text()
    assert "`dataset=mnist5k model=mlp K=500 (vamp) latent_dim=40 lr=0.0005 seed=0`" in markdown
    assert markdown.count("\n| ") == 1 + 10 and "| run | configuration | ELBO |" in markdown
    assert "| VampPrior K=500, beta=0.5 |" in markdown
    assert "![rate_distortion](rate_distortion.png)" in markdown


# -- the figures ----------------------------------------------------------------------------------
def png_names(folder: Path) -> set[str]:
    names = {p.name for p in folder.glob("*.png")}
    for name in names:
        assert (folder / name).read_bytes()[:8] == PNG_SIGNATURE
    return names


def test_a_beta_sweep_keeps_the_figure_names_users_rely_on(tmp_path):
    write_sweep(tmp_path, beta_by_prior())
    command.report([str(tmp_path)])
    assert png_names(tmp_path) == {"rate_distortion.png", "mutual_info_vs_beta.png", "marginal_kl_vs_beta.png"}


def test_a_k_sweep_names_its_figures_by_k(tmp_path):
    write_sweep(tmp_path, [record(K=k, layout="old", se=False) for k in (10, 100, 500)])
    command.report([str(tmp_path)])
    # VampPriors at three K are three places of the empirical-Bayes axis as well
    assert png_names(tmp_path) == {"rate_distortion.png", "mutual_info_vs_K.png", "marginal_kl_vs_K.png", "prior_axis.png"}


def test_a_k_axis_draws_a_prior_without_k_as_a_level_line(tmp_path):
    records = [record(prior=p, K=k) for p, k in itertools.product(("standard", "vamp"), (50, 500))]
    axes = axes_of(records)
    assert axes == settings.PlotAxes("prior.K", ("prior",))
    figure = drawn(term_plots.term_figure(rows_of(records), axes, "marginal_kl"))
    assert [t.get_text() for t in legend_of(figure).get_texts()] == ["standard (no K)", "VampPrior"]
    write_sweep(tmp_path, records)
    command.report([str(tmp_path)])
    assert "rate_distortion.png" in png_names(tmp_path)


def test_a_sweep_over_the_prior_alone_puts_the_priors_side_by_side(tmp_path):
    write_sweep(tmp_path, [record(prior=p, K=500 if p != "standard" else None) for p in ("standard", "vamp", "mog")])
    command.report([str(tmp_path)])
    assert {"mutual_info_vs_prior.png", "prior_axis.png"} <= png_names(tmp_path)


def drawn(figure: Figure) -> Figure:
    FigureCanvasAgg(figure)
    figure.canvas.draw()
    return figure


def visible_texts(figure: Figure) -> list[Text]:
    """The non-empty texts the figure drew: titles, axis and tick labels, legend entries, notes.
    Tick labels count only where their tick lies inside the axis's view."""
    renderer = figure.canvas.get_renderer()
    texts = []
    for text in figure.findobj(Text):
        if not (text.get_visible() and text.get_text().strip()) or id(text) in undrawn_tick_labels(figure):
            continue
        box = text.get_window_extent(renderer)
        if box.width > 0 and box.height > 0 and figure.bbox.overlaps(box):
            texts.append(text)
    return texts


def undrawn_tick_labels(figure: Figure) -> set[int]:
    """The tick labels matplotlib keeps for ticks outside the view and does not draw."""
    hidden = set()
    for ax in figure.axes + [child for ax in figure.axes for child in ax.child_axes]:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            slack = 1e-9 * max(abs(low), abs(high), 1.0)
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not low - slack <= tick.get_loc() <= high + slack:
                    hidden |= {id(tick.label1), id(tick.label2)}
    return hidden


def overlapping_texts(figure: Figure) -> list[tuple[str, str]]:
    renderer = figure.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in visible_texts(figure)]
    return [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2) if box_a.overlaps(box_b)]


def test_the_overlap_check_sees_labels_that_overprint():
    figure = Figure()
    ax = figure.add_subplot()
    ax.annotate("β=4", (0.5, 0.5))
    ax.annotate("-ELBO=548.3", (0.51, 0.5))
    assert overlapping_texts(drawn(figure)) != []


@pytest.mark.parametrize("records", [
    beta_by_prior(),
    [record(beta=b, seed=s) for b, s in itertools.product((1, 4), (0, 1))],
    [record(latent_dim=d, K=k) for d, k in itertools.product((2, 10, 40), (50, 500))],
    [record(beta=1)],
], ids=["beta-by-prior", "seeds", "latent-dim-by-K", "one-run"])
def test_no_two_labels_of_the_rate_distortion_plane_overlap(records):
    figure = drawn(rate_distortion.rate_distortion_figure(rows_of(records), axes_of(records)))
    assert overlapping_texts(figure) == []
    (ax, *_) = figure.axes
    assert figure.bbox.contains(*ax.xaxis.label.get_window_extent().p0)  # nothing clipped at the edge


def test_every_dashed_line_of_equal_elbo_is_labelled_once_inside_the_plot_clear_of_the_frame():
    records = beta_by_prior()
    figure = drawn(rate_distortion.rate_distortion_figure(rows_of(records), axes_of(records)))
    main = figure.axes[0]
    dashed = [line for line in main.get_lines() if line.get_linestyle() == "--"]
    labels = [text for text in main.texts if text.get_text()]
    assert len(dashed) >= 3 and len(labels) == len(dashed) and not main.child_axes
    for line, label in zip(dashed, labels):  # each label sits on its own line: R + D = its level
        x, y = label.get_position()
        assert x + y == pytest.approx(float(label.get_text()), abs=0.51) and x + y == pytest.approx(sum(line.get_xydata()[0]))
    frame = main.get_window_extent()
    for label in labels:
        box = label.get_window_extent(figure.canvas.get_renderer())
        assert frame.x0 + 4 < box.x0 and box.x1 < frame.x1 - 4 and frame.y0 + 4 < box.y0 and box.y1 < frame.y1 - 4
    assert set(t.get_text() for t in labels) <= {t.get_text() for t in visible_texts(figure)}  # the overlap check sees them


def test_term_plots_tick_beta_as_typed_and_keep_log_n_from_squashing_the_data():
    records = beta_by_prior()
    rows, axes = rows_of(records), axes_of(records)
    figure = drawn(term_plots.term_figure(rows, axes, "marginal_kl"))
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.5", "1", "2", "4", "8"]
    assert ax.get_title() == "Marginal KL against β"
    assert ax.get_ylabel() == "KL(q(z) || p(z))  [nats, val]"
    assert overlapping_texts(figure) == []
    legend = [t.get_text() for t in legend_of(figure).get_texts()]
    assert legend == ["standard", "VampPrior K=500"]

    for row in rows:  # a posterior near collapse: I(n;z) far below log 500 = 6.2
        row["val_mutual_info"] /= 100
    collapsed = drawn(term_plots.term_figure(rows, axes, "mutual_info", bound=math.log(500)))
    assert collapsed.axes[0].get_ylim()[1] < 1
    assert "log N = 6.21 (off scale, above)" in [t.get_text() for t in legend_of(collapsed).get_texts()]
    for row in rows:
        row["val_mutual_info"] *= 100
    informative = drawn(term_plots.term_figure(rows, axes, "mutual_info", bound=math.log(500)))
    assert informative.axes[0].get_ylim()[1] > math.log(500)
    assert "log N = 6.21 (upper bound)" in [t.get_text() for t in legend_of(informative).get_texts()]


def legend_of(figure: Figure):
    (legend,) = figure.legends + [ax.get_legend() for ax in figure.axes if ax.get_legend()]
    return legend


def test_unfinished_runs_are_counted_and_left_out(tmp_path, capsys):
    write_sweep(tmp_path, [record(beta=1), record(beta=2), record(beta=4, status="diverged")])
    command.report([str(tmp_path)])
    assert "skipped 1 unfinished run (1 diverged)" in capsys.readouterr().out


# -- the empirical-Bayes axis ---------------------------------------------------------------------
def test_the_prior_axis_orders_priors_by_their_dependence_on_the_data_and_needs_nothing_else_varied():
    from vaebench.report import prior_axis

    records = [record(prior="standard", K=None), record(prior="mog", K=500),
               *(record(prior="vamp", K=k) for k in (1, 10, 500))]
    aggregate = record(prior="vamp", K=None)
    aggregate["config"]["choices"]["prior"] = "aggregate"
    aggregate["train"]["mutual_info_max"] = math.log(4000)
    rows = rows_of([*records, aggregate])
    placed = prior_axis.axis_rows(rows, settings.varied_settings(rows))
    ticks = [row["place"].tick for row in sorted(placed, key=lambda row: row["place"].x)]
    assert ticks == ["N(0, I)", "MoG", "1", "10", "500", "N = 4,000"]
    assert [row["place"].family for row in placed][-1] == prior_axis.FIXED
    # beta varies too: its points would mix betas, so no axis
    mixed = rows_of(beta_by_prior())
    assert prior_axis.axis_rows(mixed, settings.varied_settings(mixed)) == []
