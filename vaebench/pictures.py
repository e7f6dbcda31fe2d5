"""What a researcher would rather look at than read, logged at every evaluation."""

from __future__ import annotations

import torch

from vaebench.priors import VampPrior

N_SHOWN = 100


@torch.no_grad()
def log_pictures(board, model, val: torch.Tensor, step: int) -> None:
    if val.dim() != 4:  # flat vectors are not images
        return
    model.eval()
    inputs = val[:10]
    board.image_grid("images/reconstructions", torch.cat([inputs, model.reconstruct(inputs)]), step, nrow=10)
    board.image_grid("images/prior_samples", model.sample(N_SHOWN), step)
    prior = model.prior
    if isinstance(prior, VampPrior):
        board.image_grid("prior/pseudo_inputs", prior.pseudo_inputs[:N_SHOWN], step)
    if hasattr(prior, "logits") and prior.logits.requires_grad:
        board.histogram("prior/weights", torch.softmax(prior.logits, 0), step)
    model.train()
