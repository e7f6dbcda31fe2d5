"""The per-step sums [loss, *terms, beta] since the last log, kept on the device, and their fold into
the epoch's sums: the host reads them once per log interval, where it also checks them for NaN/inf."""

from __future__ import annotations

import torch


class StepSums:
    def __init__(self, step: int):
        self.first_step, self.values = step + 1, []  # steps are counted from 1

    def add(self, values: torch.Tensor) -> None:
        self.values.append(values)

    def rows(self) -> torch.Tensor:
        return torch.stack(self.values)

    def fold_into(self, epoch_sums: torch.Tensor | None, grad_norm: torch.Tensor | None) -> tuple[torch.Tensor, int | None]:
        """The epoch sums [*term sums, grad-norm sum, grad-norm count] with these steps added, one step at a
        time as the steps came, so a resumed run sums in the same order as a straight one; and the first
        step whose loss (or the measured gradient norm) is NaN/inf, None when all are finite."""
        rows = self.rows()
        if epoch_sums is None:
            epoch_sums = rows.new_zeros(rows.shape[1] + 2)
        for row in rows:
            epoch_sums[:-2] += row
        checked = rows[:, 0]
        if grad_norm is not None:
            epoch_sums[-2:] += torch.stack([grad_norm.float(), grad_norm.new_ones((), dtype=torch.float)])
            checked = torch.cat([checked, grad_norm.float().reshape(1)])
        finite = torch.isfinite(checked)
        if bool(finite.all()):  # the host waits on the device here, once per log interval
            return epoch_sums, None
        return epoch_sums, self.first_step + min(int(torch.nonzero(~finite)[0]), len(rows) - 1)
