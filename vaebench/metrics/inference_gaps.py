"""Where the posterior gap comes from (Cremer, Li & Duvenaud 2018, "Inference suboptimality in
variational autoencoders"):

    log p(x) - ELBO(q_phi) = [log p(x) - ELBO(q*)] + [ELBO(q*) - ELBO(q_phi)]
                           =  approximation gap    +  amortization gap

q*(z|x) is the best member of the encoder's family for one point, found by optimising that point's
own parameters with the decoder and the prior held fixed. Here the family is the encoder's own,
reached through local offsets per latent layer: loc + a, scale * exp(b), starting at a = b = 0, the
encoder's answer (so ELBO(q*) starts at ELBO(q_phi) and only climbs). For a one-level VAE that is a
free diagonal Gaussian per point; for the two-level model both layers get offsets, z1's applied to
the conditional q(z1|x, z2) the encoder computes for each z2 (the family stays the model's).

The optimisation: Adam on the offsets of a batch of points at once, each step's ELBO from
OPTIMISER_SAMPLES reparameterised draws per point. Every CHECK_EVERY steps the batch's mean ELBO is
estimated with CHECK_SAMPLES draws under a fixed random stream (the same draws at every check, so
two checks differ by the offsets only). When a check rises by less than TOLERANCE_NATS per point above
the best so far, the offsets go back to the best check's and the learning rate falls to the next of
LEARNING_RATES (at a fixed rate Adam's noise from the sampled gradient holds the ELBO a little below
its optimum: about 0.2 nats per point on a converged mnist5k VAE at 0.02 alone); after the last rate,
or after MAX_STEPS, the optimisation stops and keeps the offsets of the best check (never worse than
the encoder's own, under those draws). ELBO(q*) is then estimated with ELBO_SAMPLES fresh draws per
point. scripts/gap_convergence_check.py reruns it longer and stricter on a trained run.

Both gaps are per point and use the same log p(x) and ELBO(q_phi) as `log_likelihood` and `elbo_iw`
(the same importance samples), so amortization_gap + approximation_gap = posterior_kl point by point,
exactly. Their standard errors are over the points (each point's Monte-Carlo noise is part of its
value's spread). ELBO(q*) is a lower bound on log p(x) like any ELBO, so an approximation gap below
zero by more than 2 SE means the estimate of log p(x) is too low (too few importance samples for
so poor an encoder); it is reported as it is, never clipped, and the run says so.
"""

from __future__ import annotations

import torch

from vaebench.distributions import DiagonalNormal
from vaebench.metrics.evaluation import EVAL_SEED, counting, mean_and_se

OPTIMISER_SAMPLES = 8
LEARNING_RATES = (0.02, 0.005, 0.00125)
CHECK_EVERY = 25
CHECK_SAMPLES = 64
TOLERANCE_NATS = 0.01
MAX_STEPS = 3000
ELBO_SAMPLES = 1000


class LocalOffsets:
    """The local parameters of a batch of points, one pair (a, b) per latent layer, made at the first
    call: the `adjust` a model's `latents` applies to each layer's posterior."""

    def __init__(self, points: int):
        self.points = points
        self.offsets: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, name: str, q: DiagonalNormal) -> DiagonalNormal:
        if name not in self.offsets:
            shape = (self.points, q.loc.shape[-1])
            self.offsets[name] = tuple(torch.zeros(shape, device=q.loc.device, requires_grad=True) for _ in range(2))
        shift, log_stretch = self.offsets[name]
        repeats = len(q.loc) // self.points  # q(z1|x, z2) arrives with its samples stacked
        return DiagonalNormal(q.loc + shift.repeat(repeats, 1), q.scale * log_stretch.exp().repeat(repeats, 1))

    def parameters(self) -> list[torch.Tensor]:
        return [tensor for pair in self.offsets.values() for tensor in pair]


def elbo_per_point(model, x: torch.Tensor, p_z, samples: int, adjust=None) -> torch.Tensor:
    """The ELBO of each point from `samples` draws: mean_s log p(x, z_s) - log q(z_s|x), shape (N,)."""
    return model.log_importance_weights(x, p_z, samples, adjust).mean(0)


def optimised_elbo(model, x: torch.Tensor, p_z, on_points=None) -> tuple[torch.Tensor, int]:
    """ELBO(q*) of each point of `x` (one batch), and the steps the optimisation took."""
    offsets = LocalOffsets(len(x))
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    for parameter in trainable:  # the decoder and prior stay fixed; only the offsets get gradients
        parameter.requires_grad_(False)
    try:
        with torch.no_grad():
            elbo_per_point(model, x, p_z, 1, offsets)  # makes the offsets, at zero
        rates = iter(LEARNING_RATES)
        optimiser = torch.optim.Adam(offsets.parameters(), lr=next(rates))
        best_check = _checked_elbo(model, x, p_z, offsets)
        kept = [p.detach().clone() for p in offsets.parameters()]
        steps = 0
        while steps < MAX_STEPS:
            optimiser.zero_grad(set_to_none=True)
            (-elbo_per_point(model, x, p_z, OPTIMISER_SAMPLES, offsets).sum()).backward()
            optimiser.step()
            steps += 1
            if steps % CHECK_EVERY == 0:
                now = _checked_elbo(model, x, p_z, offsets)
                if now > best_check:
                    kept = [p.detach().clone() for p in offsets.parameters()]
                if now - best_check < TOLERANCE_NATS:
                    rate = next(rates, None)
                    if rate is None:
                        break
                    _restore(offsets, kept)
                    for group in optimiser.param_groups:
                        group["lr"] = rate
                best_check = max(best_check, now)
        _restore(offsets, kept)  # the best offsets a check saw
        with torch.no_grad():
            best = torch.stack([elbo_per_point(model, x, p_z, n, offsets)
                                for n in _sample_blocks(ELBO_SAMPLES, len(x))]).mean(0)
    finally:
        for parameter in trainable:
            parameter.requires_grad_(True)
    if on_points is not None:
        on_points(len(x))
    return best, steps


@torch.no_grad()
def _restore(offsets: LocalOffsets, kept: list[torch.Tensor]) -> None:
    for parameter, value in zip(offsets.parameters(), kept):
        parameter.copy_(value)


def _sample_blocks(samples: int, points: int, pairs: int = 20_000) -> list[int]:
    """ELBO_SAMPLES draws in calls of at most `pairs` (sample, point) pairs each; equal blocks, so the
    per-call means average to the whole mean."""
    per_call = max(1, pairs // max(points, 1))
    while samples % per_call:
        per_call -= 1
    return [per_call] * (samples // per_call)


@torch.no_grad()
def _checked_elbo(model, x: torch.Tensor, p_z, offsets: LocalOffsets) -> float:
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(EVAL_SEED + 2)
        return float(elbo_per_point(model, x, p_z, CHECK_SAMPLES, offsets).mean())


def inference_gaps(model, x: torch.Tensor, log_px: torch.Tensor, elbo_iw: torch.Tensor, batch_size: int,
                   progress=None) -> dict[str, float]:
    """The amortization and approximation gaps of the points `x`, given their log p(x) and ELBO(q_phi)
    from the same importance samples (`log_likelihood_report`'s per-point values), each with its SE
    over the points; `inference_gap_points`, and the `posterior_kl` of these points, which the two sum
    to, and their `elbo_iw`, which they stack on."""
    model.eval()
    with torch.no_grad():  # a constant for the optimisation (a VampPrior's components come from the encoder)
        p_z = model.prior()
    on_points = counting(progress, "inference gaps: optimising q*(z|x) per point", len(x))
    best, steps = [], 0
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(EVAL_SEED + 3)
        for start in range(0, len(x), batch_size):
            elbo_star, taken = optimised_elbo(model, x[start:start + batch_size], p_z, on_points)
            best.append(elbo_star.detach())
            steps = max(steps, taken)
    model.train()
    elbo_star = torch.cat(best).double()
    log_px, elbo_iw = log_px.to(elbo_star), elbo_iw.to(elbo_star)
    return {**mean_and_se("amortization_gap", elbo_star - elbo_iw),
            **mean_and_se("approximation_gap", log_px - elbo_star),
            **mean_and_se("posterior_kl_of_gap_points", log_px - elbo_iw),
            **mean_and_se("elbo_iw_of_gap_points", elbo_iw),
            "inference_gap_points": len(x), "inference_gap_steps": steps}
