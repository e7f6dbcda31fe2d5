"""Evaluation speed: the importance-weighted log-likelihood, S = 5000 samples per point, as
`vaebench train` computes it on the test split and `vaebench eval` on any split.

    python scripts/bench_eval.py                          # CPU: 200 points per model, timed for 10,000
    python scripts/bench_eval.py --device cuda            # GPU: the whole 10,000 points
    python scripts/bench_eval.py --models mlp-vamp --points 50 --pairs 5000,20000,80000

The model is the paper's (built from the Hydra config, untrained: the speed does not depend on the
weights), the points synthetic binary 28x28 images. The work is split_diagnostics' own: every point
encoded once, its S samples decoded in calls of at most --pairs (sample, point) pairs, by default
as many as vaebench.metrics.likelihood.pairs_per_call allows on the device.
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench_train import MODELS, vaebench_config
from benchutil import describe, matmul_gflops, peak_memory_bytes, pick_device, table, timed

TEST_POINTS = 10_000
IMAGE = (1, 28, 28)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    parser.add_argument("--points", type=int, default=None,
                        help=f"points to evaluate (default: 200 on CPU, {TEST_POINTS:,} on a GPU)")
    parser.add_argument("--samples", type=int, default=5000, help="importance samples per point (default: 5000)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed repeats per model, alternating between the models; the best counts (default: 3)")
    parser.add_argument("--pairs", default=None,
                        help="comma-separated (sample, point) pairs per call to compare (default: vaebench's choice)")
    args = parser.parse_args()
    names = args.models.split(",")
    if unknown := [n for n in names if n not in MODELS]:
        sys.exit(f"unknown --models {unknown}; choose from {', '.join(MODELS)}")
    device = pick_device(args.device)
    points = args.points or (TEST_POINTS if device.type == "cuda" else 200)

    from vaebench.config.components import build_model
    from vaebench.metrics.likelihood import importance_weighted_log_likelihood, pairs_per_call

    torch.manual_seed(0)
    x = torch.rand(points, *IMAGE, device=device).bernoulli()
    pair_options = [int(p) for p in args.pairs.split(",")] if args.pairs else [pairs_per_call(x)]
    print(f"Device: {describe(device)}; {points:,} points, S = {args.samples:,} samples each.", flush=True)

    contenders = []
    for name in names:
        cfg = vaebench_config(MODELS[name])
        model = build_model(cfg, IMAGE, x).to(device).eval()
        for pairs in pair_options:
            with torch.no_grad():
                p_z = model.prior()

            def log_likelihood(points_x, p_z=p_z, model=model, pairs=pairs):
                with torch.no_grad():
                    return importance_weighted_log_likelihood(
                        lambda block, s: model.log_importance_weights(block, p_z, s), points_x, args.samples,
                        max_rows=pairs)

            log_likelihood(x[:1])  # warm-up
            with FlopCounterMode(display=False) as counter:
                log_likelihood(x[:1])
            peak = peak_memory_bytes(lambda: log_likelihood(x[: max(1, pairs // args.samples)]), device)
            contenders.append((name, pairs, log_likelihood, counter.get_total_flops(), peak))
    seconds = {(name, pairs): [] for name, pairs, *_ in contenders}
    matmul = []
    for _ in range(args.repeats):  # alternating, so that a slow spell of the machine touches every model alike
        for name, pairs, log_likelihood, *_ in contenders:
            seconds[name, pairs].append(timed(lambda: log_likelihood(x), device))
            print(f"  {name}, {pairs:,} pairs per call: {seconds[name, pairs][-1]:.1f} s", file=sys.stderr, flush=True)
        matmul.append(matmul_gflops(device, seconds=0.5))
    matmul_rate = max(matmul)

    rows = []
    for name, pairs, _, flops, peak in contenders:  # flops: per point
        rates = [flops * points / s / 1e9 for s in seconds[name, pairs]]
        rate = points / min(seconds[name, pairs])
        rows.append([name, f"{pairs:,}", f"{rate:,.1f}", f"{TEST_POINTS / rate:,.0f}", f"{flops / 1e9:.2f}",
                     f"{max(rates):.1f} ({min(rates):.1f}-{max(rates):.1f})", f"{100 * max(rates) / matmul_rate:.0f}%",
                     f"{peak / 2**20:,.0f}"])
    print()
    print(table(["model", "pairs per call", "points/s", f"s for {TEST_POINTS:,}", "GFLOP/point",
                 "GFLOP/s, best (min-max)", "of matmul", "peak MiB"], rows))
    print(f"\nmatmul: {matmul_rate:.1f} GFLOP/s ({min(matmul):.1f}-{max(matmul):.1f}; 2048 x 2048 float32, timed between "
          f"the repeats, best counts). s for {TEST_POINTS:,}: extrapolated from "
          f"{points:,} points where fewer were run. GFLOP: matrix products (torch.utils.flop_counter); peak: "
          "memory held at once by one call of the log-weights' chunk.")


if __name__ == "__main__":
    main()
