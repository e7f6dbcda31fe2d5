"""Where the posterior gap comes from (Cremer, Li & Duvenaud 2018, "Inference suboptimality in
variational autoencoders"):

    log p(x) - ELBO(q_phi) = [log p(x) - ELBO(q*)] + [ELBO(q*) - ELBO(q_phi)]
                           =  approximation gap    +  amortization gap

q*(z|x) is the best member of the encoder's family for one point, found by optimising that point's
own parameters with the decoder and the prior held fixed. Here the family is the encoder's own,
reached through local offsets per latent layer in the encoder's own units: loc + scale * a,
scale * exp(b), starting at a = b = 0, the encoder's answer. In these units the problem looks the
same whatever the scale of the latents (a posterior of s.d. 0.025 or 1.3). For a one-level VAE that
is a free diagonal Gaussian per point, and the gaps are estimates of Cremer et al.'s. For the
two-level model they are bounds. Both layers get offsets, z1's applied to the conditional
q(z1|x, z2) the encoder computes for each z2: q*(z1|x, z2) = N(mu1(x, z2) + sigma1(x, z2) a1,
sigma1(x, z2) exp(b1)), one shift and one stretch per point whatever z2, a restricted part of the
family "q(z2|x) q(z1|x, z2), each a diagonal Gaussian, z1's parameters any function of z2". That
family's best has an ELBO at least ELBO(q*), so the approximation gap log p(x) - ELBO(q*) is an upper
bound on the family's, and the amortization gap ELBO(q*) - ELBO(q_phi) a lower bound; their sum, the
posterior KL, is the same (up to the Monte-Carlo noise, and given a good log p(x)).

The optimisation: with the draws held fixed, the ELBO is a smooth deterministic function of the
offsets, so each point gets a quasi-Newton method (L-BFGS, `per_point_lbfgs`) on
    ELBO_S(a, b) = 1/S sum_s log p(x, z_s) - log q(z_s|x),  z_s = loc + scale a + scale exp(b) eps_s,
with S fixed draws eps_s per point (at least DRAWS_PER_LATENT per latent dimension, MIN_DRAWS in all).
The draws are antithetic (eps and -eps) and whitened so that their mean is 0 and their second moment
exactly the identity: ELBO_S is then exact wherever log p(x, z) is quadratic in z (a Gaussian
posterior) and off only by the higher-order terms elsewhere, where independent draws would move the
optimum by about (offsets) / (2 S) nats. A point stops when a step gained less than TOLERANCE_NATS
under the same draws and the quasi-Newton model predicts less than that from the next, or after
MAX_ITERATIONS. ELBO(q*) is then estimated with ELBO_SAMPLES fresh independent draws, so the fixed
draws choose q* but do not score it: the estimate is unbiased for the ELBO of the q* found, which is
never above the best of the family. `scripts/gap_convergence_check.py` checks q* against the analytic
optimum of a linear-Gaussian model and, on a trained run, against a rerun with four times the draws.

The stage is bounded: points go in batches of at most a call's worth of (draw, point) pairs, and no
batch starts whose work would take the stage past BUDGET_FLOP, judged by the work per point so far.
Work is counted, not timed (the model's floating-point operations at one pair, counted once by torch's
FlopCounterMode, times the pairs evaluated: three times a forward pass where a gradient is taken), so
how many points a model gets does not depend on the machine's speed or load: the same run measures the
same points anywhere. The log then says how many points were measured and what SE that costs.

Both gaps are per point and use the same log p(x) and ELBO(q_phi) as `log_likelihood` and `elbo_iw`
(the same importance samples), so amortization_gap + approximation_gap = posterior_kl point by point,
exactly. Their standard errors are over the points (each point's Monte-Carlo noise is part of its
value's spread). ELBO(q*) is a lower bound on log p(x) like any ELBO, so an approximation gap below
zero by more than 2 SE means the estimate of log p(x) is too low (too few importance samples for
so poor an encoder); it is reported as it is, never clipped, and the run says so.
"""

from __future__ import annotations

import contextlib
import logging
import math

import torch

from vaebench.distributions import DiagonalNormal
from vaebench.metrics.evaluation import EVAL_SEED, counting, mean_and_se
from vaebench.metrics.likelihood import pairs_per_call
from vaebench.metrics.per_point_lbfgs import minimise_each

log = logging.getLogger("vaebench")

# Whitening needs S / 2 >= dimensions; with twice that, the fixed draws' optimum lies within ~0.006 nats
# per point of what many more draws reach on the default mnist5k VAE (0.013 at 2 per latent).
DRAWS_PER_LATENT = 4
MIN_DRAWS = 64           # few latents: enough draws that their radii vary, as a Gaussian's do
TOLERANCE_NATS = 1e-4
MAX_ITERATIONS = 500
ELBO_SAMPLES = 1000
# About 3 minutes of the stage at one thread of a 2-core AMD EPYC (2026-12, measured: 5e10 FLOP/s on
# conv64, 1.2e11 on the default MLP). The default mnist5k VAE's 100 points take 8% of it (8e9 FLOP a
# point); `dataset=sprites model=conv64` (2e11 a point) stops after 48.
BUDGET_FLOP = 1.0e13
# A pass evaluates and differentiates the model at every (draw, point) pair of a batch: about three
# times the memory of the log-likelihood's forward pass at the same pairs.
MEMORY_FRACTION = 0.15


class FixedNoiseNormal(DiagonalNormal):
    """N(loc, diag(scale^2)) whose rsample is loc + scale * `noise`, the same at every call."""

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, noise: torch.Tensor):
        super().__init__(loc, scale)
        self.noise = noise

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        if sample_shape:
            raise ValueError("a FixedNoiseNormal has one draw per row")
        z = self.loc + self.scale * self.noise
        self._last_sample = (z, self.noise)
        return z


class LocalOffsets:
    """The `adjust` a model's `latents` applies to each layer's posterior: per point, loc + scale * a,
    scale * exp(b), with (a, b) the layer's columns of `params` (points, P) as `layers` [(name, dim)]
    lays them out. With `noise` {name: (draws * points, dim)} each layer draws exactly that noise."""

    def __init__(self, layers: list[tuple[str, int]], params: torch.Tensor, noise: dict | None = None):
        self.columns, start = {}, 0
        for name, dim in layers:
            self.columns[name] = (start, dim)
            start += 2 * dim
        self.params, self.noise = params, noise

    def __call__(self, name: str, q: DiagonalNormal) -> DiagonalNormal:
        start, dim = self.columns[name]
        repeats = len(q.loc) // len(self.params)  # each draw's copy of the batch, sample-major
        shift = self.params[:, start:start + dim].repeat(repeats, 1)
        stretch = self.params[:, start + dim:start + 2 * dim].exp().repeat(repeats, 1)
        loc, scale = q.loc + q.scale * shift, q.scale * stretch
        if self.noise is None:
            return DiagonalNormal(loc, scale)
        noise = self.noise[name]
        if noise.shape != loc.shape:
            raise ValueError(f"layer {name}: its posterior reached `adjust` with {len(loc)} rows, not one per draw "
                             f"and point ({len(noise)}): the model's latents() must repeat the batch before adjust")
        return FixedNoiseNormal(loc, scale, noise)


def latent_layers(model, x: torch.Tensor, p_z) -> list[tuple[str, int]]:
    """Each latent layer's name and dimension, in the order the model's `latents` adjusts them."""
    found = []

    def record(name: str, q: DiagonalNormal) -> DiagonalNormal:
        found.append((name, q.loc.shape[-1]))
        return q

    with torch.no_grad():
        model.latents(x[:1], p_z, 1, record)
    return found


def draws_for(layers: list[tuple[str, int]], factor: int = 1) -> int:
    dims = sum(dim for _, dim in layers)
    draws = factor * max(MIN_DRAWS, DRAWS_PER_LATENT * dims)
    return draws + draws % 2


def matched_noise(points: int, draws: int, dims: int, device) -> torch.Tensor:
    """Standard normal draws (draws, points, dims), antithetic and whitened per point: for every point
    their mean is 0 and their second moment the identity, exactly."""
    half = torch.randn(points, draws // 2, dims, dtype=torch.float64, device=device)
    second_moment = half.transpose(1, 2) @ half / (draws // 2)
    values, vectors = torch.linalg.eigh(second_moment)
    half = half @ (vectors * values.clamp_min(1e-12).rsqrt().unsqueeze(1)) @ vectors.transpose(1, 2)
    return torch.cat([half, -half], 1).transpose(0, 1).float()


def elbo_per_point(model, x: torch.Tensor, p_z, samples: int, adjust=None) -> torch.Tensor:
    """The ELBO of each point from `samples` draws: mean_s log p(x, z_s) - log q(z_s|x), shape (N,)."""
    return model.log_importance_weights(x, p_z, samples, adjust).mean(0)


@contextlib.contextmanager
def _frozen(model):
    """The decoder and prior stay fixed: only the offsets get gradients."""
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    for parameter in trainable:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in trainable:
            parameter.requires_grad_(True)


def fit_offsets(model, x: torch.Tensor, p_z, layers, draws: int, tolerance: float = TOLERANCE_NATS,
                max_iterations: int = MAX_ITERATIONS, on_done=None, work=None) -> tuple[torch.Tensor, torch.Tensor]:
    """q*'s offsets for each point of `x` (one batch), (N, P), and the L-BFGS iterations each took;
    `on_done(index, params)` hears of the points as they stop; `work(passes)` hears of the (draw, point)
    pairs evaluated, in forward passes."""
    dims = [dim for _, dim in layers]
    noise = matched_noise(len(x), draws, sum(dims), x.device)

    def negative_elbo(params: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        if work is not None:
            work(3 * draws * len(index))  # a forward and its backward
        per_layer = noise[:, index].split(dims, dim=-1)
        fixed = {name: eps.reshape(-1, eps.shape[-1]) for (name, _), eps in zip(layers, per_layer)}
        log_w = model.log_importance_weights(x[index], p_z, draws, LocalOffsets(layers, params, fixed))
        return -log_w.double().mean(0)

    start = torch.zeros(len(x), 2 * sum(dims), device=x.device)
    with _frozen(model):
        return minimise_each(negative_elbo, start, tolerance, max_iterations, on_done)


@torch.no_grad()
def fresh_elbo(model, x: torch.Tensor, p_z, layers, params: torch.Tensor, samples: int = ELBO_SAMPLES) -> torch.Tensor:
    """The ELBO of the offsets' q for each point of `x`, from `samples` independent draws (N,)."""
    adjust = LocalOffsets(layers, params)
    return torch.stack([elbo_per_point(model, x, p_z, n, adjust).double()
                        for n in _sample_blocks(samples, len(x), pairs_per_call(x))]).mean(0)


def optimised_elbo(model, x: torch.Tensor, p_z, on_points=None, work=None) -> tuple[torch.Tensor, torch.Tensor]:
    """ELBO(q*) of each point of `x` (one batch) from fresh draws, and the iterations each point took;
    `on_points(n)` hears of the points done as they finish, `work(passes)` of the pairs evaluated."""
    layers = latent_layers(model, x, p_z)
    elbo_star = torch.zeros(len(x), dtype=torch.float64, device=x.device)

    def estimate(index: torch.Tensor, params: torch.Tensor) -> None:
        elbo_star[index] = fresh_elbo(model, x[index], p_z, layers, params)
        if work is not None:
            work(ELBO_SAMPLES * len(index))
        if on_points is not None:
            on_points(len(index))

    _, iterations = fit_offsets(model, x, p_z, layers, draws_for(layers), on_done=estimate, work=work)
    return elbo_star, iterations


def flop_per_pair(model, x: torch.Tensor, p_z) -> float:
    """The model's floating-point operations for the log-weight of one (draw, point) pair, counted."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        counter = FlopCounterMode(display=False)
        with counter:
            model.log_importance_weights(x[:1], p_z, 1)
    return max(1.0, float(counter.get_total_flops()))


def _sample_blocks(samples: int, points: int, pairs: int) -> list[int]:
    """`samples` draws in calls of at most `pairs` (sample, point) pairs each; equal blocks, so the
    per-call means average to the whole mean."""
    per_call = max(1, pairs // max(points, 1))
    while samples % per_call:
        per_call -= 1
    return [per_call] * (samples // per_call)


def inference_gaps(model, x: torch.Tensor, log_px: torch.Tensor, elbo_iw: torch.Tensor, batch_size: int,
                   progress=None, budget_flop: float = BUDGET_FLOP) -> dict[str, float]:
    """The amortization and approximation gaps of the points `x` (the first of them that `budget_flop`
    allows), given their log p(x) and ELBO(q_phi) from the same importance samples
    (`log_likelihood_report`'s per-point values), each with its SE over the points;
    `inference_gap_points`, and the `posterior_kl` of these points, which the two sum to, and their
    `elbo_iw`, which they stack on."""
    model.eval()
    with torch.no_grad():  # a constant for the optimisation (a VampPrior's components come from the encoder)
        p_z = model.prior()
    draws = draws_for(latent_layers(model, x, p_z))
    per_batch = max(1, min(batch_size, int(pairs_per_call(x, MEMORY_FRACTION)) // draws))
    on_points = counting(progress, "inference gaps: q*(z|x) per point", len(x))
    best, steps = [], 0
    flop, passes = flop_per_pair(model, x, p_z), [0]
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(EVAL_SEED + 3)
        for start in range(0, len(x), per_batch):
            spent = flop * passes[0]
            if start and spent / start * min(start + per_batch, len(x)) > budget_flop:
                _say_budget(start, len(x), spent, budget_flop)
                break
            elbo_star, taken = optimised_elbo(model, x[start:start + per_batch], p_z, on_points,
                                              work=lambda n: passes.__setitem__(0, passes[0] + n))
            best.append(elbo_star)
            steps = max(steps, int(taken.max()))
    model.train()
    elbo_star = torch.cat(best)
    log_px, elbo_iw = log_px[:len(elbo_star)].to(elbo_star), elbo_iw[:len(elbo_star)].to(elbo_star)
    return {**mean_and_se("amortization_gap", elbo_star - elbo_iw),
            **mean_and_se("approximation_gap", log_px - elbo_star),
            **mean_and_se("posterior_kl_of_gap_points", log_px - elbo_iw),
            **mean_and_se("elbo_iw_of_gap_points", elbo_iw),
            "inference_gap_points": len(elbo_star), "inference_gap_steps": steps}


def _say_budget(done: int, asked: int, spent: float, budget_flop: float) -> None:
    log.warning(f"Inference gaps on the first {done} of {asked} points only: the next batch would take the stage past "
                f"its budget of {budget_flop:.1e} floating-point operations of the model (all {asked} would take about "
                f"{spent / done * asked / budget_flop:.1f} times it; eval.gap_points sets how many are asked). Their "
                f"standard errors are about {math.sqrt(asked / done):.1f} times what {asked} points would give.")
