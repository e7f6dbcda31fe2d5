"""What every objective shares: the protocol (see the package's docstring) and the model's forward
pass with its latent layers."""

from __future__ import annotations

import torch

from vaebench.metrics import elbo


class Objective:
    """The protocol; subclasses override `__call__` and, where they can, `split_loss`."""

    beta_weighs: str | None = "the KL"   # what β weighs, in words; None: this objective has no β
    prior_needs: str | None = None       # "marginals" | "factorised" | None
    uses_step: bool = False              # whether __call__ reads `step`
    schedule_steps: int = 0              # steps until the objective is at its full setting (capacity's ramp)

    def __call__(self, model, x: torch.Tensor, beta: torch.Tensor, step: torch.Tensor | None):
        raise NotImplementedError

    def split_loss(self, terms: dict, beta: float, step: int):
        """The loss on a split's mean terms, or None where it is not a function of them."""
        return None


def elbo_pass(model, x: torch.Tensor, p_z=None):
    """`model.terms(x)` that also returns the latent layers {name: (q, p, z)}, for an objective that
    needs the posterior and the sample (per-dimension KL, the aggregate posterior)."""
    latents, layers = model.latents(x, model.prior() if p_z is None else p_z)
    return elbo.elbo_terms(model.decode(latents).log_prob(x), layers), layers


def top_layer(layers: dict):
    """(name, (q, p, z)) of the top latent layer, the one the configured prior acts on."""
    return next(iter(layers.items()))


def other_layers_kl(terms: dict, layers: dict) -> torch.Tensor | float:
    """The KL of the latent layers below the top one (the two-level model's z1), per point; 0 for a
    one-layer model. Objectives that reshape the top layer's KL count these in full, as the ELBO does."""
    if len(layers) == 1:
        return 0.0
    name, _ = top_layer(layers)
    return terms["kl"] - terms[f"kl_{name}"]
