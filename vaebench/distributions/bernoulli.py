"""The Bernoulli likelihood of binary images, leaner than the library's."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Distribution, Independent


class IndependentBernoulli(Independent):
    """Independent(Bernoulli(logits)) over the last `event_dims` axes, whose log_prob sums the
    pixels before negating: one pass over the image (forward and backward) fewer than the library's."""

    def __init__(self, logits: torch.Tensor, event_dims: int):
        self.logits, self.reinterpreted_batch_ndims = logits, event_dims
        Distribution.__init__(self, logits.shape[:-event_dims], logits.shape[-event_dims:], validate_args=False)

    @property
    def base_dist(self) -> Bernoulli:
        return Bernoulli(logits=self.logits, validate_args=False)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) of each image; `x` may also hold the points of a batch scored at several draws each
        (sample-major: len(logits) = draws x len(x)), as importance sampling scores them: each point is
        then broadcast to its draws, never repeated in memory."""
        logits, draws = self.logits, self.logits.shape[0] // max(1, x.shape[0])
        if x.shape[0] != logits.shape[0]:
            logits = logits.view(draws, *x.shape)
        pixels = tuple(range(-self.reinterpreted_batch_ndims, 0))
        differentiated = torch.is_grad_enabled() and logits.requires_grad
        if not differentiated and logits.dim() > x.dim() and bool(((x == 0) | (x == 1)).all()):
            # A binary pixel's log-probability is log sigmoid(+-logit): one pass over the draws' logits,
            # where the general form takes four, and the draws' images are never made
            log_p = F.logsigmoid(logits * (2 * x - 1)).sum(pixels)
        else:
            log_p = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(pixels)
        return log_p.reshape(-1) if logits.dim() > x.dim() else log_p
