"""The ELBO surgery's peak memory on a CPU: what a whole split's surgery adds to a process's resident set.

    python scripts/bench_surgery_memory.py                          # N = 10,000 and 50,000, R = 4
    PYTHONPATH=OLD_TREE python scripts/bench_surgery_memory.py      # another version of vaebench

Runs vaebench.metrics.diagnostics.split_diagnostics, as a final evaluation does (the aggregate q(z) at R draws
per point, N x N pairwise, and its 1-D marginals on TC_POINTS samples), for an untrained MLP VAE on N
synthetic images, each size in a fresh process, and prints the peak resident memory above the process's start (ru_maxrss) and the seconds
taken. The surgery itself needs tens of MB; more is heap fragmentation from freeing and reallocating
its blocks of log-densities (a 50,000-point run's final evaluation was killed at 23 GB before the
blocks reused one buffer).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from benchutil import table


def measure(points: int, draws: int) -> dict:
    """In this process: the surgery of a split of `points` synthetic images under an untrained MLP VAE
    (latent 40, hidden 300, the standard prior), `draws` draws per point, as a final evaluation runs it."""
    import torch

    from vaebench.metrics.diagnostics import split_diagnostics
    from vaebench.models import MLPVAE
    from vaebench.priors import StandardPrior

    torch.manual_seed(0)
    model = MLPVAE((1, 28, 28), latent_dim=40, hidden_dim=300)
    model.prior = StandardPrior(40)
    x = torch.rand(points, 1, 28, 28).bernoulli()
    start_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    began = time.perf_counter()
    split_diagnostics(model, x, batch_size=1000, iw_samples=0, surgery_samples=draws)
    seconds = time.perf_counter() - began
    return {"peak_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start_kb) / 1024, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", default="10000,50000", help="split sizes N (default: 10000,50000)")
    parser.add_argument("--draws", type=int, default=4, help="draws per point, eval.surgery_samples (default: 4)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child process: measure one size
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one, args.draws)))
        return
    import torch

    print(f"CPU, {torch.get_num_threads()} threads (torch {torch.__version__}); latent 40, R = {args.draws}; "
          "each size in a fresh process.", flush=True)
    rows = []
    for n in (int(v) for v in args.points.split(",")):
        child = subprocess.run([sys.executable, __file__, "--one", str(n), "--draws", str(args.draws)],
                               capture_output=True, text=True, check=True)
        result = json.loads(child.stdout.strip().splitlines()[-1])
        rows.append([f"{n:,}", f"{result['peak_mb']:,.0f}", f"{result['seconds']:.1f}"])
    print(table(["N", "peak memory above start, MB", "seconds"], rows))


if __name__ == "__main__":
    main()
