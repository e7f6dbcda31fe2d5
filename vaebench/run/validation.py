"""The evaluation schedule at an epoch's end: the training epoch's per-point means, and every
`trainer.eval_every` epochs the validation split's terms (its loss where the objective is a function
of them, the surgery every `eval.surgery_every` evaluations) and the training split's per-dimension KL."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vaebench.metrics import elbo
from vaebench.metrics.diagnostics import split_diagnostics
from vaebench.metrics.evaluation import data_levels, split_terms


def epoch_means(names: list[str], sums: list[float], n: int, lr: float, seconds: float, samples: int,
                model, data_shape: tuple[int, ...]) -> dict[str, float]:
    """Per-point means over the epoch's `n` points from the sums [*terms, grad-norm sum, grad-norm count]:
    a short last batch counts by its points. beta is the mean of the steps' beta over the points, so
    loss = -reconstruction + beta * kl when beta is constant. `samples`: the points this process
    trained on in the epoch (fewer than n after a resume mid-epoch), over `seconds`."""
    *term_sums, grad_norm_sum, grad_norm_steps = sums
    means = {name: total / n for name, total in zip(names, term_sums)}
    means["grad_norm"] = grad_norm_sum / max(grad_norm_steps, 1)
    means["lr"] = lr
    means["samples_per_s"] = samples / max(seconds, 1e-9)
    means["elbo_bits_per_dim"] = elbo.bits_per_dim(-means["elbo"], math.prod(data_shape), data_levels(model))
    return means


def validation_terms(model, data, objective, eval_batch_size: int, next_beta: float, step: int,
                     with_surgery: bool, surgery_points: int | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """The validation split's terms (with `loss` where the objective is a function of them, at the
    beta the next step trains with, and the surgery when `with_surgery`), and the per-dimension KL of
    a fixed slice of the training set (None for a prior without 1-D marginals): the per-dimension KL
    is not summed during training."""
    probe = split_terms(model, data.train[:eval_batch_size], eval_batch_size, binarize=data.dynamic_binarize)
    val = split_terms(model, data.val, eval_batch_size)
    split_loss = getattr(objective, "split_loss", None)
    val_loss = split_loss(val, next_beta, step) if split_loss else None
    if val_loss is not None:  # None: the objective is no function of the split's means (IWAE, beta-TC)
        val["loss"] = val_loss
    if with_surgery:
        # One draw per point for the curves (their SE says how much that is); the final metrics
        # and `vaebench eval` take eval.surgery_samples.
        val.update(split_diagnostics(model, data.val, eval_batch_size, surgery_samples=1, surgery_points=surgery_points))
    return val, probe.get("kl_per_dim")


@dataclass(frozen=True)
class EvaluationSchedule:
    """Which epochs end with a validation evaluation (every `eval_every`-th and the last) and which of
    those include the surgery (every `surgery_every`-th of them; 0: none)."""

    eval_every: int
    surgery_every: int
    epochs: int
    eval_batch_size: int
    final_beta: float
    warmup_epochs: int
    surgery_points: int | None = None

    @classmethod
    def of(cls, cfg) -> "EvaluationSchedule":
        t = cfg.trainer
        return cls(int(t.eval_every), int(cfg.eval.surgery_every), int(t.epochs), int(cfg.eval.batch_size),
                   float(cfg.beta), int(t.kl_warmup_epochs), cfg.eval.get("surgery_points"))

    def due(self, epoch: int) -> bool:
        return epoch % self.eval_every == 0 or epoch == self.epochs

    def evaluate(self, model, data, objective, board, epoch: int, step: int) -> dict[str, torch.Tensor]:
        """The validation terms of the model as it stands after `epoch`, logged to `board` at `step`."""
        with_surgery = bool(self.surgery_every) and (epoch // self.eval_every) % self.surgery_every == 0
        # The beta the next step trains with: the model as it now stands.
        next_beta = elbo.warmup_beta(self.final_beta, epoch, self.warmup_epochs)
        val, kl_per_dim = validation_terms(model, data, objective, self.eval_batch_size, next_beta, step, with_surgery,
                                           self.surgery_points)
        if kl_per_dim is not None:  # absent for a prior without 1-D marginals
            board.histogram("train/kl_per_dim", kl_per_dim, step)
        # log N is no curve; the standard errors are in metrics.json and the final table
        board.scalars("val", {k: v for k, v in val.items() if k != "mutual_info_max" and not k.endswith("_se")}, step)
        return val
