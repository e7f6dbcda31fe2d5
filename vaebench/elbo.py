"""The ELBO terms, per data point, in nats: one place for every model and prior.

A model hands over log p(x|z) at a sample z ~ q(z|x) and, for each latent layer, the triple
(q, p, z): the posterior, the prior (or conditional prior) and the sample. Then

    elbo = reconstruction - kl = log_joint + entropy,

with `kl` analytic where torch.distributions knows it and Monte-Carlo (log q - log p) otherwise.
The identity `elbo = log_joint + entropy` holds in expectation; each side is unbiased.
"""

from __future__ import annotations

import functools
import math
import operator

import torch
from torch.distributions import Distribution, Independent, Normal, kl_divergence

Layer = tuple[Distribution, Distribution, torch.Tensor]  # (q, p, z sampled from q)


_HAS_ANALYTIC_KL: dict[tuple, bool] = {}


def kl_q_p(q: Distribution, p: Distribution, z: torch.Tensor, log_pz: torch.Tensor | None = None) -> torch.Tensor:
    """KL(q || p) per point: analytic when torch.distributions knows it, else the one-sample
    estimate log q(z) - log p(z) (pass `log_pz` when it is already computed)."""
    key = (_kind(q), _kind(p))
    if _HAS_ANALYTIC_KL.get(key, True):
        try:
            kl = kl_divergence(q, p)
            _HAS_ANALYTIC_KL[key] = True
            return kl
        except NotImplementedError:
            _HAS_ANALYTIC_KL[key] = False
    return q.log_prob(z) - (p.log_prob(z) if log_pz is None else log_pz)


def _kind(d: Distribution) -> tuple[type, type]:
    """What kl_divergence's answer depends on: the class, and the class of the base distribution that
    a wrapper (Independent, TransformedDistribution) holds. vaebench's lean classes build their base
    only on demand (`distributions.py`), so it is looked up among the attributes, not built."""
    return type(d), type(vars(d).get("base_dist"))


def elbo_terms(log_px_given_z: torch.Tensor, layers: dict[str, Layer]) -> dict[str, torch.Tensor]:
    """All per-point terms of ELBO.md from one reparameterised sample.

    With several latent layers, `kl_<name>` gives each layer's share of `kl`.
    """
    log_prior = {name: p.log_prob(z) for name, (q, p, z) in layers.items()}
    kl_by_layer = {name: kl_q_p(q, p, z, log_prior[name]) for name, (q, p, z) in layers.items()}
    kl = _total(kl_by_layer.values())
    terms = {
        "elbo": log_px_given_z - kl,
        "reconstruction": log_px_given_z,
        "kl": kl,
        "log_joint": _total([log_px_given_z, *log_prior.values()]),
        "entropy": _total(q.entropy() for q, p, z in layers.values()),
    }
    if len(layers) > 1:
        terms.update({f"kl_{name}": value for name, value in kl_by_layer.items()})
    return terms


def _total(tensors) -> torch.Tensor:
    """Sum of tensors without builtin sum's leading 0 + t, one more kernel (and backward node) per call."""
    return functools.reduce(operator.add, tensors)


def beta_loss(terms: dict[str, torch.Tensor], beta: float | torch.Tensor) -> torch.Tensor:
    """The beta-VAE objective per point: -E_q[log p(x|z)] + beta * KL."""
    return -terms["reconstruction"] + beta * terms["kl"]


def warmup_beta(beta: float, epoch_progress: float, warmup_epochs: int) -> float:
    """beta rises linearly from 0 to `beta` over the first `warmup_epochs` epochs (VampPrior paper)."""
    if warmup_epochs <= 0:
        return beta
    return beta * min(1.0, epoch_progress / warmup_epochs)


def kl_per_dim(q: Distribution, p: Distribution, z: torch.Tensor) -> torch.Tensor | None:
    """KL(q(z_j|x) || p(z_j)) for each latent dimension j, per point: shape (batch, D).

    Analytic for a factorised Gaussian prior; otherwise one-sample Monte-Carlo against the prior's
    1-D marginals. None when the prior offers no 1-D marginals."""
    q_base = q.base_dist if isinstance(q, Independent) else q
    if isinstance(p, Independent) and isinstance(p.base_dist, Normal):
        return kl_divergence(q_base, p.base_dist)
    log_p_dims = marginal_log_prob(p, z)
    return None if log_p_dims is None else q_base.log_prob(z) - log_p_dims


def marginal_log_prob(p: Distribution, z: torch.Tensor) -> torch.Tensor | None:
    """log p(z_j) of each coordinate under the prior's 1-D marginals, shape (*batch, D): a factorised
    prior's base distribution, or the prior's own `marginal_log_prob` (the mixtures). None when it
    offers neither."""
    if is_factorised(p):
        return p.base_dist.log_prob(z)
    if hasattr(p, "marginal_log_prob"):
        return p.marginal_log_prob(z)
    return None


def is_factorised(p: Distribution) -> bool:
    """p(z) = prod_j p(z_j), with the p(z_j) its base distribution."""
    return isinstance(p, Independent) and p.reinterpreted_batch_ndims == 1


def has_marginals(p: Distribution) -> bool:
    return is_factorised(p) or hasattr(p, "marginal_log_prob")


def bits_per_dim(nats: torch.Tensor | float, dims: int) -> torch.Tensor | float:
    return nats / (dims * math.log(2))
