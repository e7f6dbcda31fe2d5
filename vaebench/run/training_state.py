"""What a checkpoint holds of a trainer, and putting it back: the exact resume, also of a checkpoint
that an earlier vaebench wrote in an older layout."""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import torch
from omegaconf import OmegaConf

from vaebench.metrics import elbo
from vaebench.run import checkpoint

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """Where the run is: everything besides weights and RNG that an exact resume needs."""

    epoch: int = 0                 # completed epochs
    step: int = 0                  # optimiser steps taken
    batch_in_epoch: int = 0        # batches of the current epoch already taken
    best_val_elbo: float = -math.inf
    best_epoch: int = 0
    wall_time_s: float = 0.0
    stopped_early: bool = False    # trainer.patience ended the training before trainer.epochs


def patience_counts_from(progress: Progress, warmup_epochs: int) -> int:
    """The epoch after which epochs without a better validation ELBO count towards trainer.patience: the
    best one, or the KL warm-up's last where it ends later. As the VampPrior paper's code, whose look-ahead
    counts no epoch of the warm-up: a run is not stopped before its beta has reached its final value."""
    return max(progress.best_epoch, warmup_epochs)


def stop_reason(progress: Progress, epochs: int, patience: int, warmup_epochs: int = 0) -> str:
    """Why the training ended, in words: early stopping, or the budget with how the validation ELBO
    stood at its end."""
    if progress.stopped_early:
        if patience_counts_from(progress, warmup_epochs) > progress.best_epoch:
            return (f"early stop at epoch {progress.epoch}: no better validation ELBO for {patience} epochs "
                    f"(trainer.patience) after the KL warm-up ended, at epoch {warmup_epochs} "
                    f"(trainer.kl_warmup_epochs); the best at epoch {progress.best_epoch}")
        return (f"early stop at epoch {progress.epoch}: no better validation ELBO for {patience} epochs "
                f"(trainer.patience) after the best, at epoch {progress.best_epoch}")
    since = progress.epoch - progress.best_epoch
    standing = ("the validation ELBO was still improving at the last epoch" if since == 0 else
                f"no better validation ELBO in the last {since} epochs")
    return f"reached trainer.epochs={epochs}; {standing}" + ("" if patience else " (trainer.patience=0: no early stop)")


def training_state(trainer) -> dict:
    """Everything an exact resume needs: weights, optimiser, progress, the epoch's order and sums so far,
    every random stream, and the config."""
    return {
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "epoch": trainer.progress.epoch,
        "step": trainer.progress.step,
        "progress": asdict(trainer.progress),
        "epoch_order": None if trainer.epoch_order is None else trainer.epoch_order.cpu(),
        "epoch_sums": None if trainer.epoch_sums is None else trainer.epoch_sums.cpu(),
        "term_names": trainer.term_names,
        "order_generator": trainer.order_generator.get_state(),
        "rng": checkpoint.rng_state(),
        "config": OmegaConf.to_container(trainer.cfg, resolve=True),
        "compile": trainer.step.compile_record(),
        **({"threads": trainer.cpu_share.threads} if trainer.cpu_share is not None else {}),
        **trainer.extra_state,
    }


def restore_training_state(trainer, state: dict) -> None:
    """The trainer as `state` left it, also a state saved by an earlier vaebench's layout."""
    converted = [name for name, _ in trainer.model.named_parameters() if name not in state["model"]]
    trainer.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(_without_moments_of(trainer, converted, state["optimizer"]))
    trainer.progress = Progress(**state["progress"])
    order, sums, names = state["epoch_order"], state["epoch_sums"], state["term_names"]
    if names and "grad_norm" in names:  # saved before the grad norm moved to the end of the sums
        i = names.index("grad_norm")
        names = names[:i] + names[i + 1:]
        if sums is not None:  # the old layout measured the norm at every step
            steps = torch.tensor([float(trainer.progress.batch_in_epoch)], dtype=sums.dtype)
            sums = torch.cat([sums[:i], sums[i + 1:], sums[i:i + 1], steps])
    if names and "beta" not in names:  # saved before the sums became per-point sums with beta
        names, sums = _per_point_sums(trainer, names, sums)
    trainer.epoch_order = None if order is None else order.to(trainer.device)
    trainer.epoch_sums = None if sums is None else sums.to(trainer.device)
    trainer.term_names = names
    trainer.order_generator.set_state(state["order_generator"])
    checkpoint.set_rng_state(state["rng"])
    trainer.saved_step = trainer.progress.step
    trainer.step.keep_decision(state.get("compile"))


def _without_moments_of(trainer, converted: list[str], saved: dict) -> dict:
    """The saved optimiser state less the moments of parameters that an earlier vaebench saved in another
    form, which their module converted on load (the VampPrior's pseudo-inputs, once logits): Adam's
    moments are in the old form's units, so those parameters' Adam starts afresh. Said in the log."""
    if not converted:
        return saved
    index = {id(p): i for i, p in enumerate(p for group in trainer.optimizer.param_groups for p in group["params"])}
    named = dict(trainer.model.named_parameters())
    stale = {index[id(named[name])]: name for name in converted if index.get(id(named[name])) in saved["state"]}
    if stale:
        one = len(stale) == 1
        log.info(f"{', '.join(stale.values())}: an earlier vaebench saved {'it' if one else 'them'} in another form, "
                 f"converted as the model loaded; {'its' if one else 'their'} Adam moments are in the old form's units "
                 f"and cannot carry over, so {'its' if one else 'their'} Adam starts afresh at this resume (every other "
                 "parameter's goes on).")
    return {**saved, "state": {i: s for i, s in saved["state"].items() if i not in stale}}


def _per_point_sums(trainer, names: list[str], sums: torch.Tensor | None):
    """The old layout's sums of batch means, [*terms, grad-norm sum, count], as per-point sums with beta:
    each batch taken so far was a full one (a short last batch ends its epoch before any save)."""
    names = [*names, "beta"]
    if sums is None:
        return names, None
    t = trainer.cfg.trainer
    taken, batch_size = trainer.progress.batch_in_epoch, int(t.batch_size)
    steps_per_epoch = math.ceil(len(trainer.data.train) / batch_size)
    beta_sum = batch_size * sum(elbo.warmup_beta(float(trainer.cfg.beta), trainer.progress.epoch + b / steps_per_epoch,
                                                 t.kl_warmup_epochs) for b in range(taken))
    terms = sums[:-2] * batch_size
    return names, torch.cat([terms, terms.new_tensor([beta_sum]), sums[-2:]])
