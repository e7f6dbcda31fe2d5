"""Training throughput: vaebench's trainer against a plain PyTorch loop for the same model.

    python scripts/bench_train.py                                  # every model, about 25 s each on a 2-core CPU
    python scripts/bench_train.py --device cuda --steps 500
    python scripts/bench_train.py --models mlp-vamp --compile      # vaebench with trainer.compile=true
    python scripts/bench_train.py --objectives                     # each objective's step against the ELBO's (mlp-standard)
    python scripts/bench_train.py --compile-draws                  # compiled: eager's random draws against inductor's own

vaebench runs as a user runs it: the model from `build_model` on the composed Hydra config
(`model=... prior=...`), `Trainer.fit` on synthetic 28x28 grey images binarised afresh at every draw
(as mnist5k is), one epoch of --steps batches of 100 per round; only the end-of-epoch evaluation and
checkpoint are left out, exactly the part the trainer itself leaves out of its `samples_per_s`.
The plain loop is what one writes by hand for the same model and maths: nn.Linear layers of the
same sizes (for the gated MLP, each gated layer's two maps as one nn.Linear of twice the width, as
vaebench holds them, and the log-variance through a hardtanh to [-6, 2]), a Bernoulli likelihood as
binary cross-entropy with logits, the analytic Gaussian KL (standard prior) or log q(z|x) - log p(z)
with the VampPrior's log-density as one matrix product (its pseudo-inputs clamped to [0, 1]),
fused Adam as vaebench's; no logging beyond the loss; each pixel binarised with `torch.rand_like(x) < x`
as one writes it by hand (vaebench, on a CPU, from 16 random bits per pixel: `data.bernoulli_image`).
Rounds alternate the two, so background load hits both alike.

With --compile-draws, vaebench's compiled step as it ships (inductor's `fallback_random`: the eager
step's random draws, so that compiling changes no draw of a run) races the same step drawing from
inductor's own generator (as before issue 37): what exactness costs a compiled run.

With --objectives, each objective's training (conf/objective/, at its defaults; iwae with k=5)
races vaebench's default, the β-ELBO, on the same model in the same way: paired rounds, ratios.
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchutil import describe, matmul_gflops, median, peak_memory_bytes, pick_device, table, timed

MODELS = {
    "mlp-standard": ["model=mlp", "prior=standard"],
    "mlp-vamp": ["model=mlp", "prior=vamp", "prior.K=500"],
    "mlp-gated-vamp": ["model=mlp", "model.gated=true", "prior=vamp", "prior.K=500"],
    "hvae-vamp": ["model=hvae", "prior=vamp", "prior.K=500"],
}
OBJECTIVES = {
    "capacity": ["objective=capacity"],
    "free_bits": ["objective=free_bits"],
    "beta_tc": ["objective=beta_tc"],
    "iwae": ["objective=iwae", "objective.k=5"],
}
BATCH = 100
IMAGE = (1, 28, 28)


# -- vaebench, as a user runs it ----------------------------------------------------------------
def vaebench_config(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from vaebench.run.train import config_dir  # also registers the config's resolvers

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def vaebench_trainer(overrides: list[str], data, compile_: bool, run_dir: Path, precision: str = "fp32"):
    from vaebench.config.components import build_model
    from vaebench.run.trainer import Trainer

    class EpochTrainer(Trainer):
        """Trainer.fit's loop as is; the end of an epoch only counts it (no evaluation, no checkpoint)."""

        def _end_epoch(self, steps_per_epoch, n, seconds, samples=None):
            self.progress.epoch += 1
            self.epoch_order, self.epoch_sums = None, None

    cfg = vaebench_config([*overrides, f"trainer.batch_size={BATCH}", f"trainer.compile={str(compile_).lower()}",
                           f"trainer.precision={precision}"])
    model = build_model(cfg, data.data_shape, data.train).to(data.train.device)
    trainer = EpochTrainer(model, data, cfg, run_dir, board=None)

    def epoch():
        cfg.trainer.epochs = trainer.progress.epoch + 1
        trainer.fit()

    beta = torch.ones((), device=data.train.device)
    return epoch, lambda x: trainer.train_step(x, beta), sum(p.numel() for p in model.parameters())


# -- the plain loop -----------------------------------------------------------------------------
def linear_stack(*sizes: int) -> nn.Sequential:
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


class Gated(nn.Linear):
    """(W x + b) * sigmoid(V x + c), W and V stacked in one nn.Linear."""

    def forward(self, x):
        value, gate = super().forward(x).chunk(2, dim=-1)
        return value * torch.sigmoid(gate)


def gated_stack(*sizes: int) -> nn.Sequential:
    """Gated hidden layers, then a plain linear output layer."""
    return nn.Sequential(*(Gated(a, 2 * b) for a, b in zip(sizes[:-2], sizes[1:-1])), nn.Linear(sizes[-2], sizes[-1]))


class PlainVAE(nn.Module):
    """784-300-300-40 encoder and 40-300-300-784 decoder; VampPrior on z when K > 0; with `hierarchical`
    the VampPrior paper's two-level model: q(z2|x) q(z1|x,z2), p(z1|z2), p(x|z1,z2); with `gated` the
    one-level MLP as the paper's code builds it."""

    def __init__(self, K: int = 0, hierarchical: bool = False, gated: bool = False, data_dim: int = 784,
                 hidden: int = 300, latent: int = 40):
        super().__init__()
        self.hierarchical, self.gated, self.latent = hierarchical, gated, latent
        stack = gated_stack if gated else linear_stack
        self.encoder = stack(data_dim, hidden, hidden, 2 * latent)
        if hierarchical:
            self.q_z1_x, self.q_z1_z2 = nn.Linear(data_dim, hidden), nn.Linear(latent, hidden)
            self.q_z1 = linear_stack(2 * hidden, hidden, 2 * latent)
            self.p_z1 = linear_stack(latent, hidden, hidden, 2 * latent)
            self.p_x_z1, self.p_x_z2 = nn.Linear(latent, hidden), nn.Linear(latent, hidden)
            self.decoder = linear_stack(2 * hidden, hidden, data_dim)
        else:
            self.decoder = stack(latent, hidden, hidden, data_dim)
        if K:
            self.pseudo_inputs = nn.Parameter(0.05 + 0.01 * torch.randn(K, data_dim))
        self.K = K

    def gaussian(self, params: torch.Tensor):
        if self.gated:
            loc, log_var = params.chunk(2, dim=-1)
            return loc, torch.exp(0.5 * F.hardtanh(log_var, -6.0, 2.0))
        loc, raw_scale = params.chunk(2, dim=-1)
        return loc, F.softplus(raw_scale) + 1e-4

    def loss(self, x: torch.Tensor, beta: float) -> torch.Tensor:
        x = x.flatten(1)
        loc, scale = self.gaussian(self.encoder(x))
        eps = torch.randn_like(loc)
        z = loc + scale * eps
        if self.K:  # log q(z|x) - log p(z), the VampPrior as one matrix product
            log_q = (-0.5 * eps.pow(2) - scale.log()).sum(-1) - 0.5 * self.latent * math.log(2 * math.pi)
            kl = log_q - self.vamp_log_density(z)
        else:  # KL(N(loc, scale^2) || N(0, I)), analytic
            kl = (0.5 * (loc.pow(2) + scale.pow(2) - 1) - scale.log()).sum(-1)
        if self.hierarchical:
            z2 = z
            loc1, scale1 = self.gaussian(self.q_z1(torch.cat([F.relu(self.q_z1_x(x)), F.relu(self.q_z1_z2(z2))], -1)))
            z1 = loc1 + scale1 * torch.randn_like(loc1)
            prior_loc1, prior_scale1 = self.gaussian(self.p_z1(z2))
            kl = kl + (prior_scale1.log() - scale1.log()
                       + (scale1.pow(2) + (loc1 - prior_loc1).pow(2)) / (2 * prior_scale1.pow(2)) - 0.5).sum(-1)
            logits = self.decoder(torch.cat([F.relu(self.p_x_z1(z1)), F.relu(self.p_x_z2(z2))], -1))
        else:
            logits = self.decoder(z)
        log_p_x_given_z = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        return (-log_p_x_given_z + beta * kl).mean()

    def vamp_log_density(self, z: torch.Tensor) -> torch.Tensor:
        loc, scale = self.gaussian(self.encoder(self.pseudo_inputs.clamp(0.0, 1.0)))
        precision = scale.pow(-2)
        weights = torch.cat([precision, -2 * loc * precision], dim=1).T
        constant = (-0.5 * (loc.pow(2) * precision).sum(-1) - scale.log().sum(-1)
                    - math.log(self.K) - 0.5 * self.latent * math.log(2 * math.pi))
        return torch.logsumexp(constant - 0.5 * (torch.cat([z.pow(2), z], dim=1) @ weights), dim=-1)


def plain_loop(name: str, train: torch.Tensor, steps: int):
    model = PlainVAE(K=500 if "vamp" in name else 0, hierarchical=name.startswith("hvae"),
                     gated="gated" in name).to(train.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4, fused=True)
    order_generator = torch.Generator().manual_seed(0)

    def step(x):
        loss = model.loss(x, 1.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    def epoch():
        order = torch.randperm(len(train), generator=order_generator).to(train.device)
        total = torch.zeros((), device=train.device)
        for b in range(steps):
            x = train[order[b * BATCH:(b + 1) * BATCH]]
            total += step((torch.rand_like(x) < x).to(x.dtype))  # a Bernoulli(x) image
        return float(total)  # the host reads the loss once per epoch

    return epoch, step, sum(p.numel() for p in model.parameters())


def spread(ratios: list[float]) -> str:
    """The median of the paired ratios, in brackets their middle half, then their mean ± its SE (the pairs'
    spread / √pairs): how far one run can be trusted."""
    if len(ratios) < 2:
        return f"{median(ratios):.3f}"
    low, mid, high = statistics.quantiles(ratios, n=4)
    mean, se = statistics.fmean(ratios), statistics.stdev(ratios) / math.sqrt(len(ratios))
    return f"{mid:.3f} ({low:.3f}-{high:.3f}); mean {mean:.3f} ± {se:.3f}"


def flops_per_sample(step, x: torch.Tensor) -> float:
    with FlopCounterMode(display=False) as counter:
        step(x)
    return counter.get_total_flops() / len(x)


def bench_model(name: str, data, args, run_dir: Path, device: torch.device) -> dict:
    """Alternating timed rounds of vaebench and the plain loop; then FLOPs and peak memory of one step.

    Both are built afresh every two rounds (one round each way round): on a CPU an instance's speed
    depends by up to 3% on where its tensors happen to lie in memory (two instances of the very same
    plain loop differ so, steadily, within one process), and fresh pairs average that out."""
    seconds = {"vaebench": [], "plain": []}
    matmul = 0.0
    for r in range(args.rounds):
        if r % 2 == 0:
            contenders = {"vaebench": vaebench_trainer(MODELS[name], data, args.compile, run_dir, args.precision),
                          "plain": plain_loop(name, data.train, args.steps)}
            for epoch, _, _ in contenders.values():
                epoch()  # warm-up: allocator, Adam state, kernels, compilation
        for who in (list(contenders) if r % 2 == 0 else list(contenders)[::-1]):
            seconds[who].append(timed(contenders[who][0], device))
        matmul = max(matmul, matmul_gflops(device, seconds=0.2))
    x = data.val
    flops = {who: flops_per_sample(step, x) for who, (_, step, _) in contenders.items()}
    if abs(flops["vaebench"] / flops["plain"] - 1) > 0.01:
        print(f"note: {name}: vaebench counts {flops['vaebench'] / 1e6:.2f} MFLOP/sample, the plain loop "
              f"{flops['plain'] / 1e6:.2f}: the models differ.", file=sys.stderr)
    return {
        "samples_per_s": {who: args.steps * BATCH / median(s) for who, s in seconds.items()},
        "ratios": [p / v for v, p in zip(seconds["vaebench"], seconds["plain"])],  # of paired rounds
        "rounds": {who: [args.steps * BATCH / t for t in s] for who, s in seconds.items()},  # samples/s per round
        "flops": flops["vaebench"],
        "peak_mib": {who: peak_memory_bytes(lambda: step(x), device) / 2**20 for who, (_, step, _) in contenders.items()},
        "params": contenders["vaebench"][2],
        "matmul": matmul,
    }


def bench_objective(model: str, objective: str, data, args, run_dir: Path, device: torch.device) -> dict:
    """Alternating timed rounds of the ELBO's training and the objective's, fresh pairs every two
    rounds, as bench_model does for vaebench against the plain loop."""
    seconds = {"elbo": [], objective: []}
    for r in range(args.rounds):
        if r % 2 == 0:
            contenders = {"elbo": vaebench_trainer([*MODELS[model], "objective=elbo"], data, args.compile, run_dir, args.precision),
                          objective: vaebench_trainer([*MODELS[model], *OBJECTIVES[objective]], data, args.compile,
                                                      run_dir, args.precision)}
            for epoch, _, _ in contenders.values():
                epoch()
        for who in (list(contenders) if r % 2 == 0 else list(contenders)[::-1]):
            seconds[who].append(timed(contenders[who][0], device))
    return {
        "samples_per_s": {who: args.steps * BATCH / median(s) for who, s in seconds.items()},
        "ratios": [e / o for e, o in zip(seconds["elbo"], seconds[objective])],  # speed relative to the ELBO
    }


def with_inductor_random(epoch, own: bool):
    """`epoch`, whose first call compiles the step (torch.compile is lazy), compiled with inductor's own
    random numbers (`own`) or eager's, as vaebench ships it: inductor reads the setting as it compiles."""
    import torch._inductor.config as inductor

    def run():
        saved, inductor.fallback_random = inductor.fallback_random, not own
        try:
            epoch()
        finally:
            inductor.fallback_random = saved
    return run


def bench_compile_draws(name: str, data, args, run_dir: Path, device: torch.device) -> dict:
    """Alternating rounds of the compiled step drawing as eager does (shipped) and with inductor's own
    generator; fresh pairs every two rounds, as bench_model."""
    seconds = {"eager's draws": [], "inductor's draws": []}
    for r in range(args.rounds):
        if r % 2 == 0:
            contenders = {}
            for who in seconds:
                epoch, step, params = vaebench_trainer(MODELS[name], data, True, run_dir / who, args.precision)
                contenders[who] = with_inductor_random(epoch, own=who == "inductor's draws")
                contenders[who]()  # warm-up, and the compile with its setting
        for who in (list(contenders) if r % 2 == 0 else list(contenders)[::-1]):
            seconds[who].append(timed(contenders[who], device))
    return {"samples_per_s": {who: args.steps * BATCH / median(s) for who, s in seconds.items()},
            "ratios": [o / e for e, o in zip(seconds["eager's draws"], seconds["inductor's draws"])]}


def objectives_table(model: str, names: list[str], data, args, run_dir: Path, device: torch.device) -> None:
    rows = []
    for name in names:
        r = bench_objective(model, name, data, args, run_dir / name, device)
        print(f"  {name}: done", file=sys.stderr, flush=True)
        rows.append([name, f"{r['samples_per_s'][name]:,.0f}", f"{r['samples_per_s']['elbo']:,.0f}", spread(r["ratios"])])
    print()
    print(table(["objective", "samples/s", "elbo samples/s (paired)", "objective / elbo speed"], rows))
    print(f"\n{model}; medians of {args.rounds} alternating rounds of {args.steps} steps; objective / elbo: the median "
          "over pairs of rounds of the ELBO's time over the objective's (in brackets the middle half of those pairs).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    parser.add_argument("--steps", type=int, default=50, help="timed training steps per round (default: 50)")
    parser.add_argument("--rounds", type=int, default=10, help="alternating rounds per model; medians count (default: 10)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--compile", action="store_true", help="vaebench with trainer.compile=true")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="vaebench's trainer.precision (bf16: CUDA only)")
    parser.add_argument("--objectives", nargs="?", const=",".join(OBJECTIVES), default=None,
                        help=f"time these objectives against the ELBO instead (default: all of {', '.join(OBJECTIVES)}), "
                             "on the first of --models (default then: mlp-standard)")
    parser.add_argument("--compile-draws", action="store_true",
                        help="the compiled step drawing eager's random numbers (shipped) against inductor's own")
    args = parser.parse_args()
    if args.objectives is not None and args.models == ",".join(MODELS):
        args.models = "mlp-standard"
    names = args.models.split(",")
    if unknown := [n for n in names if n not in MODELS]:
        sys.exit(f"unknown --models {unknown}; choose from {', '.join(MODELS)}")
    device = pick_device(args.device)

    from vaebench.datasets import Dataset

    torch.manual_seed(0)
    # Grey levels k/255 in [0, 1], both ends present, as in MNIST.
    train = torch.randint(0, 256, (args.steps * BATCH, *IMAGE), device=device) / 255
    train.view(-1)[:2] = torch.tensor([0.0, 1.0])
    held_out = torch.rand(BATCH, *IMAGE, device=device).bernoulli()
    data = Dataset("synthetic", train, held_out, held_out, dynamic_binarize=True)

    print(f"Device: {describe(device)}; batch {BATCH}; {args.rounds} rounds of {args.steps} steps per "
          f"contender{'; vaebench with trainer.compile=true' if args.compile else ''}"
          f"{'; vaebench with trainer.precision=' + args.precision if args.precision != 'fp32' else ''}.", flush=True)
    if args.objectives is not None:
        objectives = args.objectives.split(",")
        if unknown := [o for o in objectives if o not in OBJECTIVES]:
            sys.exit(f"unknown --objectives {unknown}; choose from {', '.join(OBJECTIVES)}")
        run_dir = Path(tempfile.mkdtemp(prefix="bench_train_"))
        try:
            objectives_table(names[0], objectives, data, args, run_dir, device)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
        return
    if args.compile_draws:
        run_dir, rows = Path(tempfile.mkdtemp(prefix="bench_train_")), []
        try:
            for name in names:
                r = bench_compile_draws(name, data, args, run_dir / name, device)
                rows.append([name, *(f"{v:,.0f}" for v in r["samples_per_s"].values()), spread(r["ratios"])])
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
        print()
        print(table(["model", "compiled, eager's draws (shipped)", "compiled, inductor's draws", "shipped / inductor's"], rows))
        print(f"\nsamples/s: medians of {args.rounds} alternating rounds of {args.steps} steps; shipped / inductor's: the "
              "median over pairs of rounds of inductor's time over the shipped step's (in brackets the middle half).")
        return
    matmul = matmul_gflops(device)
    results = {}
    run_dir = Path(tempfile.mkdtemp(prefix="bench_train_"))  # the trainer's first checkpoint goes here
    try:
        for name in names:
            results[name] = bench_model(name, data, args, run_dir / name, device)
            matmul = max(matmul, results[name]["matmul"])
            print(f"  {name}: done", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)

    rows = []
    for name, r in results.items():
        rate, peak = r["samples_per_s"], r["peak_mib"]
        achieved = r["flops"] * rate["vaebench"] / 1e9
        rows.append([name, f"{rate['vaebench']:,.0f}", f"{rate['plain']:,.0f}", spread(r["ratios"]),
                     f"{r['flops'] / 1e6:.2f}", f"{achieved:.1f}", f"{100 * achieved / matmul:.0f}%",
                     f"{peak['vaebench']:.1f} / {peak['plain']:.1f}", f"{r['params'] / 1e6:.2f}"])
    print()
    print(table(["model", "vaebench samples/s", "plain samples/s", "vaebench / plain", "MFLOP/sample",
                 "vaebench GFLOP/s", "of matmul", "step peak MiB (vaebench / plain)", "params (M)"], rows))
    print(f"\nmatmul: {matmul:.1f} GFLOP/s (2048 x 2048 float32, the best of the run). Samples/s: medians of "
          f"{args.rounds} alternating rounds; vaebench / plain: the median over pairs of rounds (in brackets the middle half of those pairs); FLOPs: matrix products of "
          "one step, forward and backward (torch.utils.flop_counter); step peak: memory that one step holds "
          "at once beyond the weights, optimiser state and data.")


if __name__ == "__main__":
    main()
