"""`vaebench train` with the VampPrior code's clamped Bernoulli in every training step: what that
departure does to a run (docs/fidelity.md).

    python scripts/train_clamped_bernoulli.py +experiment=eb_spectrum spectrum=0_standard seed=0

Arguments are `vaebench train`'s. The official code trains on pixels whose Bernoulli mean is clamped
to [1e-5, 1 - 1e-5] (`utils/distributions.py`): a confidently wrong pixel costs at most 11.5 nats and
passes no gradient. Here the clamp applies wherever a gradient is taken, the training steps; the
validation ELBO and the final evaluation score exactly, as every other run, so that the run's numbers
pair with an unclamped run's and the difference is the training's alone (the clamp's effect on
scoring is scripts/bernoulli_clamp.py's). The run records `trainer.note=clamped_bernoulli`; resume it
with this script too (`python scripts/train_clamped_bernoulli.py resume=RUN_DIR`).
"""

from __future__ import annotations

import torch

from bernoulli_clamp import log_bernoulli_clamped
from train_monte_carlo_kl import train_with_note
from vaebench.distributions import IndependentBernoulli

exact_log_prob = IndependentBernoulli.log_prob


def clamped_where_differentiated(self: IndependentBernoulli, x: torch.Tensor) -> torch.Tensor:
    if not (torch.is_grad_enabled() and self.logits.requires_grad):
        return exact_log_prob(self, x)
    draws = self.logits.shape[0] // x.shape[0]  # sample-major draws of each point, as IWAE's objective scores them
    return log_bernoulli_clamped(self.logits, x.repeat(draws, *[1] * (x.dim() - 1)))


def main() -> None:
    IndependentBernoulli.log_prob = clamped_where_differentiated
    train_with_note("clamped_bernoulli")


if __name__ == "__main__":
    main()
