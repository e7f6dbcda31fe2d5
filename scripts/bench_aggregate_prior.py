"""What the aggregate-posterior prior (prior=aggregate, K = N) costs per training step.

    python scripts/bench_aggregate_prior.py                      # N = 4,000 and 50,000 on the CPU
    python scripts/bench_aggregate_prior.py --device cuda

Each step encodes the whole training split with gradients: the paper's MLP VAE (latent 40, hidden 300)
on synthetic binary 28x28 images, batch 100, Adam. Steps of the standard prior and of prior=aggregate
alternate in one process, so that a busy machine slows both alike; the table gives the median step
and the spread (min-max) over the repeats, and the peak memory of one step at the default chunk of
1,024 points against the whole split in one chunk.
"""

from __future__ import annotations

import argparse

import torch

from benchutil import describe, median, peak_memory_bytes, pick_device, table, timed


def model_with(prior: str, n: int, device: torch.device, chunk_size: int = 1024):
    from vaebench.models import MLPVAE
    from vaebench.priors import AggregatePosteriorPrior, StandardPrior

    torch.manual_seed(0)
    model = MLPVAE((1, 28, 28), latent_dim=40, hidden_dim=300)
    if prior == "aggregate":
        data = torch.rand(n, 1, 28, 28).bernoulli()
        model.prior = AggregatePosteriorPrior(40, model.encode, data, chunk_size=chunk_size)
    else:
        model.prior = StandardPrior(40)
    model = model.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=5e-4)
    batch = torch.rand(100, 1, 28, 28, device=device).bernoulli()

    def step():
        optimiser.zero_grad(set_to_none=True)
        terms = model.terms(batch)
        (-terms["elbo"]).mean().backward()
        optimiser.step()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    parser.add_argument("--points", default="4000,50000", help="training split sizes N (default: 4000,50000)")
    parser.add_argument("--repeats", type=int, default=5, help="alternating steps of each (default: 5)")
    args = parser.parse_args()
    device = pick_device(args.device)
    print(f"Device: {describe(device)}; MLP VAE (latent 40, hidden 300), batch 100; {args.repeats} repeats.", flush=True)
    rows = []
    for n in (int(v) for v in args.points.split(",")):
        standard, aggregate = model_with("standard", n, device), model_with("aggregate", n, device)
        standard(), aggregate()  # warm-up
        times = {"standard": [], "aggregate": []}
        for _ in range(args.repeats):
            times["standard"].append(timed(standard, device))
            times["aggregate"].append(timed(aggregate, device))
        chunked = peak_memory_bytes(aggregate, device)
        whole = peak_memory_bytes(model_with("aggregate", n, device, chunk_size=n), device)
        s, a = times["standard"], times["aggregate"]
        rows.append([f"{n:,}", f"{1e3 * median(s):.1f} ({1e3 * min(s):.1f}-{1e3 * max(s):.1f})",
                     f"{1e3 * median(a):.0f} ({1e3 * min(a):.0f}-{1e3 * max(a):.0f})", f"{median(a) / median(s):.0f}x",
                     f"{median(a) * n / 100 / 60:.1f}", f"{chunked / 2**20:.0f}", f"{whole / 2**20:.0f}"])
    print(table(["N", "standard step, ms", "aggregate step, ms", "ratio", "aggregate epoch, min",
                 "peak MiB (chunks of 1,024)", "peak MiB (one chunk of N)"], rows))


if __name__ == "__main__":
    main()
