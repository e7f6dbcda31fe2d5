"""What the aggregate-posterior prior (prior=aggregate, K = N) costs per training step.

    python scripts/bench_aggregate_prior.py                      # N = 4,000 and 50,000 on the CPU
    python scripts/bench_aggregate_prior.py --device cuda
    python scripts/bench_aggregate_prior.py --points 50000 --mnist DIR --checkpoint RUN/checkpoints/best.pt

Each step encodes the whole training split without gradients, then again with gradients the points
whose responsibility is not negligible for some z of the batch (priors.EncodedAggregate): the paper's
MLP VAE (latent 40, hidden 300), batch 100, Adam. By default an untrained model on synthetic binary
28x28 images, whose posteriors all overlap, so every point gets gradients: the worst case. With
`--mnist` (a folder holding MNIST/raw) and `--checkpoint` (a trained mlp run's checkpoint, whose
encoder and decoder it loads) the points are MNIST training images and the posteriors a trained
model's: the case of a run past its first steps. Steps of the standard prior, of prior=aggregate and
of the same prior with gradients through every point (how it was computed before) alternate in one
process with the step's floor, one forward pass of the encoder over the whole split without gradients
(35 GFLOP at N = 50,000), so that a busy machine slows them alike; the table gives the median step
and the spread (min-max) over the repeats, the step over its floor, the share of points that got
gradients, and the peak memory of one step at the default chunk of 1,024 points against the whole
split in one chunk. The floor's rate is set against the CPU's matrix-product rate.
"""

from __future__ import annotations

import argparse

import torch

from benchutil import describe, matmul_gflops, median, peak_memory_bytes, pick_device, table, timed


def training_points(n: int, mnist: str | None) -> torch.Tensor:
    if mnist is None:
        return torch.rand(n, 1, 28, 28).bernoulli()
    from vaebench.datasets import fixed_binarization, mnist as load_mnist

    return fixed_binarization(load_mnist(0, root=mnist, binarize="dynamic", val_size=10000).train[:n])


def every_point_prior_class():
    """The same prior with gradients through every point (as before responsibilities chose them): each
    chunk of the split encoded with gradients under torch.utils.checkpoint."""
    from vaebench.priors.aggregate import AggregatePosteriorPrior, EncodedAggregate

    class EveryPointAggregate(EncodedAggregate):
        def log_prob(self, z):
            return self._over_chunks(z, lambda mixture, flat: torch.logsumexp(mixture.component_log_prob(flat), dim=-1)
                                     ).reshape(z.shape[:-1])

    class EveryPointAggregatePrior(AggregatePosteriorPrior):
        def forward(self):
            return EveryPointAggregate(self._encode[0], self.inputs, self.latent_dim, self.chunk_size)

    return EveryPointAggregatePrior


def model_with(prior: str, data: torch.Tensor, device: torch.device, checkpoint: str | None, chunk_size: int = 1024):
    """One training step of the model, and a count of the points it encoded with gradients."""
    from vaebench.models import MLPVAE
    from vaebench.priors import AggregatePosteriorPrior, StandardPrior

    EveryPointAggregatePrior = every_point_prior_class()
    torch.manual_seed(0)
    model = MLPVAE((1, 28, 28), latent_dim=40, hidden_dim=300)
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]
        model.load_state_dict({k: v for k, v in state.items() if not k.startswith("prior.")}, strict=False)
    with_gradients = []

    def counting_encode(x):
        if torch.is_grad_enabled():
            with_gradients.append(len(x))
        return model.encode(x)

    if prior == "aggregate":
        model.prior = AggregatePosteriorPrior(40, counting_encode, data, chunk_size=chunk_size)
    elif prior == "every point":
        model.prior = EveryPointAggregatePrior(40, counting_encode, data, chunk_size=chunk_size)
    else:
        model.prior = StandardPrior(40)
    model = model.to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=5e-4)
    batch = data[torch.randperm(len(data))[:100]].to(device)

    def step():
        optimiser.zero_grad(set_to_none=True)
        terms = model.terms(batch)
        (-terms["elbo"]).mean().backward()
        optimiser.step()
    step.model = model
    return step, with_gradients


def encoder_floor(model, data: torch.Tensor, device: torch.device, chunk_size: int = 1024):
    """One pass of the encoder over every point, without gradients, and its FLOPs."""
    from torch.utils.flop_counter import FlopCounterMode

    def forward():
        with torch.no_grad():
            for block in data.split(chunk_size):
                model.encode(block.to(device))
    with FlopCounterMode(display=False) as counter:
        forward()
    return forward, counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    parser.add_argument("--points", default="4000,50000", help="training split sizes N (default: 4000,50000)")
    parser.add_argument("--repeats", type=int, default=5, help="alternating steps of each (default: 5)")
    parser.add_argument("--mnist", help="a folder holding MNIST/raw: its training images instead of synthetic ones")
    parser.add_argument("--checkpoint", help="a trained mlp run's checkpoint (latent 40, hidden 300) to start from")
    args = parser.parse_args()
    device = pick_device(args.device)
    state = f"{'trained' if args.checkpoint else 'untrained'} on {'MNIST' if args.mnist else 'synthetic images'}"
    print(f"Device: {describe(device)}; MLP VAE (latent 40, hidden 300), {state}, batch 100; "
          f"{args.repeats} repeats.", flush=True)
    rows = []
    for n in (int(v) for v in args.points.split(",")):
        data = training_points(n, args.mnist)
        standard, _ = model_with("standard", data, device, args.checkpoint)
        aggregate, with_gradients = model_with("aggregate", data, device, args.checkpoint)
        every_point, _ = model_with("every point", data, device, args.checkpoint)
        floor, flops = encoder_floor(aggregate.model, data, device)
        standard(), aggregate(), every_point(), floor()  # warm-up
        times = {"standard": [], "aggregate": [], "every point": [], "floor": []}
        with_gradients.clear()
        for _ in range(args.repeats):
            times["standard"].append(timed(standard, device))
            times["aggregate"].append(timed(aggregate, device))
            times["every point"].append(timed(every_point, device))
            times["floor"].append(timed(floor, device))
        peak = matmul_gflops(device, seconds=1.0)
        share = sum(with_gradients) / 2 / args.repeats / n  # each checkpointed chunk is encoded twice
        chunked = peak_memory_bytes(aggregate, device)
        whole = peak_memory_bytes(model_with("aggregate", data, device, args.checkpoint, chunk_size=n)[0], device)
        s, a, e, f = times["standard"], times["aggregate"], times["every point"], times["floor"]
        rows.append([f"{n:,}", f"{1e3 * median(s):.1f} ({1e3 * min(s):.1f}-{1e3 * max(s):.1f})",
                     f"{1e3 * median(a):.0f} ({1e3 * min(a):.0f}-{1e3 * max(a):.0f})", f"{median(a) / median(s):.0f}x",
                     f"{1e3 * median(f):.0f} ({flops / median(f) / 1e9:.0f} GFLOP/s, {flops / median(f) / 1e9 / peak:.0%} of "
                     f"{peak:.0f})", f"{median(a) / median(f):.2f} ({min(a) / max(f):.2f}-{max(a) / min(f):.2f})",
                     f"{share:.0%}", f"{1e3 * median(e):.0f} ({1e3 * min(e):.0f}-{1e3 * max(e):.0f})",
                     f"{median(a) * n / 100 / 60:.1f}", f"{chunked / 2**20:.0f}", f"{whole / 2**20:.0f}"])
    print(table(["N", "standard step, ms", "aggregate step, ms", "ratio", "floor: encoder over N, ms (of matmul peak)",
                 "aggregate step / floor", "points with gradients",
                 "step with gradients through every point, ms", "aggregate epoch, min",
                 "peak MiB (chunks of 1,024)", "peak MiB (one chunk of N)"], rows))


if __name__ == "__main__":
    main()
