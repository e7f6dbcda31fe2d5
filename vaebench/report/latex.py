"""report.tex: a sweep's tables for a paper, in booktabs rules: each configuration's headline terms with
± 1 SE, and its paired differences from the sweep's first with their SE and the t test's verdict
(paired.py, significance.py). Configurations are named as in every other table and figure
(settings.configuration_name). A document of its own (`pdflatex report.tex`); each table environment
can be copied into a paper whose preamble has \\usepackage{booktabs}."""

from __future__ import annotations

import math
from pathlib import Path

from vaebench.report.paired import Difference
from vaebench.report.settings import configuration_names, configurations
from vaebench.report.table import (METRIC_COLUMNS, at_the_bound, bound_note, likelihood_note, measured_text,
                                   table_columns)

# The table's headers in LaTeX (METRIC_HEADERS says them in plain text).
TEX_HEADERS = {
    "val_elbo": "ELBO", "val_reconstruction": "recon.", "val_kl": "KL", "val_mutual_info": "$I(n;z)$",
    "val_marginal_kl": r"$\mathrm{KL}(q(z)\,\|\,p(z))$", "val_active_units": "active",
    "test_log_likelihood": r"test $\log p(x)$", "disentanglement_mig": "MIG",
    "disentanglement_factor_vae_score": "FactorVAE", "disentanglement_dci_disentanglement": "DCI-D",
}

TEX_TERMS = {"log_likelihood": r"$\log p(x)$", "elbo": "ELBO", "reconstruction": "reconstruction", "kl": "KL"}

# The maths in the report's notes, as LaTeX sets it.
TEX_MATHS = {"log p(x)": r"$\log p(x)$", "I(n;z)": "$I(n;z)$", "log N": r"$\log N$", "S = ": "$S$ = ", "N = ": "$N$ = "}

# Characters that LaTeX reads as commands, or that pdflatex's default fonts lack, in text mode.
TEX_TEXT = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": "$<$", ">": "$>$",
            "±": r"$\pm$", "−": "$-$", "‖": r"$\|$", "†": r"$^\dagger$", "→": r"$\rightarrow$",
            "←": r"$\leftarrow$", "≤": r"$\leq$", "≥": r"$\geq$", "×": r"$\times$"}


def tex(text) -> str:
    """`text` as LaTeX typesets it literally."""
    return "".join(TEX_TEXT.get(char, char) for char in str(text))


def write_latex(rows: list[dict], varied: list[str], differences: list[Difference], sweep_dir: Path) -> None:
    lines = [f"% `vaebench report {tex(sweep_dir)}`: the tables of report.md for a paper (booktabs).",
             r"\documentclass{article}", r"\usepackage[margin=1.5cm]{geometry}", r"\usepackage{booktabs}",
             r"\begin{document}", "", *terms_table(rows, varied)]
    if differences:
        lines += ["", *differences_table(differences)]
    lines += ["", r"\end{document}"]
    (sweep_dir / "report.tex").write_text("\n".join(lines) + "\n")


def terms_table(rows: list[dict], varied: list[str]) -> list[str]:
    """One row per configuration, in the sweep's order: its headline terms, the mean over its seeds ± the
    SE over them (s.d. / √seeds), or a single run's value ± its own SE."""
    groups = configurations(rows, varied)
    names = configuration_names(groups)
    columns = [c for c in table_columns(rows, varied) if c in METRIC_COLUMNS]
    several = any(len(members) > 1 for members in groups.values())
    header = ["configuration", *(["runs"] if several else []), *(TEX_HEADERS.get(c, tex(c)) for c in columns)]
    body = []
    for config, members in groups.items():
        cells = [tex(names[config]), *([str(len(members))] if several else [])]
        for column in columns:
            cell = _math(configuration_cell(members, column))
            flagged = column == "val_mutual_info" and len(rows) > 1 and any(at_the_bound(row) for row in members)
            cells.append(cell + (r"$^\dagger$" if flagged else ""))
        body.append(cells)
    notes = [line for line in (likelihood_note(rows), bound_note(rows)) if line]
    caption = (r"Validation terms and test $\log p(x)$, nats per point. $\pm$ 1 SE: over seeds "
               r"(s.d./$\sqrt{\mathrm{seeds}}$) where a configuration has several runs; for a single run, of the "
               r"mean over the split's points (unpaired), or Monte-Carlo over the draws $z \sim q(z|x)$ for "
               r"$I(n;z)$ and $\mathrm{KL}(q(z)\,\|\,p(z))$. " + " ".join(_tex_note(note) for note in notes))
    return _table(header, body, caption, "tab:terms", "l" + "r" * (len(header) - 1))


def configuration_cell(members: list[dict], column: str) -> str:
    """'-116.14 ± 0.17': one run's value ± its SE, or several runs' mean ± the SE over them."""
    values = [row[column] for row in members if row.get(column) is not None]
    if not values:
        return ""
    if len(values) == 1:
        (row,) = [row for row in members if row.get(column) is not None]
        value = values[0]
        if column == "val_active_units" and float(value).is_integer():
            value = int(value)
        return measured_text(value, row.get(f"{column}_se"))
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return measured_text(mean, sd / math.sqrt(len(values)))


def differences_table(differences: list[Difference]) -> list[str]:
    """configuration − reference, term by term, ± the paired SE, and the t test's verdict."""
    reference = differences[0].reference
    marks = {"*": r"$^{*}$", "=": " ="}
    body = []
    for before, d in zip([None, *differences], differences):
        first = before is None or before.label != d.label
        body += [r"\addlinespace"] if first and before is not None else []
        body.append([tex(d.label) if first else "", TEX_TERMS.get(d.term, tex(d.term)),
                     f"${d.mean:+.2f} \\pm {d.se:.2f}$" + marks.get(d.test.mark, ""), tex(d.test.verdict()), tex(d.how)])
    caption = (f"Paired differences from {tex(reference)} on the same test points, nats per point: configuration "
               f"$-$ {tex(reference)} $\\pm$ 1 paired SE. Each is tested against 0 by a two-sided $t$ test with its "
               "SE's degrees of freedom (seeds $-$ 1 across seeds, points $-$ 1 over one seed's points); $^{*}$: "
               "$p < 0.05$. Higher $\\log p(x)$, ELBO and reconstruction are better; lower KL is less rate.")
    header = ["configuration", "term", "difference", "$t$ test", "paired over"]
    return _table(header, body, caption, "tab:paired", "llrll")


def _tex_note(note: str) -> str:
    """A note of the printed table (table.py) as a sentence of a LaTeX caption."""
    text = tex(note[0].upper() + note[1:])
    for plain, maths in TEX_MATHS.items():
        text = text.replace(plain, maths)
    return text + "."


def _math(text: str) -> str:
    """'-116.14 ± 0.17' -> '$-116.14 \\pm 0.17$': a measurement in math mode, where its minus is a minus."""
    if not text:
        return ""
    value, _, se = text.partition(" ± ")
    return f"${value} \\pm {se}$" if se else f"${value}$"


def _table(header: list[str], body: list[list[str] | str], caption: str, label: str, columns: str) -> list[str]:
    """A booktabs table; a line of `body` is a row's cells, or a command of its own (\\addlinespace)."""
    rows = [line if isinstance(line, str) else " & ".join(line) + r" \\" for line in body]
    return [r"\begin{table}[ht]", r"\centering", r"\footnotesize", r"\setlength{\tabcolsep}{4pt}",
            rf"\caption{{{caption}}}", rf"\label{{{label}}}", rf"\begin{{tabular}}{{{columns}}}", r"\toprule",
            " & ".join(header) + r" \\", r"\midrule", *rows, r"\bottomrule", r"\end{tabular}", r"\end{table}"]
