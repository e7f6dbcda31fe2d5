"""Priors p(z), one module per family, as conf/prior/ has one file each. A prior is an nn.Module
holding learnable parameters; calling it returns p(z) as a torch.distributions object for the
current step, so the VampPrior encodes its pseudo-inputs once per call, not once per sample.

- `StandardPrior` (standard.py): N(0, sigma^2 I), an `IsotropicNormal`: KL(q || p) is analytic.
- `MixturePrior` (mog.py): K learned diagonal Gaussians with softmax weights.
- `VampPrior` (vamp.py): p(z) = sum_k w_k q(z | u_k) with K learned pseudo-inputs (Tomczak & Welling 2018).
- `AggregatePosteriorPrior` (aggregate.py): p(z) = 1/N sum_n q(z | x_n) over the whole training split,
  the end of the empirical-Bayes axis (the VampPrior with K = N pseudo-inputs fixed at the data).

A config entry names each by its home here (`_target_: vaebench.priors.VampPrior`).
"""

from vaebench.priors.aggregate import AggregatePosteriorPrior
from vaebench.priors.mog import MixturePrior
from vaebench.priors.standard import StandardPrior
from vaebench.priors.vamp import VampPrior

__all__ = ["AggregatePosteriorPrior", "MixturePrior", "StandardPrior", "VampPrior"]
