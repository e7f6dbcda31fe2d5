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

# Where the paper's random pseudo-inputs start, as fractions of the data's range: N(0.05, 0.01^2) per
# pixel, the official code's start for MNIST (utils/load_data.py).
PAPER_START_MEAN, PAPER_START_STD = 0.05, 0.01
# A pseudo-input that learns starts at least this fraction of the range inside it: the clamp passes no
# gradient at the range's ends, where a binarised training point's pixels all lie.
INSIDE = 1e-3


class VampPrior(nn.Module):
    """p(z) = sum_k w_k q(z | u_k): the encoder applied to K learned pseudo-inputs u_k.

    `encode` is the model's own encoder, handed in as a callable (and not registered as a
    submodule) so the prior shares its weights without owning them. The pseudo-inputs are values in
    the data's units, clamped to the range of `train_data` (an image's [0, 1] when it is not given),
    as the official code holds them (a hardtanh to [0, 1]): one Adam step of size lr moves a pixel by
    about lr. A pixel pushed past the range gets no gradient there, as in the official code, until
    Adam's momentum brings it back. `init=data` starts them at K training points, `random` at the
    paper's pixels near 0.05 of the range; `learn_inputs=false` keeps them where they started (with
    `init=data`: exactly K training points).
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
        width = self.high - self.low
        if init == "data":
            start = _training_points(train_data, K)
        else:
            start = self.low + width * (PAPER_START_MEAN + PAPER_START_STD * torch.randn(K, *data_shape))
        if learn_inputs:
            start = start.clamp(self.low + INSIDE * width, self.high - INSIDE * width)
        # Frozen (learn_inputs=false, with init=data): p(z) is the aggregate posterior of K training points.
        self.unclamped_inputs = nn.Parameter(start, requires_grad=learn_inputs)
        self.logits = nn.Parameter(torch.zeros(K), requires_grad=learn_weights)

    @property
    def pseudo_inputs(self) -> torch.Tensor:
        return self.unclamped_inputs.clamp(self.low, self.high)

    def forward(self) -> DiagonalGaussianMixture:
        q_z_given_u = self._encode[0](self.pseudo_inputs)
        return DiagonalGaussianMixture(self.logits, q_z_given_u.loc, q_z_given_u.scale,
                                       expansion_dtype_at(q_z_given_u.loc, q_z_given_u.scale))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """A run saved before the pseudo-inputs became clamped values held them as logits behind a
        sigmoid (`raw_inputs`): they load as the very pixels that sigmoid gave (bit for bit on [0, 1]
        data), so the run evaluates to the numbers it recorded. `load_state_dict` hands in its own copy
        of the state, which this may change."""
        logits = state_dict.pop(prefix + "raw_inputs", None)
        if logits is not None:
            unit = torch.sigmoid(logits)
            # the old pseudo-inputs' own arithmetic, including its shortcut on [0, 1]
            state_dict[prefix + "unclamped_inputs"] = (
                unit if (self.low, self.high) == (0.0, 1.0) else self.low + (self.high - self.low) * unit)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


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
