"""The training loop: index-sampled batches on the device, one optimiser step per batch, evaluation
and checkpoints at epoch ends (validation.py), and a stop on divergence, Ctrl-C or SIGTERM that loses
nothing (stops.py, training_state.py).

Scalars stay on the device and are summed there; the host reads them at the log interval only.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vaebench.metrics import elbo
from vaebench.metrics.evaluation import fixed_randomness
from vaebench.run import checkpoint
from vaebench.run.cpu_math import use_fast_cpu_math
from vaebench.run.step_sums import StepSums
from vaebench.run.stops import SignalCatcher, Stop, diverged, interrupted
from vaebench.run.step import TrainingStep
from vaebench.run.threads import numbers_depend_on_threads
from vaebench.run.training_state import (Progress, patience_counts_from, restore_training_state, stop_reason,
                                         training_state)
from vaebench.run.validation import EvaluationSchedule, epoch_means
from vaebench.views.console import TrainingBar

log = logging.getLogger(__name__)


@dataclass
class Trainer:
    model: torch.nn.Module
    data: object                      # vaebench.datasets.Dataset, on the device
    cfg: object                       # the run's full config
    run_dir: Path
    board: object                     # vaebench.views.board.Board
    on_evaluation: object = None      # callable(trainer, val_terms) for pictures and diagnostics
    extra_state: dict = field(default_factory=dict)  # saved with every checkpoint, e.g. the board's folder
    progress: Progress = field(default_factory=Progress)
    objective: object = None          # vaebench.objectives: what the step minimises; None: cfg.objective's
    cpu_share: object = None          # run.threads.CpuShare: the run's thread count, and what training may follow

    def __post_init__(self):
        self.device = self.data.train.device
        if self.device.type == "cpu":
            use_fast_cpu_math()
        self.order_generator = torch.Generator().manual_seed(int(self.cfg.seed))
        self.epoch_order: torch.Tensor | None = None
        self.epoch_sums: torch.Tensor | None = None
        self.term_names: list[str] | None = None
        self.saved_step: int | None = None  # the step checkpoints/last.pt holds, named when a run diverges
        if self.objective is None:  # the one the config names (compose.run hands in the one it built)
            self.objective = _objective_of(self.cfg, self.model, self.data)
        steps_in_run = int(self.cfg.trainer.epochs) * math.ceil(len(self.data.train) / int(self.cfg.trainer.batch_size))
        self.step = TrainingStep(self.model, self.objective, float(self.cfg.trainer.lr), self.device, self.cfg.trainer.compile,
                                 lambda: steps_in_run - self.progress.step - 1, getattr(self.cpu_share, "stop_following", None),
                                 optimizer=self.cfg.trainer.get("optimizer", "adam"))
        self.optimizer, self.objective_step = self.step.optimizer, self.step.objective_step
        bf16 = self.cfg.trainer.precision == "bf16" and self.device.type == "cuda"
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        self.schedule = EvaluationSchedule.of(self.cfg)

    # -- the step -----------------------------------------------------------------------------
    def train_step(self, x: torch.Tensor, beta: torch.Tensor, measure_grad_norm: bool = False):
        """One optimiser step (`step.py`). Returns [loss, *terms, beta] summed over the batch's points as one
        device vector, and the gradients' 2-norm when asked (else None)."""
        sums, names, grad_norm = self.step(x, beta, self.autocast, measure_grad_norm)
        if self.term_names is None:
            self.term_names = ["loss", *names, "beta"]
        return sums, grad_norm

    # -- the loop -----------------------------------------------------------------------------
    def fit(self) -> str:
        """Train to trainer.epochs (or early stop); returns 'completed', raises Stop otherwise."""
        t = self.cfg.trainer
        n = len(self.data.train)
        steps_per_epoch = math.ceil(n / t.batch_size)
        # Plain numbers in the loop: each config lookup costs microseconds, at every step.
        batch_size, log_every = int(t.batch_size), int(t.log_every)
        final_beta, warmup_epochs = float(self.cfg.beta), t.kl_warmup_epochs
        beta = torch.full((), elbo.warmup_beta(final_beta, 0.0, warmup_epochs), device=self.device)
        with SignalCatcher() as signals:
            if self.progress.step == 0:
                # The last good state until the first epoch ends: a run that diverges or is killed in
                # epoch 1 still leaves a last.pt that loads and resumes.
                self.save("last.pt")
            while self.progress.epoch < t.epochs and not self.progress.stopped_early:
                started = time.perf_counter()
                if self.epoch_order is None:
                    self.epoch_order = torch.randperm(n, generator=self.order_generator).to(self.device)
                    self.epoch_sums = None
                    self.progress.batch_in_epoch = 0
                bar = self._progress_bar(steps_per_epoch)
                first_batch = self.progress.batch_in_epoch
                interval = StepSums(self.progress.step)
                for b in range(self.progress.batch_in_epoch, steps_per_epoch):
                    index = self.epoch_order[b * batch_size:(b + 1) * batch_size]
                    if warmup_epochs:  # beta changes at every step of a warm-up only
                        beta.fill_(elbo.warmup_beta(final_beta, self.progress.epoch + b / steps_per_epoch, warmup_epochs))
                    if self.objective_step is not None:
                        self.objective_step.fill_(self.progress.step)
                    logs_now = (b + 1) % log_every == 0 or b + 1 == steps_per_epoch
                    values, grad_norm = self.train_step(self.data.train_batch(index), beta, measure_grad_norm=logs_now)
                    interval.add(values)
                    self.progress.step += 1
                    self.progress.batch_in_epoch = b + 1
                    bar.advance(b + 1)  # the count only: the host does not wait for the device
                    if logs_now or signals.received:
                        self._fold(interval, grad_norm)
                        interval = StepSums(self.progress.step)
                        bar.show(b + 1, self.progress.step, self.epoch_sums[:-2] / min(n, (b + 1) * batch_size), self.term_names)
                    if signals.received:
                        bar.close()
                        self.progress.wall_time_s += time.perf_counter() - started
                        self.save("last.pt")
                        raise self._interrupted(signals)
                bar.close()
                self._end_epoch(steps_per_epoch, n, time.perf_counter() - started, samples=n - first_batch * batch_size)
                if signals.received:  # it arrived during the evaluation; _end_epoch has just saved last.pt
                    raise self._interrupted(signals)
                if t.patience and self.progress.epoch - patience_counts_from(self.progress, warmup_epochs) >= t.patience:
                    self.progress.stopped_early = True  # in last.pt: a resumed run knows its training is over
                    self.save("last.pt")
                    log.info(f"Training ends: {stop_reason(self.progress, t.epochs, t.patience, warmup_epochs)}.")
                    break
        return "completed"

    def _end_epoch(self, steps_per_epoch: int, n: int, seconds: float, samples: int | None = None) -> None:
        """`samples`: the points this process trained on in the epoch, over `seconds` (fewer than n after a resume)."""
        p = self.progress
        p.epoch, p.wall_time_s = p.epoch + 1, p.wall_time_s + seconds
        means = epoch_means(self.term_names, self.epoch_sums.tolist(), n, self.optimizer.param_groups[0]["lr"], seconds,
                            n if samples is None else samples, self.model, self.data.data_shape)
        self.board.scalars("train", means, p.step)
        self.epoch_order, self.epoch_sums = None, None
        if self.schedule.due(p.epoch):
            with recording(self.cpu_share):
                val = self.schedule.evaluate(self.model, self.data, self.objective, self.board, p.epoch, p.step)
                if self.on_evaluation is not None:
                    with fixed_randomness(self.device):
                        self.on_evaluation(self, val)
            val_elbo = float(val["elbo"])
            log.info(f"epoch {p.epoch:>4}/{self.cfg.trainer.epochs}  step {p.step:>7}  loss {means['loss']:9.3f}  "
                     f"train elbo {means['elbo']:9.3f}  val elbo {val_elbo:9.3f}  ({means['samples_per_s']:,.0f} samples/s)")
            if val_elbo > p.best_val_elbo:
                p.best_val_elbo, p.best_epoch = val_elbo, p.epoch
                self.save("best.pt")
        if self.cpu_share is not None:
            self.cpu_share.adjust()
        self.save("last.pt")
        self.board.flush()

    def _interrupted(self, signals: SignalCatcher) -> Stop:
        return interrupted(signals.received, self.progress.step, self.progress.epoch, self.run_dir / "checkpoints" / "last.pt",
                           signals.hand_on())

    def _fold(self, interval: StepSums, grad_norm: torch.Tensor | None) -> None:
        """The interval's steps into the epoch sums; a stop if a step's loss or the gradient norm is NaN/inf."""
        self.epoch_sums, bad_step = interval.fold_into(self.epoch_sums, grad_norm)
        if bad_step is not None:
            raise self._diverged(f"The loss or its gradient became NaN/inf at step {bad_step} (epoch {self.progress.epoch + 1})")

    def _diverged(self, what: str) -> Stop:
        return diverged(what, self.cfg.trainer.lr, self.cfg.trainer.precision, self.saved_step)

    def load_state(self, state: dict) -> None:
        restore_training_state(self, state)


    # -- checkpoints ---------------------------------------------------------------------------
    def save(self, name: str) -> None:
        # A finite gradient can still take a huge step; never write such a state over the last good one.
        if not torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all():
            raise self._diverged(f"The parameters became NaN/inf by step {self.progress.step}")
        checkpoint.save_atomic(training_state(self), self.run_dir / "checkpoints" / name)
        if name == "last.pt":
            self.saved_step = self.progress.step

    def _progress_bar(self, total: int):
        return TrainingBar(total, self.progress.epoch + 1, self.cfg.trainer.epochs, self.progress.batch_in_epoch)


def recording(share):
    """What the run records is computed with its own thread count (`threads.CpuShare.recording`)."""
    return share.recording() if share is not None else contextlib.nullcontext()


def settle_threads(trainer: Trainer) -> list[str]:
    """Checks once whether the eager training step gives other numbers at one thread than at the run's
    count (or its checkpoint's, where a resume takes another), on each of its batch shapes (the last
    batch of an epoch may be shorter), and tells the run's share; the lines to say. Not checked on a
    GPU, at one thread, or for a compiled step."""
    share = trainer.cpu_share
    if share is None:
        return []
    depends, most = None, max(share.threads, share.resumed_from or 1)
    if trainer.device.type == "cpu" and most > 1 and trainer.step.compiled is not True:
        n, batch = len(trainer.data.train), int(trainer.cfg.trainer.batch_size)
        sizes = sorted({min(n, batch), n % batch or min(n, batch)})
        beta = torch.ones((), device=trainer.device)

        def numbers() -> list[torch.Tensor]:
            with torch.random.fork_rng(devices=[]):  # the run's draws stay untouched
                return [t for size in sizes for t in trainer.step.numbers(trainer.data.train_batch(torch.arange(size)), beta)]

        depends = numbers_depend_on_threads(numbers, (1, most))
    return share.settle(depends, trainer.progress.step)


def _objective_of(cfg, model, data):
    from vaebench.config.components import build_objective
    from vaebench.objectives import ELBO

    if cfg.get("objective") is None:
        return ELBO()
    steps_per_epoch = math.ceil(len(data.train) / cfg.trainer.batch_size)
    return build_objective(cfg.objective, model, len(data.train), steps_per_epoch, cfg.beta)
