"""What the report's figures tell a reader, pinned on synthetic sweeps: a series keeps its colour from
one report to the next, every caption says what its error bars are, no label doubles its
parentheses, and the panels of a figure are one size."""

from __future__ import annotations

import itertools
import math
import zlib

import pytest
import torch
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.text import Text

from tests.report.test_report import axes_of, beta_by_prior, drawn, legend_of, record, rows_of, visible_texts
from tests.report.test_report_disentanglement import beta_sweep, with_factors
from vaebench.metrics.surgery import elbo_surgery
from vaebench.report import bars, colours, prior_axis, rate_distortion, settings, term_plots
from vaebench.report import disentanglement as dis_rep


def legend_colours(figure: Figure) -> dict[str, tuple]:
    """Each legend entry's colour, as RGBA."""
    legend = legend_of(figure)
    return {text.get_text(): to_rgba(handle.get_color()) for text, handle in zip(legend.get_texts(), legend.legend_handles)}


def term_colours(records: list[dict]) -> dict[str, tuple]:
    return legend_colours(drawn(term_plots.term_figure(rows_of(records), axes_of(records), "marginal_kl")))


def by_prior(priors: tuple[str, ...], betas=(1, 4)) -> list[dict]:
    return [record(beta=b, prior=p, K=None if p == "standard" else 500) for b, p in itertools.product(betas, priors)]


# -- colours --------------------------------------------------------------------------------------
def test_a_prior_keeps_its_colour_whatever_else_the_report_holds():
    two = term_colours(by_prior(("standard", "vamp")))
    three = term_colours(by_prior(("mog", "standard", "vamp")))  # mog sorts first: the ranks change
    alone = term_colours(by_prior(("vamp",)))
    assert two["standard"] == three["standard"] == to_rgba("C0")
    assert two["VampPrior K=500"] == three["VampPrior K=500"] == alone["VampPrior K=500"] == to_rgba("C2")
    assert three["MoG K=500"] == to_rgba("C1")
    # the rate-distortion plane and the disentanglement panels take the same colours
    records = by_prior(("mog", "standard", "vamp"))
    plane = drawn(rate_distortion.rate_distortion_figure(rows_of(records), axes_of(records)))
    assert {label: colour for label, colour in legend_colours(plane).items() if label in three} == three


def test_an_objective_and_a_users_own_prior_keep_theirs_too():
    with_tc = rows_of(beta_sweep())
    alone = rows_of([with_factors(b, objective="elbo") for b in (1, 4)] + [with_factors(1, objective="capacity")])
    elbo = [series_colour(rows, "objective=elbo") for rows in (with_tc, alone)]
    assert elbo[0] == elbo[1] == "C4"
    mine = [term_colours(by_prior(("mine", *others))) for others in [("standard",), ("vamp", "mog")]]
    assert mine[0]["mine K=500"] == mine[1]["mine K=500"]
    assert mine[0]["mine K=500"] not in {to_rgba(c) for known in colours.KNOWN_COLOURS.values() for c in known.values()}


def series_colour(rows: list[dict], label: str):
    return colours.series_colours(rows, settings.choose_axes(rows, settings.varied_settings(rows)))[label]


def test_the_series_of_one_figure_never_share_a_colour():
    # two users' priors whose labels fall on the same derived colour
    names = (f"prior{i}" for i in itertools.count())
    first = next(names)
    twin = next(name for name in names if colours.derived_index(f"{name} K=500") == colours.derived_index(f"{first} K=500"))
    rows = rows_of(by_prior((first, twin, "standard")))
    assert len(set(colours.series_colours(rows, axes_of(by_prior((first, twin, "standard")))).values())) == 3
    grid = [record(latent_dim=d, K=k) for d, k in itertools.product((2, 5, 10, 20, 40), (1, 10, 50, 100, 500))]
    assert len(set(colours.series_colours(rows_of(grid), axes_of(grid)).values())) == 5  # a series per K
    assert colours.derived_index("VampPrior K=500") == zlib.crc32(b"VampPrior K=500") % len(colours.DERIVED)


# -- what the bars are ----------------------------------------------------------------------------
def captions(figure: Figure) -> str:
    return "\n".join(t.get_text() for t in figure.findobj(Text) if "bars:" in t.get_text())


def test_each_caption_says_what_its_bars_are():
    single = beta_by_prior()
    rows, axes = rows_of(single), axes_of(single)
    plane = captions(drawn(rate_distortion.rate_distortion_figure(rows, axes)))
    assert plane == "bars: ±1 SE of the mean over the 500 val points (unpaired)"  # KL and reconstruction: the points' spread
    surgery = captions(drawn(term_plots.term_figure(rows, axes, "mutual_info")))
    assert surgery == ("bars: ±1 Monte-Carlo SE over the draws z ~ q(z|x), the 500 val points held fixed "
                       "(not their spread)")
    seeds = [record(beta=b, seed=s) for b, s in itertools.product((1, 4), (0, 1))] + [record(beta=16)]
    mixed = captions(drawn(term_plots.term_figure(rows_of(seeds), axes_of(seeds), "marginal_kl")))
    assert mixed.startswith("bars: ±1 s.d. over replicate runs (seeds); a single run: ±1 Monte-Carlo SE")

    factors = [with_factors(b) for b in (1, 4)]
    panels = captions(drawn(dis_rep.metrics_figure(rows_of(factors), axes_of(factors)))).splitlines()
    assert panels == ["FactorVAE score: bars: ±1 binomial SE over the 800 held-out votes",
                      "Rate R = KL(q(z|x) || p(z)): bars: ±1 SE of the mean over the 500 val points (unpaired)"]


def test_the_prior_axis_captions_each_panel_by_its_splits():
    records = [record(prior="standard", K=None), record(prior="vamp", K=500)]
    for metrics in records:
        metrics["train"].update({"elbo_se": 0.3, "mutual_info": 5.0, "mutual_info_se": 0.01, "mutual_info_max": math.log(4000)})
        metrics["test"].update({"mutual_info": 5.0, "mutual_info_se": 0.02, "mutual_info_max": math.log(500)})
    rows = rows_of(records)
    text = captions(drawn(prior_axis.figure(prior_axis.axis_rows(rows, settings.varied_settings(rows)))))
    assert "ELBO: bars: ±1 SE of the mean over the 4,000 train / 500 test points (unpaired)" in text
    assert "mutual information I(n; z): bars: ±1 Monte-Carlo SE over the draws z ~ q(z|x), the 4,000 train / 500 test" in text
    assert "train − test ELBO (overfitting): bars: ±1 SE of the difference" in text


def test_the_terms_with_a_monte_carlo_error_are_the_surgerys():
    """The report calls a term's SE Monte-Carlo exactly where vaebench.metrics.surgery computed it."""
    loc, scale = torch.randn(30, 2), torch.rand(30, 2) + 0.5
    z = loc + scale * torch.randn(3, 30, 2)
    terms = elbo_surgery(loc, scale, z, torch.distributions.Normal(0, 1).log_prob(z).sum(-1),
                         prior_marginals=lambda z: torch.distributions.Normal(0, 1).log_prob(z))
    assert {name[:-3] for name in terms if name.endswith("_se")} == set(bars.SURGERY_TERMS)
    row = {"val_mutual_info_max": math.log(30)}
    assert [bars.standard_error_bar(f"val_{term}", row).source for term in ("elbo", "kl", "mutual_info")] == \
        ["points", "points", "draws"]
    assert bars.standard_error_bar("test_log_likelihood", row) == bars.Bar("points", "test", None)


# -- labels and panels ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def every_figure() -> list[Figure]:
    """Every kind of figure, on sweeps over beta, K, latent_dim x K, the prior alone, objectives; the
    last three those of several panels."""
    figures = []
    for records in (beta_by_prior(), [record(prior=p, K=k) for p, k in itertools.product(("standard", "vamp"), (50, 500))],
                    [record(latent_dim=d, K=k) for d, k in itertools.product((2, 10, 40), (50, 500))],
                    by_prior(("standard", "vamp", "mog"), betas=(1,))):
        rows, axes = rows_of(records), axes_of(records)
        figures += [rate_distortion.rate_distortion_figure(rows, axes), term_plots.term_figure(rows, axes, "mutual_info"),
                    term_plots.term_figure(rows, axes, "marginal_kl")]
    for records in (beta_sweep(), [with_factors(1, objective=o) for o in ("elbo", "beta_tc")]):
        figures.append(dis_rep.metrics_figure(rows_of(records), axes_of(records)))
    axis = rows_of([record(prior="standard", K=None), record(prior="mog", K=500), record(prior="vamp", K=500)])
    figures.append(prior_axis.figure(prior_axis.axis_rows(axis, settings.varied_settings(axis))))
    return [drawn(figure) for figure in figures]


def test_no_label_doubles_its_parentheses(every_figure):
    texts = [t.get_text() for figure in every_figure for t in visible_texts(figure)]
    assert "β (weight of the KL; log scale)" in texts and "K (prior components; log scale)" in texts
    assert [text for text in texts if "((" in text or ") (" in text] == []


def test_the_panels_of_one_figure_are_one_size(every_figure):
    for figure in every_figure[-3:]:
        panels = [ax for ax in figure.axes if ax.axison]
        sizes = {(round(ax.get_window_extent().width, 1), round(ax.get_window_extent().height, 1)) for ax in panels}
        assert len(panels) >= 6 and len(sizes) == 1


def test_a_term_plot_is_as_wide_whatever_its_legend_holds():
    records = beta_by_prior()
    rows, axes = rows_of(records), axes_of(records)
    plain = drawn(term_plots.term_figure(rows, axes, "mutual_info"))
    with_bound = drawn(term_plots.term_figure(rows, axes, "mutual_info", bound=math.log(500)))
    assert len(legend_of(with_bound).get_texts()) == len(legend_of(plain).get_texts()) + 1
    assert plain.axes[0].get_window_extent().bounds == pytest.approx(with_bound.axes[0].get_window_extent().bounds, abs=0.5)
