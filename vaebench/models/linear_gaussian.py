"""A VAE whose exact posterior is known, a correlated Gaussian: the known answer of the inference gaps
(tests/metrics/test_inference_gaps.py, scripts/gap_convergence_check.py).

p(z) = N(0, c^2 I) and p(x|z) = N(W z + b, noise^2 I), so log p(x) = log N(x; b, c^2 W W^T + noise^2 I)
and p(z|x) = N(m(x), L^-1) with precision L = I / c^2 + W^T W / noise^2 and m(x) = L^-1 W^T (x - b) / noise^2.
For a diagonal Gaussian q = N(mu, diag s^2),

    KL(q || p(z|x)) = 1/2 [sum_i L_ii s_i^2 + (mu - m)^T L (mu - m) - k - sum_i log s_i^2 - log det L],

least at mu = m, s_i^2 = 1 / L_ii: the best diagonal Gaussian's approximation gap is
1/2 (sum_i log L_ii - log det L) at every x, and ELBO(q) = log p(x) - KL(q || p(z|x)) for any q.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vaebench.distributions import DiagonalNormal, IsotropicNormal
from vaebench.models.nets import Likelihood
from vaebench.models.vae import VAE


class AffineEncoder(nn.Module):
    """q(z|x) = N(A x + c, diag s^2), s the same at every x."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, scale: torch.Tensor):
        super().__init__()
        self.register_buffer("weight", weight.float())
        self.register_buffer("bias", bias.float())
        self.register_buffer("scale", scale.float())

    def forward(self, x: torch.Tensor) -> DiagonalNormal:
        return DiagonalNormal(x @ self.weight.T + self.bias, self.scale.expand(len(x), -1))


class ScaledStandardNormal(nn.Module):
    """p(z) = N(0, c^2 I), as the standard prior with sigma = c gives it; kept here so that the models do
    not import the priors, which sit above them."""

    def __init__(self, latents: int, scale: float):
        super().__init__()
        self.sigma = float(scale)
        self.register_buffer("loc", torch.zeros(latents))
        self.register_buffer("scale", torch.full((latents,), self.sigma))

    def forward(self) -> IsotropicNormal:
        return IsotropicNormal(self.loc, self.scale, self.sigma)


class LinearGaussianVAE(VAE):
    """`latents` latent dimensions on twice as many data dimensions. The decoder's columns share a common
    part (`correlation` of their variance) and are scaled by `strength` against the noise, so the
    posterior is strongly correlated; the prior's scale c puts the best diagonal Gaussian's s.d.s,
    1 / sqrt(L_ii), at a median of `posterior_sd`. The encoder is amortised and deliberately off:
    0.8 m(x) plus half a marginal posterior s.d. as its mean, and as its scale the geometric mean of the
    marginal s.d. sqrt((L^-1)_ii) and the best 1 / sqrt(L_ii) (too wide, as the marginal is).
    `points` draws of x from p(x) come with it."""

    def __init__(self, latents: int, posterior_sd: float, correlation: float = 0.8, strength: float = 20.0,
                 noise: float = 0.1, points: int = 100, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        data = 2 * latents
        columns = torch.randn(data, latents, generator=generator, dtype=torch.float64)
        common = torch.randn(data, 1, generator=generator, dtype=torch.float64)
        w_unit = (math.sqrt(1 - correlation) * columns + math.sqrt(correlation) * common) / math.sqrt(data)
        precision_unit = torch.eye(latents, dtype=torch.float64) + strength**2 * w_unit.T @ w_unit
        prior_scale = posterior_sd / float(precision_unit.diagonal().rsqrt().median())
        likelihood = Likelihood("gaussian", (data,), "global")
        with torch.no_grad():
            likelihood.raw_scale.fill_(math.log(math.expm1(noise - 1e-3)))  # softplus(raw) + 1e-3
        noise = float(nn.functional.softplus(likelihood.raw_scale.detach()) + 1e-3)  # in float32, as the model sees it
        w = noise * strength * w_unit / prior_scale  # z = prior_scale * z_unit
        self.precision = torch.eye(latents, dtype=torch.float64) / prior_scale**2 + w.T @ w / noise**2
        self.covariance = torch.linalg.inv(self.precision)
        self.to_mean = self.covariance @ w.T / noise**2
        bias = torch.randn(data, generator=generator, dtype=torch.float64)
        marginal_sd = self.covariance.diagonal().sqrt()
        between = (marginal_sd * self.precision.diagonal().rsqrt()).sqrt()
        encoder = AffineEncoder(0.8 * self.to_mean, -0.8 * self.to_mean @ bias + 0.5 * marginal_sd, between)
        decoder = nn.Linear(latents, data)
        with torch.no_grad():
            decoder.weight.copy_(w), decoder.bias.copy_(bias)
        super().__init__(encoder, decoder, likelihood, latents)
        self.prior = ScaledStandardNormal(latents, prior_scale)
        self.bias = bias
        marginal = torch.distributions.MultivariateNormal(bias, w @ w.T * prior_scale**2 + noise**2 * torch.eye(data))
        x = marginal.loc + torch.randn(points, data, generator=generator, dtype=torch.float64) @ marginal.scale_tril.T
        self.x, self.log_px = x.float(), marginal.log_prob(x)

    def posterior_mean(self, x: torch.Tensor) -> torch.Tensor:
        return (x.double() - self.bias) @ self.to_mean.T

    def best_diagonal_gap(self) -> float:
        """1/2 (sum_i log L_ii - log det L): KL(q* || p(z|x)), the same at every x."""
        return 0.5 * float(self.precision.diagonal().log().sum() - torch.linalg.slogdet(self.precision)[1])

    def kl_to_posterior(self, x: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """KL(N(loc, diag scale^2) || p(z|x)) per point, exactly (float64)."""
        error = loc.double() - self.posterior_mean(x)
        variance = scale.double().pow(2)
        return 0.5 * (variance @ self.precision.diagonal() + ((error @ self.precision) * error).sum(1)
                      - len(self.precision) - variance.log().sum(1) - torch.linalg.slogdet(self.precision)[1])

