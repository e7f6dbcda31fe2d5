"""The table of scripts/DISENTANGLEMENT.md: each disentanglement metric (and the rate, the validation
ELBO) of a finished sweep, by beta and objective, as mean ± s.d. over the seeds (the runs themselves
in brackets).

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


if __name__ == "__main__":
    main(Path(sys.argv[1]))
