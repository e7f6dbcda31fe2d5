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
from torch.distributions import Distribution, Independent, kl_divergence

Layer = tuple[Distribution, Distribution, torch.Tensor]  # (q, p, z sampled from q)


# (kind of q, kind of p) -> the KL function torch.distributions has registered for the pair, None for none.
_KL_FUNCTIONS: dict[tuple, object] = {}


def analytic_kl(q: Distribution, p: Distribution) -> torch.Tensor | None:
    """KL(q || p) per point where torch.distributions knows it in closed form, else None. The registered
    function is looked up once per pair of kinds and then called directly: torch's own lookup (its
    `min` over candidate types) is more work per step, and torch.compile cannot trace it."""
    key = (_kind(q), _kind(p))
    if key not in _KL_FUNCTIONS:
        _KL_FUNCTIONS[key] = _registered_kl(q, p)
    kl = _KL_FUNCTIONS[key]
    return None if kl is None else kl(q, p)


def _registered_kl(q: Distribution, p: Distribution):
    dispatch = getattr(torch.distributions.kl, "_dispatch_kl", None)  # torch's own table, where it has one
    function = dispatch(type(q), type(p)) if dispatch is not None else kl_divergence
    if function is NotImplemented:
        return None
    try:
        function(q, p)  # a wrapper's KL (Independent) may still find none for its base distributions
    except NotImplementedError:
        return None
    return function


def kl_q_p(q: Distribution, p: Distribution, z: torch.Tensor, log_pz: torch.Tensor | None = None) -> torch.Tensor:
    """KL(q || p) per point: analytic when torch.distributions knows it, else the one-sample
    estimate log q(z) - log p(z) (pass `log_pz` when it is already computed)."""
    kl = analytic_kl(q, p)
    if kl is not None:
        return kl
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
    log_prior, kl_by_layer = {}, {}
    for name, (q, p, z) in layers.items():
        kl_by_layer[name] = analytic_kl(q, p)
        if kl_by_layer[name] is None:  # Monte-Carlo: log p(z) is part of the KL, with its gradient
            log_prior[name] = p.log_prob(z)
            kl_by_layer[name] = q.log_prob(z) - log_prior[name]
    kl = _total(kl_by_layer.values())
    with torch.no_grad():  # logged, never differentiated: no graph to build for them at every step
        for name, (q, p, z) in layers.items():
            if name not in log_prior:
                log_prior[name] = p.log_prob(z)
        log_joint = _total([log_px_given_z, *log_prior.values()])
        entropy = _total(q.entropy() for q, p, z in layers.values())
    terms = {
        "elbo": log_px_given_z - kl,
        "reconstruction": log_px_given_z,
        "kl": kl,
        "log_joint": log_joint,
        "entropy": entropy,
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


def prior_marginal_log_prob(p: Distribution, z: torch.Tensor) -> torch.Tensor | None:
    """log p(z_j) for each coordinate of z under the prior's 1-D marginals, shape z.shape; None when the
    prior offers none. A prior offers them with a `marginal_log_prob(z)` method (the mixtures), or as
    an Independent over one axis whose base distribution scores each coordinate (Independent(Normal),
    Independent(Laplace), Independent(StudentT), ...)."""
    if hasattr(p, "marginal_log_prob"):
        return p.marginal_log_prob(z)
    if isinstance(p, Independent) and p.reinterpreted_batch_ndims == 1:
        log_p_dims = p.base_dist.log_prob(z)
        if log_p_dims.shape == z.shape:
            return log_p_dims
    return None


def kl_per_dim(q: Distribution, p: Distribution, z: torch.Tensor) -> torch.Tensor | None:
    """KL(q(z_j|x) || p(z_j)) for each latent dimension j, per point: shape (batch, D); None when the
    prior has no 1-D marginals (`prior_marginal_log_prob`).

    Analytic where torch.distributions knows the 1-D KL (a Gaussian prior); otherwise the one-sample
    Monte-Carlo log q(z_j|x) - log p(z_j) at the sample z."""
    q_base = q.base_dist if isinstance(q, Independent) else q
    p_base = p.base_dist if isinstance(p, Independent) and p.reinterpreted_batch_ndims == 1 else None
    if p_base is not None:
        try:
            kl = kl_divergence(q_base, p_base)
            if kl.shape[-1:] == z.shape[-1:]:
                return kl.expand(z.shape)
        except NotImplementedError:
            pass
    log_p_dims = prior_marginal_log_prob(p, z)
    if log_p_dims is None:
        return None
    return q_base.log_prob(z) - log_p_dims


def is_factorised(p: Distribution) -> bool:
    """p(z) = prod_j p(z_j), with the p(z_j) its base distribution."""
    return isinstance(p, Independent) and p.reinterpreted_batch_ndims == 1


def has_marginals(p: Distribution) -> bool:
    """Whether `prior_marginal_log_prob` can answer for this prior."""
    return is_factorised(p) or hasattr(p, "marginal_log_prob")


# Levels of 8-bit data: a continuous density over [0, 1] becomes a probability for each of 256 bins
# of width 1/256 by multiplying it by the bin width, once per dimension.
DATA_LEVELS = 256


def bits_per_dim(nats: torch.Tensor | float, dims: int, levels: int | None = None) -> torch.Tensor | float:
    """-log p(x) per dimension in bits, from `nats` = -log p(x) (or -ELBO) of one point. With `levels`, p is
    a density on data in [0, 1] and the figure is that of the discretised data, whose bins of width
    1/levels have probability ~ density * bin width: (nats + dims * log levels) / (dims * log 2), what
    papers quote for 8-bit images. Without, `nats` is already a probability's (Bernoulli pixels)."""
    if levels is not None:
        nats = nats + dims * math.log(levels)
    return nats / (dims * math.log(2))
