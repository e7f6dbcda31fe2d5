"""The report's table: the console's, report.csv (every setting and term, standard errors beside them)
and report.md (the table, the shared settings, the figures)."""

from __future__ import annotations

import csv
import math
import textwrap
from pathlib import Path

from vaebench.report.bars import SE_WORDS, split_points, standard_error_bar
from vaebench.report.runs import BLOCKS
from vaebench.report.settings import (BOOKKEEPING, HEADLINE_SETTINGS, REPLICATE_KEY, is_group, is_numeric, row_value,
                                      run_configurations, setting_keys, setting_text, short_name)


# column -> (split, term) in metrics.json: the terms the table shows
METRIC_COLUMNS = {
    "val_elbo": ("val", "elbo"), "val_reconstruction": ("val", "reconstruction"), "val_kl": ("val", "kl"),
    "val_mutual_info": ("val", "mutual_info"), "val_marginal_kl": ("val", "marginal_kl"),
    "val_active_units": ("val", "active_units"), "test_log_likelihood": ("test", "log_likelihood"),
}


# the same columns as people read them (console and report.md); the CSV keeps the names above
METRIC_HEADERS = {
    "val_elbo": "ELBO", "val_reconstruction": "recon", "val_kl": "KL", "val_mutual_info": "I(n;z)",
    "val_marginal_kl": "KL(q(z) ‖ p(z))", "val_active_units": "active", "test_log_likelihood": "test log p(x)",
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


CONFIGURATION = "configuration"  # the table's column: the configuration's name, as every figure and table says it


# I(n;z) <= log N on a split of N points. Within this share of its bound, an encoder tells the split's
# points apart, and I(n;z) then measures N, not the model: runs there are not compared by it.
AT_THE_BOUND = 0.99
BOUND_MARK = "†"
NOTE_WIDTH = 120  # the console's note lines are wrapped at this width


def measured_text(value, se=None) -> str:
    """A measurement for people: integers as integers, the rest to 2 decimals, ± SE when known."""
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    text = f"{value:.2f}"
    if text == "-0.00":  # an estimate a hair below zero (e.g. I(n;z) of a collapsed posterior)
        text = "0.00"
    return f"{text} ± {se:.2f}" if se is not None else text


def metric_cell(row: dict, column: str, flag_bound: bool = False) -> str:
    value = row.get(column)
    if column in COUNT_COLUMNS and isinstance(value, float) and value.is_integer():
        value = int(value)  # a count, even where the record holds it as a float
    text = measured_text(value, row.get(f"{column}_se"))
    return f"{text} {BOUND_MARK}" if flag_bound and column == "val_mutual_info" and at_the_bound(row) else text


def at_the_bound(row: dict, split: str = "val") -> bool:
    """Whether the run's I(n;z) on `split` lies within 1% of its bound log N."""
    value, bound = row.get(f"{split}_mutual_info"), row.get(f"{split}_mutual_info_max")
    return value is not None and bound is not None and bound > 0 and value >= AT_THE_BOUND * bound


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
    return " ".join(f"{short_name(k)}={setting_text(v)}{_only_for(rows, k)}"
                    for k, v in shared_settings(rows, varied).items())


def _only_for(rows: list[dict], key: str) -> str:
    """' (vamp)' when only the runs of some components set `key` (the standard prior has no K)."""
    group = key.split(".")[0]
    if "." not in key or all(row.get(key) is not None for row in rows) or not is_group(rows, group):
        return ""
    return " (" + "/".join(sorted({str(row.get(group)) for row in rows if row.get(key) is not None})) + ")"


def table_columns(rows: list[dict], varied: list[str]) -> list[str]:
    """What people see: the run, its configuration (named by the settings that vary, seeds aside), the
    seed where seeds vary, and the headline terms some run has."""
    settings = [CONFIGURATION] if any(key != REPLICATE_KEY for key in varied) else []
    settings += [REPLICATE_KEY] if REPLICATE_KEY in varied else []
    return ["run", *settings, *(c for c in METRIC_COLUMNS if any(row.get(c) is not None for row in rows))]


def table_cells(rows: list[dict], varied: list[str]) -> list[list[str]]:
    columns = table_columns(rows, varied)
    names = run_configurations(rows, varied)
    header = [METRIC_HEADERS.get(c, short_name(c)) for c in columns]
    compared = len(rows) > 1
    body = [[row["run"] if c == "run" else names[row["run"]] if c == CONFIGURATION
             else metric_cell(row, c, compared) if c in METRIC_COLUMNS else setting_text(row.get(c))
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
    note = [textwrap.fill(line, NOTE_WIDTH, subsequent_indent="  ") for line in table_note(rows).splitlines()]
    return "\n".join(([f"shared by all {len(rows)} runs: {shared}"] if shared else []) + note + lines)


def table_note(rows: list[dict]) -> str:
    """The units and splits, a line for each kind of ± the columns have (bars.py), what the test
    log p(x) was estimated from, and what the I(n;z) flag means where some run has it."""
    by_source: dict[str, list[str]] = {}
    for column in METRIC_COLUMNS:
        if any(row.get(f"{column}_se") is not None for row in rows):
            by_source.setdefault(standard_error_bar(column, rows[0]).source, []).append(METRIC_HEADERS[column])
    factors = any(row.get("disentanglement_mig") is not None for row in rows)
    lines = [TABLE_NOTE + (", disentanglement on every split's points" if factors else ""),
             *(f"± 1 SE {SE_WORDS[source]}: {', '.join(headers)}" for source, headers in by_source.items())]
    return "\n".join(lines + [line for line in (likelihood_note(rows), bound_note(rows)) if line])


def likelihood_note(rows: list[dict]) -> str:
    """e.g. 'test log p(x): importance-weighted, S = 5,000 samples per point (eval.iw_samples), on 500 test
    points'; empty where no run has it."""
    scored = [row for row in rows if row.get("test_log_likelihood") is not None]
    if not scored:
        return ""
    samples = sorted({row["eval.iw_samples"] for row in scored if row.get("eval.iw_samples") is not None})
    points = sorted({n for n in (split_points(row, "test") for row in scored) if n is not None})
    s = " or ".join(f"{n:,}" for n in samples) if samples else "(not recorded)"
    on = " or ".join(f"{n:,}" for n in points) + " test points" if points else "the test split's points"
    return f"test log p(x): importance-weighted, S = {s} samples per point (eval.iw_samples), on {on}"


def bound_note(rows: list[dict]) -> str:
    """What the flag on a validation I(n;z) at its bound says; empty where no run is flagged, or only one
    run is shown (nothing is compared)."""
    flagged = [row for row in rows if at_the_bound(row)]
    if len(rows) < 2 or not flagged:
        return ""
    bounds = sorted({row["val_mutual_info_max"] for row in flagged})
    sizes = " or ".join(f"{round(math.exp(bound)):,}" for bound in bounds)
    text = (f"{BOUND_MARK} I(n;z) within 1% of its bound log N = {' or '.join(f'{b:.2f}' for b in bounds)} (N = {sizes} "
            "validation points): the encoder tells every point apart, so I(n;z) measures N there, not the model; do "
            "not compare these runs by it (the train split's larger N lifts the bound)")
    return text


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
    return setting_text(value) if isinstance(value, tuple) else value


def write_markdown(rows: list[dict], varied: list[str], plots: list[str], notes: list[str], path: Path,
                   sections: list[str] = ()) -> None:
    cells = table_cells(rows, varied)
    shared = shared_line(rows, varied)
    lines = [f"# Sweep report: {path.parent.resolve().name}", "",
             f"{len(rows)} finished runs, best validation ELBO first; {table_note(rows).replace(chr(10), '; ')}.", ""]
    if shared:
        lines += [f"Shared by all runs: `{shared}`", ""]
    lines += ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(cells[0])]
    lines += ["| " + " | ".join(line) + " |" for line in cells[1:]]
    lines += [""] + [f"- {note}" for note in notes] + ([""] if notes else [])
    lines += [*sections]
    lines += [f"![{Path(plot).stem}]({plot})" for plot in plots]
    everything = shared_settings(rows, varied, headline_only=False)
    lines += ["", "<details><summary>Every setting the runs share</summary>", ""]
    lines += [f"- `{short_name(k)}={setting_text(v)}`" for k, v in everything.items()]
    lines += ["", "</details>"]
    path.write_text("\n".join(lines) + "\n")
