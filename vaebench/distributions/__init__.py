"""Probability densities as torch.distributions classes, leaner or faster than the library's generic
ones where a training step or an evaluation spends its time: the ground floor that models, priors
and metrics share. Each agrees with its library counterpart to float precision."""

from vaebench.distributions.bernoulli import IndependentBernoulli
from vaebench.distributions.mixture import FLOAT32_EPS, DiagonalGaussianMixture, float32_rounding_nats
from vaebench.distributions.normal import DiagonalNormal, IsotropicNormal

__all__ = ["DiagonalGaussianMixture", "DiagonalNormal", "FLOAT32_EPS", "IndependentBernoulli", "IsotropicNormal",
           "float32_rounding_nats"]
