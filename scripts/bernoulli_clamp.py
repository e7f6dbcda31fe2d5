"""What the VampPrior code's clamped Bernoulli does to a trained run's test log p(x) (docs/fidelity.md).

    python scripts/bernoulli_clamp.py RUN_DIR [RUN_DIR ...] [--samples 5000] [--checkpoint best]

The official code scores a pixel with its Bernoulli mean clamped to [1e-5, 1 - 1e-5]
(`utils/distributions.py`, `log_Bernoulli`); vaebench scores it from the logits, exactly. For each run,
the importance-weighted log p(x) of every test point from the same S draws under both likelihoods
(so the difference is paired draw by draw), then the mean difference over points with its standard
error; over several runs (seeds), the mean of the runs' differences with its SE and t. This measures
the evaluation's side of the departure only: a run trained with the clamp would also follow another
trajectory (a pixel beyond the clamp passes no gradient).
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

from vaebench.datasets.arrays import EVAL_SEED
from vaebench.metrics.evaluation import fixed_randomness
from vaebench.run.saved_run import checked_device, read_checkpoint, rebuild

CLAMP = 1e-5  # the official code's min_epsilon
PAIRS_PER_CALL = 2000


def log_bernoulli_clamped(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x) per draw with the mean clamped to [CLAMP, 1 - CLAMP], summed over the pixels."""
    p = torch.sigmoid(logits).clamp(CLAMP, 1 - CLAMP)
    return (x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(-1)


def log_bernoulli_exact(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(-1)


@torch.no_grad()
def paired_log_px(model, x: torch.Tensor, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(exact, clamped) importance-weighted log p(x) per point from the same `samples` draws."""
    p_z = model.prior()
    exact, clamped = [], []
    for point in x.split(1):
        log_w = {"exact": [], "clamped": []}
        for start in range(0, samples, PAIRS_PER_CALL):  # one point a call: its draws are the pairs
            s = min(PAIRS_PER_CALL, samples - start)
            latents, layers = model.latents(point, p_z, s)
            logits = model.decoder_output(latents).view(s, *point.shape[1:])
            log_prior_ratio = sum(p.log_prob(z) - q.log_prob(z) for q, p, z in layers.values())
            repeated = point.expand(s, *point.shape[1:])
            log_w["exact"].append(log_bernoulli_exact(logits, repeated) + log_prior_ratio)
            log_w["clamped"].append(log_bernoulli_clamped(logits, repeated) + log_prior_ratio)
        exact.append(torch.logsumexp(torch.cat(log_w["exact"]), 0) - math.log(samples))
        clamped.append(torch.logsumexp(torch.cat(log_w["clamped"]), 0) - math.log(samples))
    return torch.stack(exact), torch.stack(clamped)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--samples", type=int, default=5000, help="importance samples per point (default: 5000)")
    parser.add_argument("--checkpoint", default="best", choices=["best", "last"])
    parser.add_argument("--points", type=int, default=None, help="the first N test points only (default: all)")
    args = parser.parse_args()
    differences = []
    print(f"{'run':40s} {'points':>6s} {'log p(x), exact':>16s} {'clamped - exact':>20s}")
    for run in args.runs:
        _, state, cfg = read_checkpoint(run, args.checkpoint)
        device = checked_device(cfg)
        data, model = rebuild(cfg, state, device)
        model.eval()
        x = data.scored("test")[: args.points]
        with fixed_randomness(device, EVAL_SEED):
            exact, clamped = paired_log_px(model, x.to(device), args.samples)
        d = (clamped - exact).double()
        differences.append(float(d.mean()))
        se = float(d.std() / math.sqrt(len(d)))
        print(f"{str(run)[-40:]:40s} {len(d):6d} {float(exact.mean()):16.3f} {differences[-1]:+12.4f} ± {se:.4f}", flush=True)
    if len(differences) > 1:
        mean, sd = statistics.fmean(differences), statistics.stdev(differences)
        se = sd / math.sqrt(len(differences))
        t = mean / se if se > 0 else float("inf")
        print(f"\nover {len(differences)} runs: clamped - exact = {mean:+.4f} ± {se:.4f} nats (SE), "
              f"t = {t:.1f} with {len(differences) - 1} df")


if __name__ == "__main__":
    main()
