"""torch.distributions classes whose hot methods are leaner than the library's generic ones.

Each is a subclass of the library's own (`Independent`), so `kl_divergence`, `.base_dist`, `.mean`
and sampling work as usual; each agrees with its library counterpart to float precision
(tests/test_distributions.py).
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Distribution, Independent, Normal, register_kl

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class DiagonalNormal(Independent):
    """N(loc, diag(scale^2)) over the last axis: Independent(Normal(loc, scale), 1) with
    log_prob, entropy, rsample and KL written for the diagonal case directly, a handful of
    kernels each, without the generic per-coordinate path."""

    reinterpreted_batch_ndims = 1

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor):
        # The Normal it stands for is built only when asked for (`base_dist`): not on the training step.
        if loc.shape != scale.shape:
            loc, scale = torch.broadcast_tensors(loc, scale)
        self.loc, self.scale = loc, scale
        self._last_sample: tuple[torch.Tensor, torch.Tensor] | None = None  # (z, its noise)
        Distribution.__init__(self, loc.shape[:-1], loc.shape[-1:], validate_args=False)

    @property
    def base_dist(self) -> Normal:
        return Normal(self.loc, self.scale, validate_args=False)

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        if sample_shape:
            noise = torch.randn(self._extended_shape(sample_shape), dtype=self.loc.dtype, device=self.loc.device)
        else:  # the training step's case, without the shape arithmetic
            noise = torch.randn_like(self.loc)
        z = self.loc + self.scale * noise
        self._last_sample = (z, noise)
        return z

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        if self._last_sample is not None and z is self._last_sample[0]:
            # At its own reparameterised sample (the Monte-Carlo KL), (z - loc) / scale is the noise
            # drawn: the same value and the same total gradient, without the division and its backward.
            standardised = self._last_sample[1]
        else:
            standardised = (z - self.loc) / self.scale
        return -0.5 * standardised.pow(2).sum(-1) - self.scale.log().sum(-1) - z.shape[-1] * HALF_LOG_2PI

    def entropy(self) -> torch.Tensor:
        return self.scale.log().sum(-1) + self.loc.shape[-1] * (0.5 + HALF_LOG_2PI)


class IsotropicNormal(DiagonalNormal):
    """N(0, sigma^2 I) with sigma a number: the standard prior, with log_prob and the KL from a
    DiagonalNormal written for it (no loc to subtract, no scale to divide by per coordinate)."""

    def __init__(self, zeros: torch.Tensor, scale: torch.Tensor, sigma: float):
        """`zeros` and `scale` (all equal to `sigma`) are the (D,) loc and scale; `sigma` the number."""
        super().__init__(zeros, scale)
        self.sigma = float(sigma)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return z.pow(2).sum(-1) * (-0.5 / self.sigma**2) - z.shape[-1] * (math.log(self.sigma) + HALF_LOG_2PI)


@register_kl(DiagonalNormal, IsotropicNormal)
def _kl_diagonal_isotropic(q: DiagonalNormal, p: IsotropicNormal) -> torch.Tensor:
    per_point = ((q.loc.pow(2) + q.scale.pow(2)) * (0.5 / p.sigma**2) - q.scale.log()).sum(-1)
    return per_point + q.loc.shape[-1] * (math.log(p.sigma) - 0.5)


@register_kl(DiagonalNormal, DiagonalNormal)
def _kl_diagonal_normals(q: DiagonalNormal, p: DiagonalNormal) -> torch.Tensor:
    variance_ratio = (q.scale / p.scale).pow(2)
    mean_term = ((q.loc - p.loc) / p.scale).pow(2)
    return 0.5 * (variance_ratio + mean_term - 1 - variance_ratio.log()).sum(-1)
