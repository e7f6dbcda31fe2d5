"""Controlled capacity increase (Burgess et al. 2018, "Understanding disentangling in β-VAE",
arXiv:1804.03599): loss = −E_q[log p(x|z)] + γ·|KL − C|, with the capacity C rising linearly from 0
to C_max nats over the first `capacity_steps` optimiser steps.

As in the paper's released setting (and common implementations), the KL in |KL − C| is the batch
mean: the constraint is on the average rate, not on each point's. The paper has no β; its weight
is γ, `objective.gamma`.
"""

from __future__ import annotations

import torch

from vaebench.config.checks import NonNegative, NonNegativeInt
from vaebench.objectives.base import Objective


def capacity_nats(step, capacity_max: float, capacity_steps: int):
    """C at `step` (a number or a 0-dim tensor): linear from 0 to `capacity_max` over `capacity_steps`."""
    if capacity_steps == 0:
        return capacity_max + 0 * step
    fraction = step / capacity_steps
    fraction = fraction.clamp(max=1.0) if isinstance(fraction, torch.Tensor) else min(fraction, 1.0)
    return capacity_max * fraction


def capacity_loss(reconstruction, kl, capacity: float | torch.Tensor, gamma: float):
    """−E[log p(x|z)] + γ·|E[KL] − C|, from the batch (or split) means."""
    return -reconstruction + gamma * (kl - capacity).abs()


class Capacity(Objective):
    beta_weighs = None
    uses_step = True

    def __init__(self, gamma: NonNegative = 1000.0, capacity_max: NonNegative = 25.0,
                 capacity_steps: NonNegativeInt = 2000):
        self.gamma, self.capacity_max, self.capacity_steps = float(gamma), float(capacity_max), int(capacity_steps)
        self.schedule_steps = self.capacity_steps  # a low KL while C is low is the point, not collapse

    def __call__(self, model, x, beta, step):
        terms = model.terms(x)
        capacity = capacity_nats(step, self.capacity_max, self.capacity_steps)
        loss = capacity_loss(terms["reconstruction"].mean(), terms["kl"].mean(), capacity, self.gamma)
        return loss, terms, {"capacity_nats": capacity}

    def split_loss(self, terms, beta, step):
        return capacity_loss(terms["reconstruction"], terms["kl"],
                             capacity_nats(step, self.capacity_max, self.capacity_steps), self.gamma)
