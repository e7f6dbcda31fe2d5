"""ELBO surgery speed: the exact aggregate posterior q(z) = 1/N sum_n q(z|x_n) of a whole split, stage
by stage, each against the machine's matrix-product rate measured in the same run.

    python scripts/bench_diagnostics.py                          # N = 10,000, latent 40, about 1 minute on CPU
    python scripts/bench_diagnostics.py --points 50000 --repeats 3   # full MNIST's training split
    python scripts/bench_diagnostics.py --points 50000 --sharp       # posteriors as sharp as a trained model's
    python scripts/bench_diagnostics.py --device cuda --points 60000

The stages are elbo_surgery's, as a final evaluation runs them, on synthetic posteriors: `--draws` draws
(eval.surgery_samples) of min(N, `--surgery-points`) points (eval.surgery_points), each scored under
the exact aggregate of all N (log q(z): one matrix product per tile of components, 2 (2D + 1) FLOP per
(sample, component) pair, then a logsumexp); the aggregate's 1-D marginals on TC's share of those
samples (surgery.tc_sample; D terms per pair, made elementwise, exp-bound rather than matmul-bound);
and the whole elbo_surgery. A stage's expansion runs in float32 or float64 as vaebench chooses for
those posteriors (surgery.expansion_dtypes); `--sharp` draws posteriors whose rounding estimate sends
them to float64, as a trained full-MNIST model's do. GFLOP/s are set against square 2048 x 2048
products of the same dtype, timed between the repeats; repeats alternate, the best of each counts,
and the spread (min-max) is printed beside it.
"""

from __future__ import annotations

import argparse

import torch

from benchutil import describe, matmul_gflops, pick_device, table, timed


def spread(values: list[float]) -> str:
    return f"{min(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    parser.add_argument("--points", type=int, default=10_000, help="N, the split's size (default: 10,000)")
    parser.add_argument("--latent", type=int, default=40, help="latent dimensions (default: 40)")
    parser.add_argument("--repeats", type=int, default=5, help="alternating repeats; the best counts (default: 5)")
    parser.add_argument("--draws", type=int, default=16, help="draws per point, eval.surgery_samples (default: 16)")
    parser.add_argument("--surgery-points", type=int, default=20_000,
                        help="the subset's size on a larger split, eval.surgery_points (default: 20,000)")
    parser.add_argument("--sharp", action="store_true",
                        help="posterior scales 0.02-0.12 (default 0.1-0.6): the float64 expansion")
    args = parser.parse_args()
    device = pick_device(args.device)

    from vaebench.metrics.surgery import (aggregate_log_density, aggregate_marginal_log_density, elbo_surgery,
                                          expansion_dtypes, tc_sample)

    n, d = args.points, args.latent
    torch.manual_seed(0)
    loc = torch.randn(n, d, device=device)
    low, high = (0.02, 0.12) if args.sharp else (0.1, 0.6)
    scale = low + (high - low) * torch.rand(n, d, device=device)
    standard_normal = torch.distributions.Normal(0.0, 1.0)

    points = torch.randperm(n, device=device)[:args.surgery_points] if n > args.surgery_points else None
    own_loc, own_scale = (loc, scale) if points is None else (loc[points], scale[points])
    draws = own_loc + own_scale * torch.randn(args.draws, *own_loc.shape, device=device)
    log_p_draws = standard_normal.log_prob(draws).sum(-1)
    tc_draws, tc_points = tc_sample(args.draws, len(own_loc), n, d)
    z_tc = draws[:tc_draws] if tc_points is None else draws[:tc_draws, tc_points.to(device)]
    rows, tc_rows = draws[..., 0].numel(), z_tc[..., 0].numel()
    joint_dtype, marginal_dtype = expansion_dtypes(loc, scale)

    stages = {
        "log q(z)": lambda: aggregate_log_density(draws.reshape(-1, d), loc, scale),
        "TC marginals": lambda: aggregate_marginal_log_density(z_tc.reshape(-1, d), loc, scale),
        "elbo_surgery": lambda: elbo_surgery(loc, scale, draws, log_p_draws, standard_normal.log_prob, points=points),
    }
    print(f"Device: {describe(device)}; N = {n:,} points, latent {d}; {args.draws} draws of {len(own_loc):,} "
          f"points; marginals at {tc_rows:,} samples; {args.repeats} repeats.", flush=True)
    stages["elbo_surgery"]()  # warm-up
    seconds = {name: [] for name in stages}
    rate = {torch.float32: [], torch.float64: []}
    for _ in range(args.repeats):
        for name, stage in stages.items():
            seconds[name].append(timed(stage, device))
        for dtype in rate:
            rate[dtype].append(matmul_gflops(device, seconds=0.5, dtype=dtype))
    best_rate = {dtype: max(values) for dtype, values in rate.items()}

    joint_gflop = 2 * rows * n * (2 * d + 1) / 1e9
    joint_rate = joint_gflop / min(seconds["log q(z)"])
    marginal_terms = tc_rows * n * d / 1e9
    marginal_gflop = 4 * marginal_terms  # two multiply-adds per term, the exp and the reduction not counted
    marginal_rate = marginal_gflop / min(seconds["TC marginals"])
    name_of = {torch.float32: "float32", torch.float64: "float64"}
    rows_out = [
        [f"surgery's log q(z): {rows:,} samples x {n:,} components", name_of[joint_dtype],
         spread(seconds["log q(z)"]), f"{joint_gflop:.0f}", f"{joint_rate:.1f}",
         f"{100 * joint_rate / best_rate[torch.float32]:.0f}%", f"{100 * joint_rate / best_rate[joint_dtype]:.0f}%"],
        [f"TC's 1-D marginals: {tc_rows:,} samples x {n:,} x {d} ({marginal_terms / min(seconds['TC marginals']):.2f} G terms/s)",
         name_of[marginal_dtype], spread(seconds["TC marginals"]), f"{marginal_gflop:.0f}", f"{marginal_rate:.1f}",
         f"{100 * marginal_rate / best_rate[torch.float32]:.0f}%", f"{100 * marginal_rate / best_rate[marginal_dtype]:.0f}%"],
        ["elbo_surgery, all of it", "", spread(seconds["elbo_surgery"]), "", "", "", ""],
    ]
    print()
    print(table(["stage", "expansion", "s, best (min-max)", "GFLOP", "GFLOP/s", "of float32 matmul",
                 "of its dtype's matmul"], rows_out))
    print(f"\nmatmul, square 2048: float32 {best_rate[torch.float32]:.1f} GFLOP/s "
          f"({min(rate[torch.float32]):.1f}-{max(rate[torch.float32]):.1f}), float64 {best_rate[torch.float64]:.1f} "
          f"({min(rate[torch.float64]):.1f}-{max(rate[torch.float64]):.1f}); best of the repeats, spread beside it.")


if __name__ == "__main__":
    main()
