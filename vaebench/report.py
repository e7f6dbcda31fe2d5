"""`vaebench report SWEEP_DIR`: one row per finished run of a sweep, sorted by validation ELBO, as a
console table, report.csv and report.md, and the plots that compare the runs' terms:

- rate_distortion.png: the rate-distortion plane of Alemi et al. 2018 ("Fixing a broken ELBO"),
  rate R = KL(q(z|x) || p(z)), distortion D = -E_q[log p(x|z)], so that -ELBO = R + D;
- mutual_info_vs_<key>.png, marginal_kl_vs_<key>.png: the two halves of the KL (ELBO surgery)
  against the numeric setting the sweep varied (beta when it varies), one line per value of the
  other varied settings (e.g. prior and K); seeds are replicates, averaged;
- prior_axis.png, when the runs' priors lie at two places or more of the empirical-Bayes axis
  (standard, MoG, VampPrior by K, the aggregate posterior): every term that tells them apart
  against it (`vaebench.prior_axis`).

The report reads what differs between the runs from their configs, so a sweep over any key (and a
user's own prior or model) is tabulated and plotted without a list of known names. A sweep still
running works: runs that have not completed are counted and left out.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator

from vaebench.errors import UserError

# Settings are named by their dotted config key ("trainer.batch_size"), a config group by its name
# ("prior"). These keep the short names of the report's first version and of TensorBoard's HParams.
SHORT_NAMES = {"prior.K": "K", "model.latent_dim": "latent_dim", "trainer.lr": "lr"}
# The settings worth naming above the table even when every run shares them (groups are added).
HEADLINE_SETTINGS = ("prior.K", "beta", "model.latent_dim", "trainer.lr", "seed")
# Bookkeeping, not part of the experiment: a difference here is not something the sweep varied.
BOOKKEEPING = {"resume", "trainer.device", "trainer.progress"}
PRIOR_NAMES = {"standard": "standard", "vamp": "VampPrior", "mog": "MoG", "aggregate": "aggregate posterior"}
AXIS_NAMES = {"beta": "β (weight of the KL)", "prior.K": "K (prior components)",
              "model.latent_dim": "latent dimensions", "model.hidden_dim": "hidden units",
              "trainer.lr": "learning rate", "trainer.epochs": "epochs", "trainer.batch_size": "batch size"}
REPLICATE_KEY = "seed"

# column -> (split, term) in metrics.json: the terms the table shows
METRIC_COLUMNS = {
    "val_elbo": ("val", "elbo"), "val_reconstruction": ("val", "reconstruction"), "val_kl": ("val", "kl"),
    "val_mutual_info": ("val", "mutual_info"), "val_marginal_kl": ("val", "marginal_kl"),
    "val_active_units": ("val", "active_units"), "test_log_likelihood": ("test", "log_likelihood"),
}
# the same columns as people read them (console and report.md); the CSV keeps the names above
METRIC_HEADERS = {
    "val_elbo": "ELBO", "val_reconstruction": "recon", "val_kl": "KL", "val_mutual_info": "I(n;z)",
    "val_marginal_kl": "KL(q(z)||p(z))", "val_active_units": "active", "test_log_likelihood": "test log p(x)",
}
# Data with known factors add metrics.json's "disentanglement" block (vaebench.disentanglement); its
# columns appear where some run has them.
ALWAYS_IN_CSV = tuple(METRIC_COLUMNS)
METRIC_COLUMNS |= {"disentanglement_mig": ("disentanglement", "mig"),
                   "disentanglement_factor_vae_score": ("disentanglement", "factor_vae_score"),
                   "disentanglement_dci_disentanglement": ("disentanglement", "dci_disentanglement")}
METRIC_HEADERS |= {"disentanglement_mig": "MIG", "disentanglement_factor_vae_score": "FactorVAE",
                   "disentanglement_dci_disentanglement": "DCI-D"}
COUNT_COLUMNS = {"val_active_units"}
TABLE_NOTE = "nats per data point on the validation split, log p(x) on the test split"
SE_NOTE = "; ± 1 Monte-Carlo SE"
SPLITS = ("train", "val", "test")
BLOCKS = (*SPLITS, "disentanglement")  # the blocks of metrics.json whose terms become `<block>_<term>` columns
TERM_PLOTS = {  # term -> (title, symbol)
    "mutual_info": ("Mutual information", "I_q(n; z)"),
    "marginal_kl": ("Marginal KL", "KL(q(z) || p(z))"),
}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
GREY = "0.45"


@dataclass(frozen=True)
class Run:
    folder: str    # relative to the sweep folder
    metrics: dict  # metrics.json, config included


@dataclass(frozen=True)
class PlotAxes:
    """What the term plots put where: x is a numeric setting (None: the runs side by side, one tick
    each), series the other settings that varied, one colour per combination; seeds are averaged."""
    x: str | None
    series: tuple[str, ...]


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
    varied = varied_settings(rows)
    print(format_table(rows, varied))
    if skipped:
        print(skipped)
    write_csv(rows, sweep_dir / "report.csv")
    plots, notes = write_plots(rows, varied, sweep_dir)
    axis = write_prior_axis(rows, varied, sweep_dir)
    if axis:
        print("\n".join(axis))
        plots.append("prior_axis.png")
    for note in notes:
        print(note)
    write_markdown(rows, varied, plots, [skipped, *notes] if skipped else notes, sweep_dir / "report.md", axis)
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


def component_name(config: dict, group: str) -> str | None:
    """The name of the run's `group` component: the Hydra choice (new records), else the component
    config's `name` (records written before components were built from `_target_`)."""
    choice = (config.get("choices") or {}).get(group)
    if choice is not None:
        return str(choice)
    component = config.get(group)
    return str(component["name"]) if isinstance(component, dict) and "name" in component else None


def component_groups(config: dict) -> list[str]:
    """The config groups the run chose a component from (Hydra's own groups left out)."""
    chosen = [group for group in (config.get("choices") or {}) if not group.startswith("hydra")]
    named = [key for key, value in config.items() if isinstance(value, dict) and "name" in value]
    return list(dict.fromkeys(chosen + named))


def run_settings(config: dict) -> dict:
    """Every setting of a run by dotted key, each config group by name ("prior": "vamp"). Class
    paths (_target_) are left out: the group's name already says which component ran."""
    groups = component_groups(config)
    settings = {group: component_name(config, group) for group in groups}
    for key, value in _leaves({k: v for k, v in config.items() if k != "choices"}):
        last = key.rsplit(".", 1)[-1]
        if last == "_target_" or (last == "name" and key.rsplit(".", 1)[0] in groups):
            continue
        settings[key] = value
    for group in groups:  # a sweep grid may set a key for every component; those that ignore it get a blank
        settings.update({f"{group}.{name}": None for name in _unused_arguments(config, group)
                         if f"{group}.{name}" in settings})
    return settings


def _unused_arguments(config: dict, group: str) -> set[str]:
    """The arguments the run's component of `group` declares unused (`vaebench.checks.Unused`); a run
    saved before `_target_` names its component, and the shipped entry of that name has the target."""
    entry = config.get(group) if isinstance(config.get(group), dict) else {}
    target = entry.get("_target_")
    if target is None and "name" in entry:
        from vaebench.config_tree import saved_config

        target = saved_config(config).get(group, {}).get("_target_")
    try:
        from hydra.utils import get_object

        from vaebench.checks import unused_arguments

        return unused_arguments(get_object(str(target))) if target else set()
    except Exception:  # a user's component that cannot be imported from here: nothing is blanked
        return set()


def _leaves(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:  # lists become tuples so that settings can be compared and collected in sets
            yield f"{prefix}{key}", tuple(value) if isinstance(value, list) else value


# -- rows and what varies -------------------------------------------------------------------------
def table_row(run: Run) -> dict:
    """Every setting and every term of one run: settings by dotted key, terms as `<split>_<term>`
    and their standard errors as `<split>_<term>_se` where the run recorded them."""
    row = {"run": run.folder, **run_settings(run.metrics.get("config", {}))}
    for split in BLOCKS:
        for term, value in (run.metrics.get(split) or {}).items():
            row[f"{split}_{term}"] = value
    return row


def _by_val_elbo(row: dict) -> tuple:
    elbo = row.get("val_elbo")
    return (elbo is None, -(elbo if elbo is not None else 0.0))


def setting_keys(rows: list[dict]) -> list[str]:
    """The settings of the rows: the groups (prior, model, ...) first, then the headline settings,
    then the rest A-Z."""
    terms = tuple(f"{split}_" for split in BLOCKS)
    keys = list(dict.fromkeys(k for row in rows for k in row if k != "run" and not k.startswith(terms)))
    groups = [key for key in keys if is_group(rows, key)]
    headline = [key for key in HEADLINE_SETTINGS if key in keys]
    return groups + headline + sorted(set(keys) - set(groups) - set(headline))


def is_group(rows: list[dict], key: str) -> bool:
    """A config group's choice ("prior": "vamp") rather than a top-level value such as beta."""
    return "." not in key and key not in HEADLINE_SETTINGS and key not in BOOKKEEPING \
        and isinstance(row_value(rows, key), str)


def row_value(rows: list[dict], key: str):
    """The first value of `key` that some row sets, or None."""
    return next((row[key] for row in rows if row.get(key) is not None), None)


def varied_settings(rows: list[dict]) -> list[str]:
    """The settings that differ between the runs, in setting_keys order. A setting a run leaves
    unset (None, or a key its component lacks) does not count as a difference, nor does a
    component's own default that differs only with the component (objective.gamma of capacity and
    of beta_tc in a sweep over objectives)."""
    return [key for key in setting_keys(rows) if key not in BOOKKEEPING
            and len({row.get(key) for row in rows if row.get(key) is not None}) > 1
            and not _follows_its_component(rows, key)]


def _follows_its_component(rows: list[dict], key: str) -> bool:
    """Whether `group.key` takes one value for each choice of its varied group `group`."""
    group = key.split(".", 1)[0]
    if group == key or not is_group(rows, group):
        return False
    values = {}
    for row in rows:
        if row.get(key) is not None:
            values.setdefault(row.get(group), set()).add(row[key])
    return len(values) > 1 and all(len(v) == 1 for v in values.values())


def is_numeric(rows: list[dict], key: str) -> bool:
    values = [row.get(key) for row in rows if row.get(key) is not None]
    return bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def choose_axes(rows: list[dict], varied: list[str]) -> PlotAxes:
    """x: beta when it varies, else the numeric setting with the most values; the other varied
    settings are the series. Seeds are never an axis: runs that differ only by seed are replicates."""
    numeric = [key for key in varied if key != REPLICATE_KEY and is_numeric(rows, key)]
    x = None
    if "beta" in numeric:
        x = "beta"
    elif numeric:
        x = max(numeric, key=lambda key: len({row.get(key) for row in rows}))  # first of the ties
    return PlotAxes(x, tuple(key for key in varied if key not in (x, REPLICATE_KEY)))


def short_name(key: str) -> str:
    return SHORT_NAMES.get(key, key)


def prior_label(row: dict, with_k: bool = True) -> str:
    """e.g. 'VampPrior K=500', 'standard' (whose K is blank), a user's prior by its own name."""
    name = row.get("prior")
    label = PRIOR_NAMES.get(name, str(name)) if name is not None else "prior"
    k = row.get("prior.K")
    return f"{label} K={k}" if with_k and k is not None else label


def series_label(row: dict, axes: PlotAxes) -> str:
    """The legend entry of a row's series: the prior (with K) and the other varied settings."""
    parts = []
    if "prior" in axes.series or "prior.K" in axes.series or not axes.series:
        parts.append(prior_label(row, with_k=axes.x != "prior.K"))
    parts += [f"{short_name(key)}={_setting_text(row.get(key))}" for key in axes.series
              if key not in ("prior", "prior.K")]
    return ", ".join(parts)


# -- the table ------------------------------------------------------------------------------------
def _setting_text(value) -> str:
    """A setting as typed: 0.5, 4, vamp; blank when unset."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "[" + ",".join(_setting_text(v) for v in value) + "]"
    return str(value)


def _measured_text(value, se=None) -> str:
    """A measurement for people: integers as integers, the rest to 2 decimals, ± SE when known."""
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    text = f"{value:.2f}"
    if text == "-0.00":  # an estimate a hair below zero (e.g. I(n;z) of a collapsed posterior)
        text = "0.00"
    return f"{text} ± {se:.2f}" if se is not None else text


def metric_cell(row: dict, column: str) -> str:
    value = row.get(column)
    if column in COUNT_COLUMNS and isinstance(value, float) and value.is_integer():
        value = int(value)  # a count, even where the record holds it as a float
    return _measured_text(value, row.get(f"{column}_se"))


def shared_settings(rows: list[dict], varied: list[str], headline_only: bool = True) -> dict:
    """The settings every run shares (set in some run, never different): the headline ones for the
    line above the table, or all of them for report.md's list."""
    keys = [key for key in setting_keys(rows) if key not in varied and key not in BOOKKEEPING
            and row_value(rows, key) is not None]
    if headline_only:  # a choice called "default" says nothing worth a place above the table
        keys = [key for key in keys if key in HEADLINE_SETTINGS
                or (is_group(rows, key) and row_value(rows, key) != "default")]
    return {key: row_value(rows, key) for key in keys}


def shared_line(rows: list[dict], varied: list[str]) -> str:
    """e.g. 'dataset=mnist5k model=mlp K=500 (vamp) latent_dim=40 seed=0'."""
    return " ".join(f"{short_name(k)}={_setting_text(v)}{_only_for(rows, k)}"
                    for k, v in shared_settings(rows, varied).items())


def _only_for(rows: list[dict], key: str) -> str:
    """' (vamp)' when only the runs of some components set `key` (the standard prior has no K)."""
    group = key.split(".")[0]
    if "." not in key or all(row.get(key) is not None for row in rows) or not is_group(rows, group):
        return ""
    return " (" + "/".join(sorted({str(row.get(group)) for row in rows if row.get(key) is not None})) + ")"


def table_columns(rows: list[dict], varied: list[str]) -> list[str]:
    """What people see: the run, the settings that vary, and the headline terms some run has."""
    return ["run", *varied, *(c for c in METRIC_COLUMNS if any(row.get(c) is not None for row in rows))]


def table_cells(rows: list[dict], varied: list[str]) -> list[list[str]]:
    columns = table_columns(rows, varied)
    header = [METRIC_HEADERS.get(c, short_name(c)) for c in columns]
    body = [[row["run"] if c == "run" else metric_cell(row, c) if c in METRIC_COLUMNS else _setting_text(row.get(c))
             for c in columns] for row in rows]
    return [header, *body]


def format_table(rows: list[dict], varied: list[str]) -> str:
    """The shared settings on one line, then the table of what varies, aligned."""
    columns = table_columns(rows, varied)
    cells = table_cells(rows, varied)
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    text = [c == "run" or not (c in METRIC_COLUMNS or is_numeric(rows, c)) for c in columns]
    lines = ["  ".join(cell.ljust(w) if left else cell.rjust(w) for cell, w, left in zip(line, widths, text)).rstrip()
             for line in cells]
    shared = shared_line(rows, varied)
    return "\n".join(([f"shared by all {len(rows)} runs: {shared}"] if shared else []) + [table_note(rows)] + lines)


def table_note(rows: list[dict]) -> str:
    """The units and splits, and what a ± means where some cell has one."""
    has_se = any(row.get(f"{column}_se") is not None for row in rows for column in METRIC_COLUMNS)
    factors = any(row.get("disentanglement_mig") is not None for row in rows)
    return TABLE_NOTE + (", disentanglement on every split's points" if factors else "") + (SE_NOTE if has_se else "")


def csv_columns(rows: list[dict]) -> list[str]:
    """Every column: the settings, then each term with its standard error beside it."""
    settings = setting_keys(rows)
    terms = list(dict.fromkeys([*METRIC_COLUMNS, *(k for row in rows for k in row if k.startswith(tuple(f"{s}_" for s in BLOCKS)))]))
    values = [t for t in terms if not t.endswith("_se") or t[:-3] not in terms]
    ordered = []
    for term in values:
        ordered += [term] + ([f"{term}_se"] if f"{term}_se" in terms else [])
    return ["run", *settings, *(t for t in ordered if any(row.get(t) is not None for row in rows) or t in ALWAYS_IN_CSV)]


def write_csv(rows: list[dict], path: Path) -> None:
    columns = csv_columns(rows)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([short_name(c) for c in columns])
        writer.writerows([_csv_value(row.get(c)) for c in columns] for row in rows)


def _csv_value(value):
    if value is None:
        return ""
    return _setting_text(value) if isinstance(value, tuple) else value


def write_markdown(rows: list[dict], varied: list[str], plots: list[str], notes: list[str], path: Path,
                   sections: list[str] = ()) -> None:
    cells = table_cells(rows, varied)
    shared = shared_line(rows, varied)
    lines = [f"# Sweep report: {path.parent.resolve().name}", "",
             f"{len(rows)} finished runs, best validation ELBO first; {table_note(rows)}.", ""]
    if shared:
        lines += [f"Shared by all runs: `{shared}`", ""]
    lines += ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(cells[0])]
    lines += ["| " + " | ".join(line) + " |" for line in cells[1:]]
    lines += [""] + [f"- {note}" for note in notes] + ([""] if notes else [])
    lines += [*sections]
    lines += [f"![{Path(plot).stem}]({plot})" for plot in plots]
    everything = shared_settings(rows, varied, headline_only=False)
    lines += ["", "<details><summary>Every setting the runs share</summary>", ""]
    lines += [f"- `{short_name(k)}={_setting_text(v)}`" for k, v in everything.items()]
    lines += ["", "</details>"]
    path.write_text("\n".join(lines) + "\n")


# -- what the plots draw --------------------------------------------------------------------------
@dataclass(frozen=True)
class Point:
    """One term of one configuration: the mean over its replicates (seeds) and the error bar."""
    x: object             # the x setting's value; None on a plot without a numeric axis
    mean: float
    error: float | None   # ±1 s.d. over replicates, else the run's Monte-Carlo SE, else unknown
    error_kind: str | None  # "seeds", "SE" or None
    values: tuple[float, ...]  # the replicates themselves


def aggregate(rows: list[dict], axes: PlotAxes, column: str) -> dict[str, list[Point]]:
    """`column` by series label, then by x value (ascending), over the rows that have it. Series
    come in the order of their settings' values (K=50 before K=500)."""
    grouped: dict[str, dict[object, list[dict]]] = {}
    order: dict[str, tuple] = {}
    for row in rows:
        if row.get(column) is None:
            continue
        label = series_label(row, axes)
        order[label] = tuple(_sortable(row.get(key)) for key in axes.series)
        grouped.setdefault(label, {}).setdefault(row.get(axes.x) if axes.x else None, []).append(row)
    return {label: [_point(x, grouped[label][x], column) for x in sorted(grouped[label], key=_sortable)]
            for label in sorted(grouped, key=lambda label: (order[label], label))}


def _point(x, replicates: list[dict], column: str) -> Point:
    values = tuple(float(row[column]) for row in replicates)
    if len(values) > 1:
        return Point(x, statistics.fmean(values), statistics.stdev(values), "seeds", values)
    se = replicates[0].get(f"{column}_se")
    return Point(x, values[0], se, "SE" if se is not None else None, values)


def _sortable(value) -> tuple:
    """None first, then numbers by value, then text: a key that sorts any mix of settings."""
    if value is None:
        return (0, 0.0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, float(value), "")
    return (2, 0.0, str(value))


def error_caption(points: list[Point]) -> str:
    """What the error bars are, for the axis label; empty when there are none."""
    kinds = {p.error_kind for p in points if p.error is not None}
    if kinds == {"seeds"}:
        return "bars: ±1 s.d. over replicate runs (seeds)"
    if kinds == {"SE"}:
        return "bars: ±1 Monte-Carlo SE"
    if kinds:
        return "bars: ±1 s.d. over replicates, or ±1 SE for a single run"
    return ""


def plot_key_name(axes: PlotAxes) -> str:
    """The `<key>` of `<term>_vs_<key>.png`: beta, K, latent_dim, ...; the series when no number varies."""
    if axes.x:
        return short_name(axes.x).replace(".", "_")
    return "_".join(short_name(key).replace(".", "_") for key in axes.series) or "run"


def axis_name(key: str) -> str:
    return AXIS_NAMES.get(key, short_name(key))


def legend_title(axes: PlotAxes) -> str:
    names = ["prior" if key in ("prior", "prior.K") else short_name(key) for key in axes.series]
    return ", ".join(dict.fromkeys(names)) or "prior"


# -- the plots ------------------------------------------------------------------------------------
def write_plots(rows: list[dict], varied: list[str], sweep_dir: Path) -> tuple[list[str], list[str]]:
    """The PNG files written, and one line for each plot left out."""
    axes = choose_axes(rows, varied)
    written, notes = [], []
    plane = [row for row in rows if row.get("val_kl") is not None and row.get("val_reconstruction") is not None]
    if plane:
        _save(rate_distortion_figure(plane, axes), sweep_dir / "rate_distortion.png")
        written.append("rate_distortion.png")
    else:
        notes.append("rate_distortion.png left out: no run has val kl and reconstruction in metrics.json.")
    for term in TERM_PLOTS:
        name = f"{term}_vs_{plot_key_name(axes)}.png"
        if all(row.get(f"val_{term}") is None for row in rows):
            notes.append(f"{name} left out: no run has val {term} in metrics.json (ELBO-surgery diagnostics).")
            continue
        bounds = [row["val_mutual_info_max"] for row in rows if row.get("val_mutual_info_max") is not None]
        bound = max(bounds) if term == "mutual_info" and bounds else None
        _save(term_figure(rows, axes, term, bound), sweep_dir / name)
        written.append(name)
    from vaebench.report_disentanglement import disentanglement_plots

    more, more_notes = disentanglement_plots(rows, axes, sweep_dir)
    return written + more, notes + more_notes


def write_prior_axis(rows: list[dict], varied: list[str], sweep_dir: Path) -> list[str]:
    """prior_axis.png and its table's markdown lines when the runs sit at two places or more of the
    empirical-Bayes axis and vary nothing else (`vaebench.prior_axis`); nothing otherwise."""
    from vaebench import prior_axis  # it draws with this module's helpers

    placed = prior_axis.axis_rows(rows, varied)
    if not placed:
        return []
    _save(prior_axis.figure(placed), sweep_dir / "prior_axis.png")
    return prior_axis.markdown_table(placed)


def term_figure(rows: list[dict], axes: PlotAxes, term: str, bound: float | None = None) -> Figure:
    """`val_<term>` against the x setting, one line per series through the mean over seeds (the
    seeds themselves as faint dots); without a numeric setting, one tick per configuration."""
    title, symbol = TERM_PLOTS[term]
    by_series = aggregate(rows, axes, f"val_{term}")
    points = [p for series in by_series.values() for p in series]
    figure = Figure(figsize=(7.5, 4.5), dpi=110, layout="constrained")
    ax = figure.add_subplot()
    for position, (label, colour) in enumerate(_colours(list(by_series)).items()):
        series = by_series[label]
        if axes.x and all(p.x is None for p in series):  # e.g. the standard prior on a K axis: it has no K
            ax.axhline(series[0].mean, color=colour, ls=":", lw=1.5, label=f"{label} (no {short_name(axes.x)})")
            continue
        series = [p for p in series if p.x is not None] if axes.x else series
        xs = [p.x for p in series] if axes.x else [position]
        ax.errorbar(xs, [p.mean for p in series], yerr=_errors(series), color=colour, marker="o", ms=5,
                    capsize=3, lw=1.5, label=label)
        for x, p in zip(xs, series):
            if len(p.values) > 1:
                ax.scatter([x] * len(p.values), p.values, color=colour, s=12, alpha=0.35, lw=0)
    if axes.x:
        _numeric_x_axis(ax, [p.x for p in points], axes.x)
        ax.set_title(f"{title} against {'β' if axes.x == 'beta' else axis_name(axes.x)}")
    else:
        ax.set_xticks(range(len(by_series)), list(by_series), rotation=20 if len(by_series) > 4 else 0)
        ax.set_xlim(-0.5, len(by_series) - 0.5)
        ax.set_title(f"{title} by {legend_title(axes)}")
    caption = error_caption(points)
    ax.set_ylabel(f"{symbol}  [nats, val]" + (f"\n{caption}" if caption else ""))
    handles = ax.get_legend_handles_labels()[0] if axes.x else []  # a categorical axis names them itself
    if bound is not None:
        handles.append(_draw_bound(ax, bound, max(p.mean + (p.error or 0.0) for p in points)))
    if handles:
        figure.legend(handles=handles, loc="outside right upper", title=legend_title(axes) if len(handles) > 1 else None,
                      fontsize=8, title_fontsize=8)
    ax.grid(alpha=0.25)
    return figure


def _errors(points: list[Point]) -> list[float] | None:
    return [p.error or 0.0 for p in points] if any(p.error is not None for p in points) else None


def _draw_bound(ax, bound: float, data_top: float) -> Line2D:
    """The bound log N of the mutual information: drawn where it leaves the data at least half the
    height of the plot, else only named in the legend, so that it never flattens the data."""
    if bound <= 2 * max(data_top, 0.0):
        return ax.axhline(bound, ls="--", lw=1, color=GREY, label=f"log N = {bound:.2f} (upper bound)")
    return Line2D([], [], ls="--", lw=1, color=GREY, label=f"log N = {bound:.2f} (off scale, above)")


def _numeric_x_axis(ax, values: list, key: str) -> None:
    """Ticks at the values the sweep used, written as typed (1, 2, 4, 8; not 2⁰, 2¹); a log scale
    when they span a factor of 4 or more."""
    values = sorted({float(v) for v in values if v is not None})
    log = values[0] > 0 and values[-1] / values[0] >= 4
    if log:
        ax.set_xscale("log")
        margin = (values[-1] / values[0]) ** 0.06
        ax.set_xlim(values[0] / margin, values[-1] * margin)
    if len(values) <= 12:
        ax.set_xticks(values, [_setting_text(v) for v in values])
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(axis_name(key) + (" (log scale)" if log else ""))


def rate_distortion_figure(rows: list[dict], axes: PlotAxes) -> Figure:
    """One marker per configuration at (rate, distortion): colour for the series, shape for the x
    setting, a thin line through each series in x order; over dashed lines of equal ELBO
    (R + D = -ELBO), each labelled with its -ELBO where it leaves the plot (top or right edge)."""
    rates = aggregate(rows, axes, "val_kl")
    distortions = {label: [_negated(p) for p in series]
                   for label, series in aggregate(rows, axes, "val_reconstruction").items()}
    figure = Figure(figsize=(8, 5.5), dpi=110, layout="constrained")
    ax = figure.add_subplot()
    x_values = sorted({p.x for series in rates.values() for p in series}, key=_sortable)
    markers = {x: MARKERS[i % len(MARKERS)] for i, x in enumerate(x_values)}
    colours = _colours(list(rates))
    for label, colour in colours.items():
        rate, distortion = rates[label], distortions[label]
        if len(rate) > 1:
            ax.plot([p.mean for p in rate], [p.mean for p in distortion], color=colour, lw=1, alpha=0.5, zorder=2)
        for r, d in zip(rate, distortion):
            ax.errorbar(r.mean, d.mean, xerr=r.error, yerr=d.error, color=colour, marker=markers[r.x], ms=7,
                        capsize=2, ls="none", zorder=3)
    points = [(r, d) for label in rates for r, d in zip(rates[label], distortions[label])]
    x_limits = _padded(min(r.mean - (r.error or 0) for r, _ in points), max(r.mean + (r.error or 0) for r, _ in points))
    y_limits = _padded(min(d.mean - (d.error or 0) for _, d in points), max(d.mean + (d.error or 0) for _, d in points))
    step = iso_elbo_levels(x_limits, y_limits)[1]
    best = math.floor(min(r.mean + d.mean for r, d in points) / step) * step  # a round -ELBO at or below the best
    x_limits, y_limits = _reach_the_best_run(x_limits, y_limits, best)
    _iso_elbo_lines(ax, x_limits, y_limits, step)
    ax.set_xlim(*x_limits)
    ax.set_ylim(*y_limits)
    caption = error_caption([p for pair in points for p in pair])
    ax.set_xlabel("rate R = KL(q(z|x) || p(z))  [nats, val]" + (f";  {caption}" if caption else ""))
    ax.set_ylabel("distortion D = −E_q[log p(x|z)]  [nats, val]")
    ax.set_title("Rate and distortion of each configuration (validation split)")
    figure.legend(handles=_rate_distortion_legend(colours, markers, axes), loc="outside right upper",
                  fontsize=8, title=legend_title(axes), title_fontsize=8)
    return figure


def _negated(point: Point) -> Point:
    return Point(point.x, -point.mean, point.error, point.error_kind, tuple(-v for v in point.values))


def _rate_distortion_legend(colours: dict[str, str], markers: dict, axes: PlotAxes) -> list[Line2D]:
    handles = [Line2D([], [], color=colour, marker="o", lw=1, label=label) for label, colour in colours.items()]
    if axes.x:
        symbol = "β" if axes.x == "beta" else short_name(axes.x)
        handles += [Line2D([], [], color=GREY, marker=marker, ls="none", label=f"{symbol} = {_setting_text(x)}" if x is not None else f"no {symbol}")
                    for x, marker in markers.items()]
    handles.append(Line2D([], [], ls="--", lw=0.8, color=GREY, label="equal ELBO"))
    return handles


def _reach_the_best_run(x_limits: tuple[float, float], y_limits: tuple[float, float],
                        best: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Limits whose labelled dashed lines (those leaving through the top or right edge) reach down to
    `best`, the round -ELBO below the best run's: the padding of a corner run can leave it below them. Widens the cheaper of
    the two ways, leftwards or downwards, and not at all where that costs over half a span."""
    (x0, x1), (y0, y1) = x_limits, y_limits
    left, down = x0 + y1 - best, x1 + y0 - best  # how far each edge must move
    if min(left, down) <= 0:
        return x_limits, y_limits
    if left / (x1 - x0) <= down / (y1 - y0):
        return ((x0 - left * 1.02, x1), y_limits) if left <= 0.5 * (x1 - x0) else (x_limits, y_limits)
    return (x_limits, (y0 - down * 1.02, y1)) if down <= 0.5 * (y1 - y0) else (x_limits, y_limits)


def _iso_elbo_lines(ax, x_limits: tuple[float, float], y_limits: tuple[float, float], step: float) -> None:
    """Dashed lines R + D = L at round values of L, each labelled once, with L, where it leaves the
    plot: on the top edge as a tick of a second x axis, or on the right edge as one of a second y
    axis. Ticks there cannot overprint the points, and the spacing chosen keeps them apart."""
    (x0, x1), (y0, y1) = x_limits, y_limits
    levels, step = iso_elbo_levels(x_limits, y_limits, step=step)
    top, right = [], []
    for level in levels:
        ax.plot([x0, x1], [level - x0, level - x1], ls="--", lw=0.8, color="0.7", zorder=1)
        x_top, y_right = level - y1, level - x1
        # near the top-right corner a top label would meet the right edge's labels: label it there
        if x0 <= x_top <= x1 - 0.1 * (x1 - x0) or not y0 <= y_right <= y1:
            top.append((x_top, level))
        else:
            right.append((y_right, level))
    decimals = max(0, -math.floor(math.log10(step)))
    top_axis, right_axis = ax.secondary_xaxis("top"), ax.secondary_yaxis("right")
    for axis, labelled in ((top_axis, top), (right_axis, right)):
        axis.set_ticks([at for at, _ in labelled], labels=[f"{level:.{decimals}f}" for _, level in labelled])
        axis.minorticks_off()
        axis.tick_params(labelsize=7, labelcolor=GREY, color="0.7")
    # say once what the numbers on the second axes are, on the edge that carries labels
    caption = "−ELBO = R + D of the dashed line  [nats]"
    if top:
        top_axis.set_xlabel(caption, fontsize=7, color=GREY)
    elif right:
        right_axis.set_ylabel(caption, fontsize=7, color=GREY)


def iso_elbo_levels(x_limits: tuple[float, float], y_limits: tuple[float, float], most: int = 7,
                    step: float | None = None) -> tuple[list[float], float]:
    """Round values of -ELBO for the dashed lines, as many as fit up to `most`, and their step.
    Only lines that leave the plot through its top or right edge, where they are labelled: the
    others cross only the lower-left corner, below the runs' rate-distortion frontier. `most` lines
    over the larger span keep neighbouring labels a label's width apart."""
    (x0, x1), (y0, y1) = x_limits, y_limits
    low, high = min(x0 + y1, x1 + y0), x1 + y1
    step = step or _nice_step((high - low) / most)
    first = math.ceil(low / step) * step
    levels = [first + i * step for i in range(int((high - first) / step) + 1)]
    return [level for level in levels if level <= high], step


def _nice_step(raw: float) -> float:
    """The smallest of 1, 2, 5 times a power of ten that is at least `raw`."""
    if not raw > 0:
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw * (1 - 1e-9))


def _padded(low: float, high: float) -> tuple[float, float]:
    """10% room on each side; a span of one value gets room in proportion to the value itself."""
    span = high - low
    pad = 0.1 * span if span > 1e-9 * max(abs(high), 1.0) else 1e-3 * max(abs(high), 1.0)
    return low - pad, high + pad


def _colours(names: list[str]) -> dict[str, str]:
    return {name: f"C{i % 10}" for i, name in enumerate(names)}


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)  # the Agg canvas: PNG files without a display
    figure.savefig(path)
