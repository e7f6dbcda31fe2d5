"""The tables of scripts/DISENTANGLEMENT.md: each disentanglement metric (and the rate, the validation
ELBO) of a finished sweep, by beta and objective, as mean ± s.d. over the seeds (the runs themselves
in brackets); then each beta's difference from the smallest beta of its objective, paired by seed (the
same seed: the same split, initial weights and batches), as the mean of the seeds' differences ± its
SE (sd / sqrt(seeds)), marked where it is within 2 SE of 0.

    python scripts/disentanglement_table.py outputs/multirun/DATE/TIME
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

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
            values = [float(r[block][term]) for r in records]
            digits = 1 if block == "val" else 2
            mean = statistics.fmean(values)
            spread = f" ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else ""
            runs = " (" + ", ".join(f"{v:.{digits}f}" for v in values) + ")" if len(values) > 1 else ""
            cells.append(f"{mean:.{digits}f}{spread}{runs}")
        print(f"| {objective} | {beta:g} | {len(records)} | " + " | ".join(cells) + " |")
    print(paired_table(groups))


def paired_table(groups: dict) -> str:
    lines = ["", "| objective | β − β₀ | seeds | " + " | ".join(COLUMNS) + " |", "|---|---|---:|" + "---:|" * len(COLUMNS)]
    for (objective, beta), records in sorted(groups.items()):
        base_beta = min(b for o, b in groups if o == objective)
        if beta == base_beta:
            continue
        base = {r["config"]["seed"]: r for r in groups[(objective, base_beta)]}
        pairs = [(r, base[r["config"]["seed"]]) for r in records if r["config"]["seed"] in base]
        cells = []
        for block, term in COLUMNS.values():
            differences = [float(r[block][term]) - float(b[block][term]) for r, b in pairs]
            mean, digits = statistics.fmean(differences), 2 if block == "val" else 3
            if len(differences) < 2:
                cells.append(f"{mean:+.{digits}f}")
                continue
            se = statistics.stdev(differences) / len(differences) ** 0.5
            cells.append(f"{mean:+.{digits}f} ± {se:.{digits}f}" + (" ~" if abs(mean) < 2 * se else ""))
        lines.append(f"| {objective} | {beta:g} − {base_beta:g} | {len(pairs)} | " + " | ".join(cells) + " |")
    lines.append("\n~: within 2 SE of 0, not told apart from noise.")
    return "\n".join(lines)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
