"""The tables of scripts/EB_SPECTRUM.md and scripts/INFERENCE_GAPS.md from finished runs along the
empirical-Bayes axis (any folders holding them: a sweep, a single run beside it).

    python scripts/eb_spectrum_table.py outputs/multirun/DATE/TIME outputs/aggregate_seed0

Per place: when each seed's run stopped, the test terms as mean ± sd over seeds, and paired
differences on the test points (test_points.npz) from the standard prior and from the place with the
best test log p(x). A difference over several seeds is the mean of the seeds' paired differences with
the SE of that mean (sd / sqrt(seeds)), which counts training's noise; over one seed it is paired over
that seed's points only (the points' noise, not training's), and the table says which. Each is tested
against 0 as `vaebench report` tests it (report/significance.py: two-sided t, seeds − 1 or points − 1
degrees of freedom; * where p < 0.05), with the seeds a difference of its size would need, and the
seeds left out of it named. The inference
gaps come from each run's latest `vaebench eval RUN eval.max_points=100` where it has one (the final
evaluation's otherwise).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from vaebench.report.paired import compare, kept_points
from vaebench.report.prior_axis import place
from vaebench.report.runs import collect_runs, table_row
from vaebench.report.significance import seeds_text

TERMS = {"test_log_likelihood": "test log p(x)", "test_elbo": "test ELBO", "elbo_gap": "train − test ELBO",
         "train_kl": "train KL", "train_mutual_info": "train I(n;z)", "train_marginal_kl": "train KL(q(z) ‖ p(z))",
         "test_marginal_kl": "test KL(q(z) ‖ p(z))", "test_active_units": "active units"}
GAPS = {"test_posterior_kl_of_gap_points": "posterior KL", "test_amortization_gap": "amortization gap",
        "test_approximation_gap": "approximation gap"}


def runs_by_place(folders: list[Path]) -> dict:
    """{(x, place name): {seed: (row, folder)}}, in the axis's order."""
    found = {}
    for folder in folders:
        runs, _ = collect_runs(folder)
        for run in runs:
            row = table_row(run)
            row["elbo_gap"] = row["train_elbo"] - row["test_elbo"]
            row.update({key: run.metrics.get(key) for key in ("best_epoch", "epochs", "stopped")})
            row.update(later_gaps(folder / run.folder))
            where = place(row)
            if where is not None:
                found.setdefault((where.x, where.name), {})[row.get("seed")] = (row, folder / run.folder)
    return dict(sorted(found.items()))


def later_gaps(run_dir: Path) -> dict:
    """The inference gaps of the run's latest `vaebench eval` that measured them on the test split (its
    best checkpoint), as `test_<term>` like the final evaluation's; {} where there is none."""
    evals = sorted(run_dir.glob("evals/test_best_*.json"), key=lambda path: path.stat().st_mtime)
    for path in reversed(evals):
        terms = json.loads(path.read_text()).get("test", {})
        if "amortization_gap" in terms:
            return {f"test_{term}": value for term, value in terms.items()
                    if "gap" in term and not term.startswith("elbo")}
    return {}


def spread(values: list[float], digits: int = 2) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


def paired(mine: dict, reference: dict, term: str = "log_likelihood") -> str:
    """mine − reference in `term` on the test points, over the seeds both have on the same points."""
    test, how, left_out = compare(points_of(mine), points_of(reference), term, ("this place", "the other"))
    if test is None:
        return "not paired: " + "; ".join(left_out)
    needs = f"; seeds needed: {seeds_text(test)}" if test.unit == "seed" and not test.real else ""
    without = f"; without {'; '.join(left_out)}" if left_out else ""
    return f"{test.text()}, {how.split(',')[0]}: {test.verdict()}{needs}{without}"


def points_of(seeds: dict) -> dict:
    """{seed: SeedPoints or None} of a place's runs."""
    return {seed: kept_points(folder, row) for seed, (row, folder) in seeds.items()}


def main(folders: list[Path]) -> None:
    places = runs_by_place(folders)
    print("| prior | K | seeds | best epoch / stopped at | " + " | ".join(TERMS.values()) + " |")
    print("|---|---:|---:|---|" + "---:|" * len(TERMS))
    for (_, name), seeds in places.items():
        rows = [row for row, _ in seeds.values()]
        where = place(rows[0])
        epochs = ", ".join(f"{row['best_epoch']}/{row['epochs']}" for row in rows)
        cells = [spread([float(row[term]) for row in rows], 1 if term == "test_active_units" else 2) for term in TERMS]
        print(f"| {name} | {where.k} | {len(rows)} | {epochs} | " + " | ".join(cells) + " |")

    def label(key: tuple) -> str:
        seeds = places[key]
        return f"{key[1]}, K = {place(next(iter(seeds.values()))[0]).k}" if place(next(iter(seeds.values()))[0]).k else key[1]

    best = max(places, key=lambda key: statistics.fmean(row["test_log_likelihood"] for row, _ in places[key].values()))
    standard = next(iter(places))
    print("\nPaired test log p(x) differences (nats per point, ± SE; * p < 0.05, two-sided t):\n")
    print(f"| prior | K | − {label(standard)} | − {label(best)} (best mean) |")
    print("|---|---:|---|---|")
    for key, seeds in places.items():
        print(f"| {key[1]} | {place(next(iter(seeds.values()))[0]).k} | "
              f"{paired(seeds, places[standard]) if key != standard else ''} | "
              f"{paired(seeds, places[best]) if key != best else ''} |")

    if any(GAPS.keys() <= row.keys() for seeds in places.values() for row, _ in seeds.values()):
        print("\nInference gaps on the first test points (nats per point; mean ± sd over seeds, each seed's "
              "own ± SE over its points in brackets):\n")
        print("| prior | K | points | " + " | ".join(GAPS.values()) + " | most L-BFGS iterations |")
        print("|---|---:|---:|" + "---:|" * len(GAPS) + "---:|")
        for (_, name), seeds in places.items():
            rows = [row for row, _ in seeds.values() if GAPS.keys() <= row.keys()]
            if not rows:
                continue
            cells = [spread([row[term] for row in rows]) + " (" + ", ".join(
                f"{row[term]:.2f} ± {row[term + '_se']:.2f}" for row in rows) + ")" for term in GAPS]
            steps = ", ".join(str(row["test_inference_gap_steps"]) for row in rows)
            print(f"| {name} | {place(rows[0]).k} | {rows[0]['test_inference_gap_points']} | " + " | ".join(cells)
                  + f" | {steps} |")

if __name__ == "__main__":
    main([Path(arg) for arg in sys.argv[1:]])
