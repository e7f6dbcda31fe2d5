"""`vaebench report`'s figures for sweeps on data with known factors (runs whose metrics.json has a
"disentanglement" block, vaebench.metrics.disentanglement):

- disentanglement_vs_<key>.png: MIG, the FactorVAE score and DCI's disentanglement, completeness and
  informativeness against the sweep's x setting (beta when it varies), beside the rate R = KL, one
  line per series, seeds averaged with ±1 s.d. bars (a single run's FactorVAE score: its binomial SE,
  its rate: the SE of the mean over the validation points; a caption says which);
- factor_traversals.png: the latent traversals of the run with the highest MIG, each row naming the
  factor its dimension holds most of and that share of the factor's entropy, read from the run's
  checkpoint and data.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from vaebench.metrics.disentanglement import FACTOR_VAE_MIN_STD
from vaebench.report.colours import series_colours
from vaebench.report.drawing import caption_below, error_bars, numeric_x_axis, panel_captions, save_png
from vaebench.report.points import aggregate, error_caption
from vaebench.report.runs import read_metrics
from vaebench.report.settings import PlotAxes, axis_name, legend_title, plot_key_name, setting_text, short_name

PANELS = {  # column -> (title, y label)
    "disentanglement_mig": ("MIG", "mutual information gap"),
    "disentanglement_factor_vae_score": ("FactorVAE score", "majority-vote accuracy"),
    "disentanglement_dci_disentanglement": ("DCI disentanglement", "1 − entropy of a dimension's importances"),
    "disentanglement_dci_completeness": ("DCI completeness", "1 − entropy of a factor's importances"),
    "disentanglement_dci_informativeness": ("DCI informativeness", "held-out accuracy"),
    "val_kl": ("Rate R = KL(q(z|x) || p(z))", "nats, val"),
}
BEST_BY = "disentanglement_mig"


def disentanglement_plots(rows: list[dict], axes: PlotAxes, sweep_dir: Path) -> tuple[list[str], list[str]]:
    """The PNG files written, and a line for each figure left out; nothing for sweeps without factors."""
    scored = [row for row in rows if row.get(BEST_BY) is not None]
    if not scored:
        return [], []
    written, notes = [], []
    name = f"disentanglement_vs_{plot_key_name(axes)}.png"
    save_png(metrics_figure(scored, axes), sweep_dir / name)
    written.append(name)
    best = max(scored, key=lambda row: row[BEST_BY])
    try:
        figure = best_run_traversals(sweep_dir / best["run"], best)
    except Exception as err:  # a run folder without its checkpoint, a user's component not importable here
        notes.append(f"factor_traversals.png left out: the run {best['run']} could not be loaded "
                     f"({type(err).__name__}: {err}).")
    else:
        save_png(figure, sweep_dir / "factor_traversals.png")
        written.append("factor_traversals.png")
    return written, notes


def metrics_figure(rows: list[dict], axes: PlotAxes) -> Figure:
    """One panel per metric (and the rate), each against the x setting, one colour per series."""
    figure = Figure(figsize=(13, 7.5), dpi=100, layout="constrained")
    panels = figure.subplots(2, 3)
    by_label = series_colours(rows, axes)
    labels: dict[str, str] = {}
    captions = []
    for ax, (column, (title, ylabel)) in zip(panels.flat, PANELS.items()):
        by_series = aggregate(rows, axes, column)
        points = [p for series in by_series.values() for p in series]
        for position, (label, series) in enumerate(by_series.items()):
            series = [p for p in series if p.x is not None] if axes.x else series
            xs = [p.x for p in series] if axes.x else [position]
            ax.errorbar(xs, [p.mean for p in series], yerr=error_bars(series), color=by_label[label], marker="o",
                        ms=5, capsize=3, lw=1.5, label=label)
            for x, p in zip(xs, series):
                if len(p.values) > 1:
                    ax.scatter([x] * len(p.values), p.values, color=by_label[label], s=12, alpha=0.35, lw=0)
            labels[label] = by_label[label]
        if axes.x and points:
            numeric_x_axis(ax, [p.x for p in points], axes.x)
        elif points:
            ax.set_xticks(range(len(by_series)), list(by_series), rotation=20 if len(by_series) > 4 else 0)
        if column != "val_kl":
            ax.set_ylim(-0.03, 1.03)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(alpha=0.25)
        captions.append((title, error_caption(points)))
    against = ("β" if axes.x == "beta" else axis_name(axes.x)) if axes.x else legend_title(axes)
    figure.suptitle(f"Disentanglement against {against}: posterior means, every split's points", fontsize=11)
    caption_below(figure, panel_captions(captions))
    if axes.x and len(labels) > 1:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=colour, marker="o", label=label) for label, colour in labels.items()]
        figure.legend(handles=handles, loc="outside right upper", title=legend_title(axes), fontsize=8,
                      title_fontsize=8)
    return figure


def best_run_traversals(run_dir: Path, row: dict) -> Figure:
    """The traversal grid of the run in `run_dir` (its best checkpoint), rows labelled with factors."""
    import torch
    from omegaconf import OmegaConf

    from vaebench.config.components import build_dataset, build_model
    from vaebench.config.saved import saved_config
    from vaebench.run import checkpoint
    from vaebench.views.pictures import decode_top, posterior_moments, traversal_codes, traversal_figure

    record = read_metrics(run_dir / "metrics.json") or {}
    factors = record.get("latent_factors")
    if not factors:
        raise ValueError("its metrics.json has no latent_factors")
    state = checkpoint.load(run_dir / "checkpoints" / "best.pt", torch.device("cpu"))
    cfg = OmegaConf.create(saved_config(state["config"]))
    data = build_dataset(cfg.dataset, int(cfg.seed))
    model = build_model(cfg, data.data_shape, data.train, dict(cfg.get("choices") or {}))
    model.load_state_dict(state["model"])
    model.eval()
    with torch.no_grad():
        q_loc, q_scale = posterior_moments(model, data.val)
        share = torch.tensor(factors["factor_share_of_dim"])
        active = set(factors["active_dims"])
        # the dimensions in use first, those holding the most of a factor first among them
        order = sorted(range(len(share)), key=lambda j: (j not in active, -float(share[j])))[:10]
        dims = torch.tensor(order)
        images = decode_top(model, traversal_codes(q_loc, q_scale, dims))
    labels = [f"z{j}: {factors['factor_of_dim'][j]} {float(share[j]):.2f}" if j in active else f"z{j}: SD E[z|x] < {FACTOR_VAE_MIN_STD}"
              for j in order]
    figure = traversal_figure(images, dims, None, row_labels=labels)
    settings = ", ".join(f"{short_name(k)}={setting_text(row.get(k))}" for k in ("beta", "objective", "seed")
                         if row.get(k) is not None)
    figure.suptitle(f"The run with the highest MIG ({row['run']}: {settings}; MIG {row[BEST_BY]:.2f}).\nEach row: the "
                    "factor its dimension holds most of, and its share of that factor's entropy", fontsize=8, y=0.995)
    return figure
