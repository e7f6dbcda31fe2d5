"""ELBO surgery speed: the exact aggregate posterior q(z) = 1/N sum_n q(z|x_n) of a whole split.

    python scripts/bench_diagnostics.py                    # N = 10,000, latent 40, about 1 minute on CPU
    python scripts/bench_diagnostics.py --points 50000 --repeats 3   # full MNIST's training split: about 3 minutes
    python scripts/bench_diagnostics.py --device cuda --points 60000

Times vaebench.metrics.surgery.aggregate_log_density (log q(z_n) at every sample: N x N pairwise
log-densities, each block one matrix product and an in-place logsumexp) and the whole
elbo_surgery as a final evaluation runs it: `--draws` draws (eval.surgery_samples) of
min(N, `--surgery-points`) points (eval.surgery_points), each against the exact aggregate of all N,
plus the aggregate's 1-D marginals on TC's share of those samples (surgery.tc_sample), on synthetic
posteriors. The pairwise evaluation's GFLOP/s (its matrix products,
counted by torch.utils.flop_counter) is set against two plain matrix products timed in the same
run: a square 2048 x 2048 one, the device's rate, and the pairwise product's own shape in one piece.
Repeats alternate all of them; the best of each counts.
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchutil import describe, matmul_gflops, pick_device, table, timed


def spread(values: list[float]) -> str:
    return f"{min(values):.3f}-{max(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    parser.add_argument("--points", type=int, default=10_000, help="N, the split's size (default: 10,000)")
    parser.add_argument("--latent", type=int, default=40, help="latent dimensions (default: 40)")
    parser.add_argument("--repeats", type=int, default=8, help="alternating repeats; the best counts (default: 8)")
    parser.add_argument("--draws", type=int, default=16, help="draws per point, eval.surgery_samples (default: 16)")
    parser.add_argument("--surgery-points", type=int, default=20_000,
                        help="the subset's size on a larger split, eval.surgery_points (default: 20,000)")
    args = parser.parse_args()
    device = pick_device(args.device)

    from vaebench.metrics.surgery import aggregate_log_density, elbo_surgery, tc_sample

    n, d = args.points, args.latent
    torch.manual_seed(0)
    loc = torch.randn(n, d, device=device)
    scale = 0.1 + 0.5 * torch.rand(n, d, device=device)
    z = loc + scale * torch.randn_like(loc)
    standard_normal = torch.distributions.Normal(0.0, 1.0)

    points = torch.randperm(n, device=device)[:args.surgery_points] if n > args.surgery_points else None
    own_loc, own_scale = (loc, scale) if points is None else (loc[points], scale[points])
    draws = own_loc + own_scale * torch.randn(args.draws, *own_loc.shape, device=device)
    log_p_draws = standard_normal.log_prob(draws).sum(-1)
    tc_draws, tc_points = tc_sample(args.draws, len(own_loc), n, d)
    tc_rows = tc_draws * (len(own_loc) if tc_points is None else len(tc_points))

    def surgery():
        elbo_surgery(loc, scale, draws, log_p_draws, standard_normal.log_prob, points=points)

    with FlopCounterMode(display=False) as counter:
        aggregate_log_density(z, loc, scale)
    flops = counter.get_total_flops()
    features, weights = torch.randn(n, 2 * d + 1, device=device), torch.randn(2 * d + 1, n, device=device)
    print(f"Device: {describe(device)}; N = {n:,} points, latent {d}; {args.repeats} repeats.", flush=True)
    surgery()  # warm-up
    best = {"pairwise": float("inf"), "surgery": float("inf"), "same_shape": float("inf"), "matmul": 0.0}
    seconds = {"pairwise": [], "surgery": []}
    for _ in range(args.repeats):
        seconds["pairwise"].append(timed(lambda: aggregate_log_density(z, loc, scale), device))
        seconds["surgery"].append(timed(surgery, device))
        best["pairwise"], best["surgery"] = min(seconds["pairwise"]), min(seconds["surgery"])
        best["same_shape"] = min(best["same_shape"], timed(lambda: features @ weights, device))
        best["matmul"] = max(best["matmul"], matmul_gflops(device, seconds=0.5))

    pairwise_gflops = flops / best["pairwise"] / 1e9
    same_shape_gflops = 2 * n * n * (2 * d + 1) / best["same_shape"] / 1e9
    rows = [
        ["aggregate_log_density (log q(z), N x N)", f"{best['pairwise']:.3f} ({spread(seconds['pairwise'])})", f"{n / best['pairwise']:,.0f}",
         f"{flops / 1e9:.1f}", f"{pairwise_gflops:.1f}", f"{100 * pairwise_gflops / best['matmul']:.0f}%",
         f"{100 * pairwise_gflops / same_shape_gflops:.0f}%"],
        [f"elbo_surgery: {args.draws} draws of {len(own_loc):,} points, marginals at {tc_rows:,}", f"{best['surgery']:.3f} ({spread(seconds['surgery'])})",
         f"{n / best['surgery']:,.0f}", "", "", "", ""],
    ]
    print()
    print(table(["what", "s, best (min-max)", "points/s", "GFLOP", "GFLOP/s", "of matmul", "of same-shape matmul"], rows))
    print(f"\nmatmul: {best['matmul']:.1f} GFLOP/s (2048 x 2048 float32); same-shape matmul: {same_shape_gflops:.1f} "
          f"GFLOP/s ({n:,} x {2 * d + 1}) @ ({2 * d + 1} x {n:,}) in one piece, which writes all N x N results "
          "to memory. Best of the repeats.")


if __name__ == "__main__":
    main()
