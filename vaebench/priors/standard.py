"""The standard prior N(0, sigma^2 I): an `IsotropicNormal`, so KL(q || p) is analytic."""

from __future__ import annotations

import logging
from typing import Annotated

import torch
from torch import nn

from vaebench.config.checks import Count, Positive, Unused
from vaebench.distributions import IsotropicNormal

log = logging.getLogger(__name__)


class StandardPrior(nn.Module):
    def __init__(self, latent_dim: int, sigma: Positive = 1.0, K: Annotated[Count | None, Unused()] = None):
        """`K` is accepted, and ignored, so that one sweep grid can set prior.K for every prior."""
        super().__init__()
        if K is not None:
            log.info(f"prior.K={K} is ignored by the standard prior, which has no components.")
        self.sigma = float(sigma)
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.full((latent_dim,), self.sigma))

    def forward(self) -> IsotropicNormal:
        return IsotropicNormal(self.loc, self.scale, self.sigma)
