"""What a training step minimises: one module per objective, as conf/objective/ has one file each; a
config entry names each by its home here (`_target_: vaebench.objectives.ELBO`).

An objective is a callable built from its config entry (`_target_`, like a prior or a model) and
called at every step as

    loss, terms, quantities = objective(model, x, beta, step)

- `loss`: what the optimiser minimises, per point (shape (batch,)) or already the batch mean (a
  scalar, for objectives defined on batch averages: capacity, free bits);
- `terms`: the true per-point ELBO terms of `vaebench.metrics.elbo.elbo_terms` (`elbo`, `reconstruction`,
  `kl`, ...), whatever the objective optimises, so every run logs the same ELBO;
- `quantities`: the objective's own named values (per point or scalar), logged as
  `train/objective/<name>`.

`beta` is the current β (warm-up included) as a 0-dim device tensor, the weight on the term the
objective's paper calls β (`beta_weighs` says which; None where its paper has no β). `step` is
the number of optimiser steps taken before this one as a 0-dim device tensor, filled only for an
objective with `uses_step = True` (else None), so that the default step does no extra work.

`schedule_steps` says how many steps an objective that starts by holding the KL down (capacity)
takes to reach its full setting: the collapse alarm waits for them. `prior_needs` ("marginals" or "factorised") is checked against the built prior before training
(`vaebench.config.components.build_objective`). `split_loss(terms, beta, step)` gives the loss on a
split's mean terms (`val/loss`) where the objective is a function of them, else None.
"""

from vaebench.objectives.base import Objective, elbo_pass, top_layer
from vaebench.objectives.beta_tc import BetaTC
from vaebench.objectives.capacity import Capacity
from vaebench.objectives.elbo import ELBO
from vaebench.objectives.free_bits import FreeBits
from vaebench.objectives.iwae import IWAE

__all__ = ["BetaTC", "Capacity", "ELBO", "FreeBits", "IWAE", "Objective", "elbo_pass", "top_layer"]
