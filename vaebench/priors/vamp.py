"""The VampPrior (Tomczak & Welling 2018): p(z) = sum_k w_k q(z | u_k), the model's own encoder at K
learned pseudo-inputs u_k."""

from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import nn

from vaebench.config.checks import Count
from vaebench.distributions import DiagonalGaussianMixture, DiagonalNormal
from vaebench.distributions.mixture import expansion_dtype_at
from vaebench.errors import UserError


class VampPrior(nn.Module):
    """p(z) = sum_k w_k q(z | u_k): the encoder applied to K learned pseudo-inputs u_k.

    `encode` is the model's own encoder, handed in as a callable (and not registered as a
    submodule) so the prior shares its weights without owning them. The pseudo-inputs stay within
    the range of `train_data` (an image's [0, 1] when it is not given); `init=data` starts them at K
    training points, `random` at the paper's pixels near 0.05; `learn_inputs=false` keeps them where
    they started.
    """

    def __init__(
        self,
        encode: Callable[[torch.Tensor], DiagonalNormal],
        data_shape: tuple[int, ...],
        train_data: torch.Tensor | None = None,
        K: Count = 500,
        init: Literal["random", "data"] = "random",
        learn_weights: bool = False,
        learn_inputs: bool = True,
    ):
        super().__init__()
        self.K = K
        self._encode = [encode]  # a list hides the bound method from nn.Module's attribute scan
        self.low, self.high = _data_range(train_data)
        if init == "data":
            start = _training_points(train_data, K)
        else:
            start = 0.05 + 0.01 * torch.randn(K, *data_shape)
        unit = ((start - self.low) / (self.high - self.low)).clamp(1e-3, 1 - 1e-3)
        # Frozen (learn_inputs=false, with init=data): p(z) is the aggregate posterior of K training points.
        self.raw_inputs = nn.Parameter(torch.logit(unit), requires_grad=learn_inputs)
        self.logits = nn.Parameter(torch.zeros(K), requires_grad=learn_weights)

    @property
    def pseudo_inputs(self) -> torch.Tensor:
        unit = torch.sigmoid(self.raw_inputs)
        if (self.low, self.high) == (0.0, 1.0):  # images in [0, 1]: the same numbers, two passes fewer per step
            return unit
        return self.low + (self.high - self.low) * unit

    def forward(self) -> DiagonalGaussianMixture:
        q_z_given_u = self._encode[0](self.pseudo_inputs)
        return DiagonalGaussianMixture(self.logits, q_z_given_u.loc, q_z_given_u.scale,
                                       expansion_dtype_at(q_z_given_u.loc, q_z_given_u.scale))


def _data_range(train_data: torch.Tensor | None) -> tuple[float, float]:
    if train_data is None:
        return 0.0, 1.0
    low, high = float(train_data.min()), float(train_data.max())
    return low, (high if high > low else low + 1.0)


def _training_points(train_data: torch.Tensor | None, K: int) -> torch.Tensor:
    """K training points, drawn without labels, to start the pseudo-inputs at."""
    if train_data is None or len(train_data) < K:
        raise UserError(f"prior.K={K} with prior.init=data needs at least K training points; there are "
                        f"{0 if train_data is None else len(train_data)}.")
    return train_data[torch.randperm(len(train_data))[:K]].float().cpu()
