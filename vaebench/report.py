"""`vaebench report SWEEP_DIR`: one row per finished run of a sweep, sorted by validation ELBO, as a
console table, report.csv and report.md, and the plots that compare the runs' terms:

- rate_distortion.png: the rate-distortion plane of Alemi et al. 2018 ("Fixing a broken ELBO"),
  rate R = KL(q(z|x) || p(z)), distortion D = -E_q[log p(x|z)], so that -ELBO = R + D;
- mutual_info_vs_beta.png, marginal_kl_vs_beta.png: the two halves of the KL (ELBO surgery) against
  beta, one line per prior and K.

A sweep still running works: runs that have not completed are counted and left out.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vaebench.errors import UserError

# column -> dotted key in the run's config
CONFIG_COLUMNS = {
    "prior": "prior.name", "K": "prior.K", "beta": "beta", "model": "model.name",
    "latent_dim": "model.latent_dim", "dataset": "dataset.name", "seed": "seed",
}
# column -> (split, term) in metrics.json
METRIC_COLUMNS = {
    "val_elbo": ("val", "elbo"), "val_reconstruction": ("val", "reconstruction"), "val_kl": ("val", "kl"),
    "val_mutual_info": ("val", "mutual_info"), "val_marginal_kl": ("val", "marginal_kl"),
    "val_active_units": ("val", "active_units"), "test_log_likelihood": ("test", "log_likelihood"),
}
COLUMNS = ("run", *CONFIG_COLUMNS, *METRIC_COLUMNS)
TEXT_COLUMNS = ("run", "prior", "model", "dataset")
BETA_PLOTS = {"mutual_info": "I_q(n; z)  [nats]", "marginal_kl": "KL(q(z) || p(z))  [nats]"}


@dataclass(frozen=True)
class Run:
    folder: str    # relative to the sweep folder
    metrics: dict  # metrics.json, config included


def report(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="vaebench report",
        description="Tabulate and plot the finished runs of a sweep; writes report.csv, report.md and "
                    "PNG plots into SWEEP_DIR.")
    parser.add_argument("sweep_dir", metavar="SWEEP_DIR", type=Path,
                        help="a sweep folder, e.g. outputs/multirun/2026-11-25/10-00-00")
    sweep_dir = parser.parse_args(argv).sweep_dir
    if not sweep_dir.is_dir():
        raise UserError(f"{sweep_dir} is not a folder. Pass the sweep folder that `vaebench train -m` "
                        "printed, e.g. outputs/multirun/DATE/TIME.")
    runs, unfinished = collect_runs(sweep_dir)
    skipped = skipped_note(unfinished)
    if not runs:
        raise UserError(f"no finished runs in {sweep_dir}" + (f"; {skipped}." if skipped else
                        ": no run folder (one with metrics.json) below it. Pass the folder that "
                        "`vaebench train -m` printed, e.g. outputs/multirun/DATE/TIME."))
    rows = sorted((table_row(run) for run in runs), key=_by_val_elbo)
    print(format_table(rows))
    if skipped:
        print(skipped)
    write_csv(rows, sweep_dir / "report.csv")
    plots, notes = write_plots(runs, rows, sweep_dir)
    for note in notes:
        print(note)
    write_markdown(rows, plots, [skipped, *notes] if skipped else notes, sweep_dir / "report.md")
    print(f"Wrote {', '.join(['report.csv', 'report.md', *plots])} in {sweep_dir}")


# -- reading --------------------------------------------------------------------------------------
def collect_runs(sweep_dir: Path) -> tuple[list[Run], Counter]:
    """Completed runs, and a count of the others by status. A run folder holds metrics.json, or
    .hydra/config.yaml alone while its run is still loading data."""
    folders = {p.parent for p in sweep_dir.rglob("metrics.json")}
    folders |= {p.parent.parent for p in sweep_dir.rglob(".hydra/config.yaml")}
    runs, unfinished = [], Counter()
    for folder in sorted(folders, key=_natural_key):
        metrics = _read_metrics(folder / "metrics.json")
        status = metrics.get("status", "unreadable") if metrics is not None else "starting"
        if status == "completed":
            runs.append(Run(str(folder.relative_to(sweep_dir)), metrics))
        else:
            unfinished[status] += 1
    return runs, unfinished


def _read_metrics(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"status": "unreadable"}


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in path.parts]


def skipped_note(unfinished: Counter) -> str:
    """e.g. 'skipped 2 unfinished runs (1 running, 1 diverged)'; empty when nothing was skipped."""
    total = sum(unfinished.values())
    if not total:
        return ""
    statuses = ", ".join(f"{n} {status}" for status, n in sorted(unfinished.items()))
    return f"skipped {total} unfinished run{'s' if total > 1 else ''} ({statuses})"


# -- the table ------------------------------------------------------------------------------------
def table_row(run: Run) -> dict:
    """Every column of the report for one run; None where the run has no such value."""
    config = run.metrics.get("config", {})
    row = {"run": run.folder}
    row.update({column: _lookup(config, key) for column, key in CONFIG_COLUMNS.items()})
    for group in ("prior", "model", "dataset"):  # a run's choice of a group; `<group>.name` in runs before choices
        row[group] = _lookup(config, f"choices.{group}") or row[group]
    if row["prior"] == "standard":
        row["K"] = None  # a sweep grid may set prior.K for every prior; the standard prior ignores it
    row.update({column: run.metrics.get(split, {}).get(term) for column, (split, term) in METRIC_COLUMNS.items()})
    return row


def _lookup(tree: dict, dotted: str):
    for key in dotted.split("."):
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def _by_val_elbo(row: dict) -> tuple:
    elbo = row["val_elbo"]
    return (elbo is None, -(elbo if elbo is not None else 0.0))


def _shown(value, measured: bool = True) -> str:
    """A cell for people: blank when absent, measurements to 2 decimals, settings (beta) as typed."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}" if measured and not value.is_integer() else f"{value:g}"
    return str(value)


def format_table(rows: list[dict]) -> str:
    cells = [list(COLUMNS)] + [[_shown(row[c], c in METRIC_COLUMNS) for c in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    aligns = [str.ljust if c in TEXT_COLUMNS else str.rjust for c in COLUMNS]
    return "\n".join("  ".join(align(cell, w) for cell, w, align in zip(line, widths, aligns)) for line in cells)


def write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({c: "" if row[c] is None else row[c] for c in COLUMNS} for row in rows)


def write_markdown(rows: list[dict], plots: list[str], notes: list[str], path: Path) -> None:
    lines = [f"# Sweep report: {path.parent.name}", "",
             f"{len(rows)} finished runs, best validation ELBO first (nats per data point).", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_shown(row[c], c in METRIC_COLUMNS) for c in COLUMNS) + " |" for row in rows]
    lines += [""] + [f"- {note}" for note in notes] + ([""] if notes else [])
    lines += [f"![{Path(plot).stem}]({plot})" for plot in plots]
    path.write_text("\n".join(lines) + "\n")


# -- the plots ------------------------------------------------------------------------------------
def write_plots(runs: list[Run], rows: list[dict], sweep_dir: Path) -> tuple[list[str], list[str]]:
    """The PNG files written, and one line for each plot left out."""
    written, notes = [], []
    plane = [row for row in rows if row["val_kl"] is not None and row["val_reconstruction"] is not None]
    if plane:
        _save(rate_distortion_figure(plane), sweep_dir / "rate_distortion.png")
        written.append("rate_distortion.png")
    else:
        notes.append("rate_distortion.png left out: no run has val kl and reconstruction in metrics.json.")
    for term, label in BETA_PLOTS.items():
        name = f"{term}_vs_beta.png"
        if all(row[f"val_{term}"] is None for row in rows):
            notes.append(f"{name} left out: no run has val {term} in metrics.json (ELBO-surgery diagnostics).")
            continue
        log_n = {run.metrics["val"].get("mutual_info_max") for run in runs} if term == "mutual_info" else set()
        _save(against_beta_figure(rows, f"val_{term}", label, sorted(v for v in log_n if v is not None)),
              sweep_dir / name)
        written.append(name)
    return written, notes


def rate_distortion_figure(rows: list[dict]) -> Figure:
    """One point per run at (rate, distortion), coloured by prior and labelled by beta, over dashed
    lines of constant ELBO (R + D = -ELBO): runs on one line have the same ELBO."""
    rate = [row["val_kl"] for row in rows]
    distortion = [-row["val_reconstruction"] for row in rows]
    figure = Figure(figsize=(7, 5.5), dpi=110)
    ax = figure.add_subplot()
    x_limits = _padded(0.0, max(rate))
    y_limits = _padded(min(distortion), max(distortion))
    for level in _levels([r + d for r, d in zip(rate, distortion)]):
        ax.plot(x_limits, [level - x for x in x_limits], ls="--", lw=0.8, color="0.6")
        ax.annotate(f"-ELBO={level:.1f}", (x_limits[1], level - x_limits[1]), fontsize=7, color="0.4",
                    xytext=(-3, 2), textcoords="offset points", ha="right")
    colours = _colours(sorted({str(row["prior"]) for row in rows}))
    several_k = len({row["K"] for row in rows if row["K"] is not None}) > 1
    for prior, colour in colours.items():
        mine = [(r, d, row) for r, d, row in zip(rate, distortion, rows) if str(row["prior"]) == prior]
        ax.scatter([r for r, _, _ in mine], [d for _, d, _ in mine], color=colour, label=prior, zorder=3)
        for r, d, row in mine:
            text = f"β={_shown(row['beta'], measured=False)}" + (f", K={row['K']}" if several_k and row["K"] is not None else "")
            ax.annotate(text, (r, d), fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.set_xlim(*x_limits)
    ax.set_ylim(*y_limits)
    ax.set_xlabel("rate R = KL(q(z|x) || p(z))  [nats, val]")
    ax.set_ylabel("distortion D = -E_q[log p(x|z)]  [nats, val]")
    ax.set_title("Rate-distortion (dashed: constant ELBO, R + D = -ELBO)")
    ax.legend(title="prior")
    figure.tight_layout()
    return figure


def against_beta_figure(rows: list[dict], column: str, label: str, bounds: list[float]) -> Figure:
    """`column` against beta, one line per (prior, K) through the mean over seeds at each beta."""
    figure = Figure(figsize=(6.5, 4.5), dpi=110)
    ax = figure.add_subplot()
    groups: dict[str, dict[float, list[float]]] = {}
    for row in rows:
        if row[column] is not None and row["beta"] is not None:
            group = str(row["prior"]) + (f" K={row['K']}" if row["K"] is not None else "")
            groups.setdefault(group, {}).setdefault(float(row["beta"]), []).append(row[column])
    for (group, by_beta), colour in zip(sorted(groups.items()), _colours(sorted(groups)).values()):
        betas = sorted(by_beta)
        ax.plot(betas, [sum(by_beta[b]) / len(by_beta[b]) for b in betas], marker="o", color=colour, label=group)
        for b in betas:
            ax.scatter([b] * len(by_beta[b]), by_beta[b], color=colour, s=10, alpha=0.5)
    for bound in bounds:
        ax.axhline(bound, ls="--", lw=0.8, color="0.5")
        ax.annotate(f"log N = {bound:.2f}", (0.01, bound), xycoords=("axes fraction", "data"), fontsize=7,
                    xytext=(0, 2), textcoords="offset points", color="0.4")
    betas = [b for by_beta in groups.values() for b in by_beta]
    if betas and min(betas) > 0 and max(betas) / min(betas) >= 4:
        ax.set_xscale("log", base=2)
    ax.set_xlabel("β")
    ax.set_ylabel(label)
    ax.set_title(f"{column} against β")
    ax.legend(title="prior")
    figure.tight_layout()
    return figure


def _levels(neg_elbos: list[float], count: int = 5) -> list[float]:
    """Evenly spaced values of -ELBO from the best run to the worst."""
    low, high = min(neg_elbos), max(neg_elbos)
    if math.isclose(low, high):
        return [low]
    return [low + (high - low) * i / (count - 1) for i in range(count)]


def _padded(low: float, high: float) -> tuple[float, float]:
    pad = max(abs(high - low) * 0.1, 1e-3 * max(abs(high), 1.0))
    return low - pad, high + pad


def _colours(names: list[str]) -> dict[str, str]:
    return {name: f"C{i % 10}" for i, name in enumerate(names)}


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)  # the Agg canvas: PNG files without a display
    figure.savefig(path)
