"""A/B of the ELBO surgery's speed between two versions of vaebench, robust to a busy machine.

    git archive 4ea1218 vaebench conf | tar -x -C /tmp/before
    git archive HEAD vaebench conf | tar -x -C /tmp/after
    OMP_NUM_THREADS=1 python scripts/ab_surgery.py /tmp/before /tmp/after --pairs 8

Each version runs in its own process, the two alternating pair by pair, on the same synthetic
posteriors as scripts/bench_diagnostics.py (N = 4,000 by default, latent 40, one draw per point).
Each process times `aggregate_log_density` and `elbo_surgery` by CPU time (time.process_time), the
best of its repeats: with one thread, other jobs on the machine delay a process but barely change the
CPU time it needs, so the pairs compare the code rather than the moment. Prints every pair and the
median ratio after / before with the spread of the pairs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import inspect, json, sys, time, torch
from vaebench.metrics.surgery import aggregate_log_density, elbo_surgery
n, d, repeats = int(sys.argv[1]), 40, int(sys.argv[2])
torch.manual_seed(0)
loc = torch.randn(n, d)
scale = 0.1 + 0.5 * torch.rand(n, d)
z = loc + scale * torch.randn_like(loc)
standard_normal = torch.distributions.Normal(0.0, 1.0)
log_p_z = standard_normal.log_prob(z)
def cpu(fn):
    started = time.process_time(); fn(); return time.process_time() - started
# Versions before 42e660d took the prior's marginals as a tensor at every sample, later ones as a function.
marginals = log_p_z if "log_p_z_dims" in inspect.signature(elbo_surgery).parameters else standard_normal.log_prob
elbo_surgery(loc, scale, z, log_p_z.sum(-1), marginals)  # warm-up
best = {"aggregate": min(cpu(lambda: aggregate_log_density(z, loc, scale)) for _ in range(repeats)),
        "surgery": min(cpu(lambda: elbo_surgery(loc, scale, z, log_p_z.sum(-1), marginals)) for _ in range(repeats))}
print(json.dumps(best))
"""


def run(folder: str, points: int, repeats: int) -> dict:
    env = {**os.environ, "PYTHONPATH": folder, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    out = subprocess.run([sys.executable, "-c", CHILD, str(points), str(repeats)], env=env, cwd=folder,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", help="a folder holding one version's vaebench/ (e.g. from git archive)")
    parser.add_argument("after", help="the other version's folder")
    parser.add_argument("--pairs", type=int, default=8, help="alternating pairs of processes (default: 8)")
    parser.add_argument("--points", type=int, default=4000, help="N (default: 4,000)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per process; the best counts (default: 3)")
    args = parser.parse_args()
    ratios = {"aggregate": [], "surgery": []}
    print("pair  before: aggregate, surgery (CPU s)   after: aggregate, surgery   after / before")
    for pair in range(args.pairs):
        first, second = (args.before, args.after) if pair % 2 == 0 else (args.after, args.before)
        results = {first: run(first, args.points, args.repeats), second: run(second, args.points, args.repeats)}
        before, after = results[args.before], results[args.after]
        for key in ratios:
            ratios[key].append(after[key] / before[key])
        print(f"{pair + 1:>4}  {before['aggregate']:.3f}, {before['surgery']:.3f}"
              f"{'':>22}{after['aggregate']:.3f}, {after['surgery']:.3f}"
              f"{'':>10}{ratios['aggregate'][-1]:.3f}, {ratios['surgery'][-1]:.3f}", flush=True)
    for key, values in ratios.items():
        print(f"{key}: after / before median {statistics.median(values):.3f}, "
              f"pairs {min(values):.3f}-{max(values):.3f}")


if __name__ == "__main__":
    main()
