"""Runs that share the machine: one `vaebench train` alone, two started together, and a joblib sweep of
four runs with n_jobs = 1 and n_jobs = 2, each exactly as a user types it.

    python scripts/bench_parallel.py                        # all three parts, 3 rounds: about 10 minutes on a 2-core CPU
    python scripts/bench_parallel.py --parts alone,pair --rounds 5
    python scripts/bench_parallel.py --override trainer.threads=2   # every run with this setting too
    python scripts/bench_parallel.py --env OMP_WAIT_POLICY=PASSIVE   # every run with this variable set

Parts, each repeated in `--rounds` rounds (alone and pair alternate within a round, so that a machine
that slows down slows both):

- alone: one run's training rate, the mean of its epochs' samples/s after the first (which includes
  start-up costs), as the run itself prints it;
- pair: two runs started together; the rate of each over the epochs they both trained, their sum,
  and the sum over the alone rate of the same round (the target is >= 0.9);
- sweep: `vaebench train -m hydra/launcher=joblib hydra.launcher.n_jobs=N beta=1,2,3,4`, the wall time
  of the whole sweep for each N, and each N's time over N = 1's of the same round (target <= 1.1 for
  n_jobs = 2 on 2 cores).

Every figure is the mean over rounds with its standard error (the spread of the rounds / sqrt(rounds));
ratios are computed per round and averaged, so they are paired. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EPOCH_LINE = re.compile(r"epoch\s+(\d+)/\d+\s+step.*\(([\d,]+) samples/s\)")
# A run long enough that its epochs after the first show the steady rate, short in its final evaluation.
RUN = ["eval.iw_samples=0", "eval.surgery_samples=1"]


def vaebench(args: list[str], cwd: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vaebench.cli", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def epoch_rates(output: str) -> dict[int, float]:
    return {int(epoch): float(rate.replace(",", "")) for epoch, rate in EPOCH_LINE.findall(output)}


def finished(proc: subprocess.Popen) -> str:
    output, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"a run failed ({proc.returncode}):\n{output[-3000:]}")
    return output


def steady(rates: dict[int, float], epochs: set[int]) -> float:
    return statistics.fmean(rates[e] for e in sorted(epochs) if e > 1)


def mean_se(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:,.3f}"
    return f"{statistics.fmean(values):,.3f} ± {statistics.stdev(values) / len(values) ** 0.5:,.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="alone,pair,sweep")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8, help="epochs of each alone/pair run")
    parser.add_argument("--sweep-epochs", type=int, default=4, help="epochs of each run of the sweep")
    parser.add_argument("--override", action="append", default=[], help="a setting for every run, e.g. trainer.threads=2")
    parser.add_argument("--env", action="append", default=[], help="VAR=VALUE for every run")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.update(item.split("=", 1) for item in args.env)
    overrides = [*RUN, *args.override]
    print(f"{os.cpu_count()} CPUs, {len(os.sched_getaffinity(0))} usable; overrides {overrides}; "
          f"environment {args.env or 'as is'}; {args.rounds} rounds", flush=True)

    alone, pair_each, pair_sum, pair_ratio = [], [], [], []
    sweep_time: dict[int, list[float]] = {1: [], 2: []}
    sweep_ratio: list[float] = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for r in range(args.rounds):
            run = [*overrides, f"trainer.epochs={args.epochs}"]
            if "alone" in parts or "pair" in parts:
                rates = epoch_rates(finished(vaebench(["train", *run], root, env)))
                alone.append(steady(rates, set(rates)))
            if "pair" in parts:
                a, b = vaebench(["train", *run], root, env), vaebench(["train", *run], root, env)
                ra, rb = epoch_rates(finished(a)), epoch_rates(finished(b))
                both = set(ra) & set(rb)  # both ran every epoch; the ends overlap less, the middle fully
                each = [steady(ra, both), steady(rb, both)]
                pair_each += each
                pair_sum.append(sum(each))
                pair_ratio.append(sum(each) / alone[-1])
            if "sweep" in parts:
                for n_jobs in (1, 2):
                    started = time.perf_counter()
                    finished(vaebench(["train", "-m", "hydra/launcher=joblib", f"hydra.launcher.n_jobs={n_jobs}",
                                       "beta=1,2,3,4", *overrides, f"trainer.epochs={args.sweep_epochs}"], root, env))
                    sweep_time[n_jobs].append(time.perf_counter() - started)
                sweep_ratio.append(sweep_time[2][-1] / sweep_time[1][-1])
            print(f"round {r + 1}: alone {alone[-1] if alone else '-'}; pair {pair_each[-2:] or '-'}; "
                  f"sweep {[round(t[-1], 1) for t in sweep_time.values() if t] or '-'}", flush=True)

    print()
    if alone:
        print(f"one run alone:        {mean_se(alone)} samples/s")
    if pair_sum:
        print(f"two runs at once:     {mean_se(pair_each)} samples/s each, {mean_se(pair_sum)} together")
        print(f"  together / alone:   {mean_se(pair_ratio)}   (target >= 0.9)")
    if sweep_ratio:
        print(f"sweep of 4, n_jobs=1: {mean_se(sweep_time[1])} s")
        print(f"sweep of 4, n_jobs=2: {mean_se(sweep_time[2])} s")
        print(f"  n_jobs=2 / n_jobs=1: {mean_se(sweep_ratio)}   (target <= 1.1)")


if __name__ == "__main__":
    main()
