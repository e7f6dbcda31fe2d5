"""`vaebench report SWEEP_DIR`: one row per finished run of a sweep, sorted by validation ELBO, as a
console table, report.csv, report.md and report.tex (latex.py: the tables for a paper), and the figures
that compare the runs' terms:

- rate_distortion.png (rate_distortion.py): the rate-distortion plane of Alemi et al. 2018;
- mutual_info_vs_<key>.png, marginal_kl_vs_<key>.png (term_plots.py): the two halves of the KL
  against the numeric setting the sweep varied (beta when it varies), one line per value of the
  other varied settings (e.g. prior and K); seeds are replicates, averaged;
- inference_gaps.png (inference_gaps.py), when the runs measured them: ELBO + amortization gap +
  approximation gap = log p(x), one row per configuration;
- prior_axis.png (prior_axis.py), when the runs' priors lie at two places or more of the
  empirical-Bayes axis: every term that tells them apart against it;
- disentanglement_vs_<key>.png and factor_traversals.png (disentanglement.py) on data with known factors.

Below the table, each configuration's paired differences from the sweep's first on the test points
they share, with paired SEs and a t test of each (significance.py), also drawn as
paired_differences.png (paired.py). The report reads what differs between the runs from their
configs (settings.py). A sweep still
running works: runs that have not completed are counted and left out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vaebench.errors import UserError
from vaebench.report import prior_axis
from vaebench.report.disentanglement import disentanglement_plots
from vaebench.report.drawing import save_png
from vaebench.report.inference_gaps import gaps_figure, has_gaps
from vaebench.report.latex import write_latex
from vaebench.report.paired import console_lines, differences_figure, markdown_lines, paired_differences
from vaebench.report.rate_distortion import rate_distortion_figure
from vaebench.report.runs import collect_runs, skipped_note, table_row
from vaebench.report.settings import by_val_elbo, choose_axes, plot_key_name, varied_settings
from vaebench.report.table import format_table, write_csv, write_markdown
from vaebench.report.term_plots import TERM_PLOTS, term_figure


def report(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="vaebench report",
        description="Tabulate and plot the finished runs of a sweep; writes report.csv, report.md, report.tex "
                    "(booktabs tables for a paper) and PNG plots into SWEEP_DIR.")
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
    rows = sorted((table_row(run) for run in runs), key=by_val_elbo)
    varied = varied_settings(rows)
    print(format_table(rows, varied))
    if skipped:
        print(skipped)
    differences, pairing_notes = paired_differences(rows, varied, sweep_dir)
    if differences:
        print("\n" + "\n".join(console_lines(differences)))
    write_csv(rows, sweep_dir / "report.csv")
    plots, notes = write_plots(rows, varied, sweep_dir)
    notes = pairing_notes + notes
    if differences:
        save_png(differences_figure(differences), sweep_dir / "paired_differences.png")
        plots.append("paired_differences.png")
    axis = write_prior_axis(rows, varied, sweep_dir)
    if axis:
        print("\n".join(axis))
        plots.append("prior_axis.png")
    for note in notes:
        print(note)
    write_markdown(rows, varied, plots, [skipped, *notes] if skipped else notes, sweep_dir / "report.md",
                   [*axis, *markdown_lines(differences), *([""] if differences else [])])
    write_latex(rows, varied, differences, sweep_dir)
    print(f"Wrote {', '.join(['report.csv', 'report.md', 'report.tex', *plots])} in {sweep_dir}")


# -- the plots ------------------------------------------------------------------------------------
def write_plots(rows: list[dict], varied: list[str], sweep_dir: Path) -> tuple[list[str], list[str]]:
    """The PNG files written, and one line for each plot left out."""
    axes = choose_axes(rows, varied)
    written, notes = [], []
    plane = [row for row in rows if row.get("val_kl") is not None and row.get("val_reconstruction") is not None]
    if plane:
        save_png(rate_distortion_figure(plane, axes), sweep_dir / "rate_distortion.png")
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
        save_png(term_figure(rows, axes, term, bound), sweep_dir / name)
        written.append(name)
    if has_gaps(rows):
        save_png(gaps_figure(rows, varied), sweep_dir / "inference_gaps.png")
        written.append("inference_gaps.png")
    more, more_notes = disentanglement_plots(rows, axes, sweep_dir)
    return written + more, notes + more_notes


def write_prior_axis(rows: list[dict], varied: list[str], sweep_dir: Path) -> list[str]:
    """prior_axis.png and its table's markdown lines when the runs sit at two places or more of the
    empirical-Bayes axis and vary nothing else (`prior_axis.py`); nothing otherwise."""
    placed = prior_axis.axis_rows(rows, varied)
    if not placed:
        return []
    save_png(prior_axis.figure(placed), sweep_dir / "prior_axis.png")
    return prior_axis.markdown_table(placed)
