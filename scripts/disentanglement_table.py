"""The tables of scripts/DISENTANGLEMENT.md: each disentanglement metric (and the rate, the validation
ELBO) of a finished sweep, by beta and objective, as mean ± s.d. over the seeds (the runs themselves
in brackets); then each beta's difference from the smallest beta of its objective, paired by seed (the
same seed: the same split, initial weights and batches), as the mean of the seeds' differences ± its
SE (sd / sqrt(seeds)), tested against 0 as `vaebench report` tests it (report/significance.py: a
two-sided t test with seeds − 1 degrees of freedom, * where p < 0.05), with the seeds a difference not
told apart would need at its size and spread; a seed that only one beta has is named, not dropped.

    python scripts/disentanglement_table.py outputs/multirun/DATE/TIME
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from vaebench.report.significance import TTest, legend, seeds_text

COLUMNS = {"MIG": ("disentanglement", "mig"), "FactorVAE": ("disentanglement", "factor_vae_score"),
           "DCI-D": ("disentanglement", "dci_disentanglement"), "DCI-C": ("disentanglement", "dci_completeness"),
           "DCI-I": ("disentanglement", "dci_informativeness"), "rate (KL)": ("val", "kl"),
           "val ELBO": ("val", "elbo"), "active units": ("val", "active_units")}


def main(sweep_dir: Path) -> None:
    groups = defaultdict(list)
    for path in sorted(sweep_dir.rglob("metrics.json")):
        record = json.loads(path.read_text())
        if record.get("status") != "completed":
            continue
        config = record["config"]
        groups[(config["choices"].get("objective", "elbo"), float(config["beta"]))].append(record)
    print("| objective | β | seeds | " + " | ".join(COLUMNS) + " |")
    print("|---|---:|---:|" + "---:|" * len(COLUMNS))
    for (objective, beta), records in sorted(groups.items()):
        cells = []
        for block, term in COLUMNS.values():
            values = [v for r in records if (v := value(r, block, term)) is not None]
            if not values:
                cells.append("-")
                continue
            digits = 1 if block == "val" else 2
            mean = statistics.fmean(values)
            spread = f" ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else ""
            runs = " (" + ", ".join(f"{v:.{digits}f}" for v in values) + ")" if len(values) > 1 else ""
            cells.append(f"{mean:.{digits}f}{spread}{runs}")
        print(f"| {objective} | {beta:g} | {len(records)} | " + " | ".join(cells) + " |")
    print(paired_table(groups))


def value(record: dict, block: str, term: str) -> float | None:
    found = (record.get(block) or {}).get(term)
    return float(found) if found is not None else None


def paired_table(groups: dict) -> str:
    lines = ["", "| objective | β − β₀ | seeds | " + " | ".join(COLUMNS) + " |", "|---|---|---:|" + "---:|" * len(COLUMNS)]
    tests, needs, left_out = [], [], []
    for (objective, beta), records in sorted(groups.items()):
        base_beta = min(b for o, b in groups if o == objective)
        if beta == base_beta:
            continue
        base = {r["config"]["seed"]: r for r in groups[(objective, base_beta)]}
        mine = {r["config"]["seed"]: r for r in records}
        pairs = [(mine[seed], base[seed]) for seed in mine if seed in base]
        name = f"{objective} β {beta:g} − {base_beta:g}"
        left_out += [f"{name}: seed {seed} has no run at β {base_beta:g}" for seed in mine if seed not in base]
        left_out += [f"{name}: seed {seed} has no run at β {beta:g}" for seed in base if seed not in mine]
        cells = []
        for column, (block, term) in COLUMNS.items():
            differences = []
            for r, b in pairs:
                lacking = [f"β {float(record['config']['beta']):g}" for record in (r, b) if value(record, block, term) is None]
                if lacking:
                    left_out.append(f"{name} {column}: seed {r['config']['seed']}'s run at {' and '.join(lacking)} "
                                    "did not record it")
                else:
                    differences.append(value(r, block, term) - value(b, block, term))
            if not differences:
                cells.append("-")
                continue
            test = TTest.of(differences, "seed")
            digits = 2 if block == "val" else 3
            cells.append(test.text(digits) if len(differences) > 1 else f"{test.mean:+.{digits}f}")
            tests.append(test)
            if test.testable and not test.real:
                needs.append(f"{name} {column} {seeds_text(test)}")
        lines.append(f"| {objective} | {beta:g} − {base_beta:g} | {len(pairs)} | " + " | ".join(cells) + " |")
    lines.append(f"\n{legend(tests)}.")
    if needs:
        lines.append("Seeds a difference of that size would need to pass, at its seeds' spread: " + "; ".join(needs) + ".")
    if left_out:
        lines.append("Left out of the pairs: " + "; ".join(left_out) + ".")
    return "\n".join(lines)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
