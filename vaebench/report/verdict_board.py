"""A sweep's verdict at a glance in TensorBoard: at the end of a sweep, one figure per headline metric
(IMAGES tab, `verdict/...`, in the sweep folder's own `verdict` run) with every completed run's final
value and its ±1 SE, one row per run, named as every table and figure of `vaebench report` names
its configuration.

The runs' own final values stay in each run's scalars (`verdict/final/...`), where TensorBoard's
outlier scaling may crop the best and the worst of a sweep and a single step makes one dot on a wide
axis; a figure hides nothing and reads as a table does."""

from __future__ import annotations

import math
from pathlib import Path

from vaebench.report.runs import collect_runs, table_row
from vaebench.report.settings import REPLICATE_KEY, run_configurations, varied_settings
from vaebench.run.naming import HPARAMS_METRICS

FOLDER = "verdict"


def verdict_rows(sweep_dir: Path) -> tuple[list[str], dict[str, list[tuple[float, float | None]]]]:
    """The completed runs' labels (`0: VampPrior K=500`), and for each headline tag that any run holds,
    each run's (value, SE or None), NaN where a run lacks it."""
    runs, _ = collect_runs(sweep_dir)
    rows = [table_row(run) for run in runs]
    varied = varied_settings(rows) if rows else []
    names = run_configurations(rows, varied) if rows else {}
    labels = []
    for row in rows:
        said = [] if names.get(row["run"]) in (None, "", "the runs") else [names[row["run"]]]
        said += [f"seed {row.get(REPLICATE_KEY)}"] if REPLICATE_KEY in varied else []
        labels.append(f"{row['run']}: {', '.join(said)}" if said else row["run"])
    metrics = {}
    for tag in HPARAMS_METRICS:
        column = tag.replace("/", "_")
        if any(column in row for row in rows):
            metrics[tag] = [(float(row.get(column, math.nan)), row.get(f"{column}_se")) for row in rows]
    return labels, metrics


def verdict_figure(tag: str, labels: list[str], values: list[tuple[float, float | None]]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 0.45 * len(labels) + 1.3))
    rows = range(len(labels))[::-1]  # the sweep's first run on top
    means = [v for v, _ in values]
    errors = [se if se is not None and math.isfinite(se) else 0.0 for _, se in values]
    axes.errorbar(means, list(rows), xerr=errors, fmt="o", color="tab:blue", ecolor="tab:blue", capsize=3)
    for row, (mean, se) in zip(rows, values):
        if math.isfinite(mean):
            axes.annotate(f"{mean:.2f}" + (f" ± {se:.2f}" if se is not None else ""), (mean, row),
                          textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
    axes.set_yticks(list(rows), labels, fontsize=8)
    axes.set_ylim(-0.7, len(labels) - 0.3)
    axes.set_xlabel(f"{HPARAMS_METRICS[tag]} (nats per point; bars: ±1 SE over the points)" if "units" not in tag
                    else HPARAMS_METRICS[tag])
    axes.set_title(f"{HPARAMS_METRICS[tag]}, final value of each run", fontsize=10)
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return figure


def write_verdict(sweep_dir: Path) -> int:
    """Writes the sweep's verdict figures into `sweep_dir/verdict`; returns how many."""
    from torch.utils.tensorboard import SummaryWriter

    labels, metrics = verdict_rows(sweep_dir)
    if not labels:
        return 0
    writer = SummaryWriter(str(sweep_dir / FOLDER))
    try:
        for tag, values in metrics.items():
            writer.add_figure(f"{FOLDER}/{tag}", verdict_figure(tag, labels, values), 0)
    finally:
        writer.close()
    return len(metrics)
