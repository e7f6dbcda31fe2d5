"""What `vaebench report` hands a paper: report.tex (booktabs tables of the terms and of the paired
differences, each configuration named as in the console's table and every figure; it compiles where
pdflatex is installed), the importance samples and points behind log p(x), the flag on an I(n;z) at its
bound, and paired_differences.png at a paper's width."""

from __future__ import annotations

import contextlib
import io
import math
import shutil
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from tests.report.test_report import record, rows_of, write_sweep
from vaebench.report import command, latex, settings, table
from vaebench.run.per_point import save_points

PRIORS = ("standard", "vamp", "mog")


def sweep_with_points(folder, seeds=(0, 1, 2), priors=PRIORS, bound_prior="vamp"):
    """A prior x seed sweep whose runs kept their test points (500 of them, every term); `bound_prior`'s
    validation I(n;z) sits at its bound log N, the others' well below it."""
    rng = np.random.default_rng(0)
    records = [record(prior=prior, K=500 if prior == "vamp" else None, seed=seed) for seed in seeds for prior in priors]
    for metrics in records:
        val = metrics["val"]
        val["mutual_info"] = val["mutual_info_max"] - (0.01 if metrics["config"]["choices"]["prior"] == bound_prior else 3)
        metrics["test"]["mutual_info_max"] = math.log(500)
    write_sweep(folder, records)
    points = {seed: torch.as_tensor(rng.random((500, 4))) for seed in seeds}
    for number, metrics in enumerate(records):
        seed, prior = metrics["config"]["seed"], metrics["config"]["choices"]["prior"]
        values = rng.normal(-100, 30, 500) + PRIORS.index(prior) * 0.5 + 0.4 * seed
        kept = {"log_likelihood": values + 2, "elbo": values, "reconstruction": values - 20,
                "kl": 20 + rng.normal(0, 1, 500) + PRIORS.index(prior)}
        save_points(folder / str(number), points[seed], {term: torch.as_tensor(v) for term, v in kept.items()})
    return records


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep")
    sweep_with_points(folder)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        command.report([str(folder)])
    return folder, out.getvalue()


def test_report_tex_has_the_terms_and_the_paired_differences_in_booktabs(reported):
    folder, printed = reported
    tex = (folder / "report.tex").read_text()
    assert tex.count(r"\begin{tabular}") == 2 and tex.count(r"\toprule") == 2 and tex.count(r"\bottomrule") == 2
    assert r"\usepackage{booktabs}" in tex and tex.count("{") == tex.count("}")
    terms, differences = tex.split(r"\label{tab:paired}")
    for name in ("standard", "VampPrior K=500", "MoG"):
        assert f"\n{name} & 3 & $" in terms  # one row per configuration, its three seeds averaged
    assert r"$-116.27 \pm 0.48$" in terms  # the standard prior's val ELBO over seeds: mean ± s.d./√3
    assert r"S$ = 5,000 samples per point" in terms and "500 test points" in terms
    assert "\nVampPrior K=500 & $\\log p(x)$ & $" in differences and "t with 2 df" in differences
    assert r"\pm" in differences and "3 seeds, paired on each seed's points" in differences
    assert "vamp &" not in tex and "Wrote report.csv, report.md, report.tex" in printed


def test_every_table_names_a_configuration_as_the_paired_differences_do(reported):
    folder, printed = reported
    table_lines = printed.split("Test-point differences")[0].splitlines()
    header = next(line for line in table_lines if line.startswith("run "))
    assert header.split()[:3] == ["run", "configuration", "seed"]
    names = {line[5:21].strip() for line in table_lines[table_lines.index(header) + 1:] if line.strip()}
    assert names == {"standard", "VampPrior K=500", "MoG"}
    markdown = (folder / "report.md").read_text()
    assert "| VampPrior K=500 | log p(x) |" in markdown  # the paired differences' table
    assert "| 1 | VampPrior K=500 | 0 |" in markdown  # run 1's row of the table


def test_the_printed_table_says_what_log_px_was_estimated_from(reported):
    _, printed = reported
    assert "test log p(x): importance-weighted, S = 5,000 samples per point (eval.iw_samples), on 500 test points" in printed


def test_an_i_nz_at_its_bound_is_flagged_when_runs_are_compared(reported):
    folder, printed = reported
    flagged = [line for line in printed.splitlines() if "VampPrior K=500" in line and line[:1].isdigit()]
    assert len(flagged) == 3 and all("6.20 ± 0.08 †" in line for line in flagged)
    assert not any("†" in line for line in printed.splitlines() if line[:1].isdigit() and "VampPrior" not in line)
    assert "† I(n;z) within 1% of its bound log N = 6.21 (N = 500 validation points)" in printed
    assert "$^\\dagger$" in (folder / "report.tex").read_text().split(r"\label{tab:paired}")[0]

    alone = rows_of([record()])
    alone[0]["val_mutual_info"] = alone[0]["val_mutual_info_max"]
    assert "†" not in table.format_table(alone, [])  # one run: nothing is compared
    below = rows_of([record(beta=1), record(beta=2)])
    for row in below:
        row["val_mutual_info"] = 0.98 * row["val_mutual_info_max"]
    assert "†" not in table.format_table(below, settings.varied_settings(below))


def test_report_tex_compiles(reported, tmp_path):
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed")
    shutil.copy(reported[0] / "report.tex", tmp_path)
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "report.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "Overfull" not in proc.stdout and (tmp_path / "report.pdf").is_file()


def test_latex_takes_a_users_names_literally():
    assert latex.tex("my_prior 50% & {x}") == r"my\_prior 50\% \& \{x\}"
    assert latex.tex("p < 0.001, −1.2 ± 0.3") == "p $<$ 0.001, $-$1.2 $\\pm$ 0.3"


def test_paired_differences_png_is_a_papers_width(reported):
    folder, _ = reported
    with Image.open(folder / "paired_differences.png") as image:
        width, height = (size / dpi for size, dpi in zip(image.size, image.info["dpi"]))
    assert width == pytest.approx(6.5, abs=0.05) and 2.2 < height < 3.5
