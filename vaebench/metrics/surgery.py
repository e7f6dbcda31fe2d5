"""ELBO surgery (Hoffman & Johnson 2016): with the aggregate posterior q(z) = 1/N sum_n q(z|x_n),

    avg_n KL(q(z|x_n) || p(z)) = I_q(n; z) + KL(q(z) || p(z)),      0 <= I_q(n; z) <= log N,

and for a factorised prior (Chen et al. 2018) KL(q(z) || p(z)) = TC + sum_j KL(q(z_j) || p(z_j)).
q(z) here is the exact mixture over all N points of the split, evaluated in chunks of rows as matrix
products, never a minibatch approximation. The estimates use R independent samples z_n ~ q(z|x_n) per
point (`surgery_samples`) and come with their Monte-Carlo standard error (`<term>_se`, README).
The functions here take the posteriors' locations and scales, samples and prior log-densities:
no model.
"""

from __future__ import annotations

import math

import torch

from vaebench.distributions import DiagonalGaussianMixture, DiagonalNormal, float32_rounding_nats
from vaebench.distributions.mixture import FLOAT32_JOINT_NATS, FLOAT32_MARGINAL_NATS
from vaebench.metrics.evaluation import counting


def expansion_dtypes(loc: torch.Tensor, scale: torch.Tensor) -> tuple[torch.dtype, torch.dtype]:
    """The dtypes of the aggregate's expansion for (the joint, the 1-D marginals): float32 where its
    rounding allows, float64 where posteriors are sharp (scale << |loc|)."""
    joint, marginals = float32_rounding_nats(loc, scale)
    return (torch.float32 if joint <= FLOAT32_JOINT_NATS else torch.float64,
            torch.float32 if marginals <= FLOAT32_MARGINAL_NATS else torch.float64)


@torch.no_grad()
def aggregate_log_density(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, on_rows=None) -> torch.Tensor:
    """log q(z) for each row of z (M, D), with q = 1/N sum_n N(loc_n, diag scale_n^2): shape (M,); z are
    samples of the posteriors themselves (what the expansion's dtype is chosen for).

    Each block of rows of the (M, N) pairwise log-densities is one matrix product (the mixture's);
    `on_rows(n)` hears of each block done."""
    return DiagonalGaussianMixture(torch.zeros(len(loc), device=loc.device), loc, scale,
                                   expansion_dtypes(loc, scale)[0]).log_prob(z, on_rows)


@torch.no_grad()
def aggregate_marginal_log_density(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor,
                                   on_rows=None) -> torch.Tensor:
    """log q(z_j) of each coordinate under the aggregate's 1-D marginals: shape (M, D).

    Per dimension the log-densities of all pairs are one batched matrix product (the mixture's);
    `on_rows(n)` hears of each block done."""
    return DiagonalGaussianMixture(torch.zeros(len(loc), device=loc.device), loc, scale,
                                   expansion_dtypes(loc, scale)[1]).marginal_log_prob(z, on_rows)


# What the 1-D marginals of TC and the dimension-wise KL may cost: they mix all N posteriors (and the
# prior's K components, for a mixture prior) in each of D dimensions, D times the joint density's work
# per sample. At most TC_POINTS points' draws, and at most TC_ELEMENTS (sample, component, dimension)
# triples: about 5 s on a 2-core CPU.
TC_POINTS = 2000
TC_ELEMENTS = 4_000_000_000


def tc_sample(draws: int, points: int, components: int, latent_dim: int, tc_points: int = TC_POINTS,
              tc_elements: int = TC_ELEMENTS) -> tuple[int, torch.Tensor | None]:
    """Which of the surgery's (draw, point) samples TC and the dimension-wise KL use: (how many draws,
    which points; None: all). As many samples as the budget allows, spread over as many points as
    possible (the points' spread is most of a subset's error): every draw of every point when they fit,
    else fewer draws of every point, else one draw of a random subset of the points."""
    rows = max(1, min(tc_points * draws, tc_elements // max(1, components * latent_dim)))
    if rows >= draws * points:
        return draws, None
    if rows >= points:
        return rows // points, None
    return 1, torch.randperm(points)[:rows]


def elbo_surgery(
    loc: torch.Tensor,
    scale: torch.Tensor,
    z: torch.Tensor,
    log_p_z: torch.Tensor,
    prior_marginals=None,
    tc_points: int = TC_POINTS,
    points: torch.Tensor | None = None,
    prior_components: int = 0,
    progress=None,
) -> dict[str, float]:
    """The surgery terms, each with its Monte-Carlo standard error (`<term>_se`), from the posteriors
    q(z|x_n) = N(loc_n, scale_n^2) of a whole split (N points), samples z from the posteriors of the
    split's points `points` (indices; all N when None), shape (R, S, D) (R draws per point) or (S, D)
    (one), and the prior's log-density at those samples. Each sample's log q(z) mixes all N posteriors:
    a subset of points is an unbiased estimate of the same full-split terms, its SE counting the
    choice of points.

    `prior_marginals(z) -> log p(z_j)`, (M, D) -> (M, D), for a prior with 1-D marginals, splits the
    marginal KL into TC + dimension-wise KL; it is evaluated at the samples of TC's share only
    (`tc_sample`: a mixture prior of `prior_components` components, K = N, costs D times its joint
    density there).
    When TC takes every sample (N <= tc_points), total_correlation + dimwise_kl = marginal_kl exactly.
    `progress(stage, done, total)` hears of the samples done in each long stage (`counting`)."""
    if z.dim() == 2:
        z, log_p_z = z.unsqueeze(0), log_p_z.unsqueeze(0)
    draws, count, d = z.shape
    n = len(loc)
    own = (loc, scale) if points is None else (loc[points], scale[points])
    log_q_z_given_x = DiagonalNormal(*own).log_prob(z)  # (R, S)
    log_q_z = aggregate_log_density(z.reshape(-1, d), loc, scale,
                                    counting(progress, f"surgery: q(z) of {n:,} points", draws * count)).view(draws, count)
    tc_draws, subset = tc_sample(draws, count, n + prior_components, d, tc_points)
    subset = torch.arange(count) if subset is None else subset
    z_tc = z[:tc_draws, subset.to(z.device)]
    log_q_z_dims = aggregate_marginal_log_density(z_tc.reshape(-1, d), loc, scale, counting(
        progress, "TC: q(z_j) in each dimension", tc_draws * len(subset))).view(tc_draws, len(subset), d)
    terms = {
        **replicate_mean_and_se("mutual_info", log_q_z_given_x - log_q_z, n),
        **replicate_mean_and_se("marginal_kl", log_q_z - log_p_z, n),
        "mutual_info_max": math.log(n),
        **replicate_mean_and_se("total_correlation", log_q_z[:tc_draws, subset.to(z.device)] - log_q_z_dims.sum(-1), n),
    }
    if prior_marginals is not None:
        log_p_z_dims = prior_marginals(z_tc.reshape(-1, d)).view(tc_draws, len(subset), d)
        terms.update(replicate_mean_and_se("dimwise_kl", (log_q_z_dims - log_p_z_dims).sum(-1), n))
    return terms


def replicate_mean_and_se(name: str, per_draw: torch.Tensor, population: int) -> dict[str, float]:
    """A split-level term from its per-point contributions at R independent draws per point, shape (R, S),
    S of the split's `population` points (all, or a random subset): {name: the mean, name_se: its
    Monte-Carlo standard error}.

    The estimand is one number for the split, so its error is the draws' and, with S < population,
    the choice of points'; never the whole split's spread. Each contribution depends on its own point's
    draw only (the aggregate q(z) is a fixed function), so this is two-stage sampling: with f = S / N,
    s_b^2 the spread of the points' means over their R draws and s_w^2 the mean spread of a point's
    draws, Var = (1 - f) s_b^2 / S + f s_w^2 / (R S). Every point (f = 1): the draws' noise alone.
    s_b^2 holds the draws' noise once already, so a subset counts it once. With R = 1 the two cannot be
    told apart: s^2 / S, an upper bound."""
    draws, points = per_draw.shape
    per_draw = per_draw.double()
    mean = float(per_draw.mean())
    if points < 2:
        return {name: mean, f"{name}_se": 0.0}
    between = per_draw.mean(0).var()
    if draws > 1:
        fraction = points / population
        variance = (1 - fraction) * between / points + fraction * per_draw.var(dim=0).mean() / (draws * points)
    else:
        variance = between / points
    return {name: mean, f"{name}_se": float(variance.sqrt())}


def active_units(loc: torch.Tensor, threshold: float = 0.01) -> int:
    """#{u : Cov_x(E_q[z_u | x]) > threshold} (Burda et al. 2015)."""
    return int((loc.var(dim=0) > threshold).sum())
