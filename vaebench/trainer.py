"""The training loop: index-sampled batches on the device, one optimiser step per batch, evaluation
and checkpoints at epoch ends, and a stop on divergence, Ctrl-C or SIGTERM that loses nothing.

Scalars stay on the device and are summed there; the host reads them at the log interval only.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from vaebench import checkpoint, elbo
from vaebench.cpu_math import use_fast_cpu_math
from vaebench.diagnostics import split_diagnostics
from vaebench.evaluate import data_levels, fixed_randomness, split_terms

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


class Stop(Exception):
    """The run stops early: `status` is 'diverged' or 'interrupted'; `message` says what to do."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class SignalCatcher:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step."""

    def __init__(self):
        self.received: str | None = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. a launcher's worker): leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@dataclass
class Trainer:
    model: torch.nn.Module
    data: object                      # vaebench.data.Dataset, on the device
    cfg: object                       # the run's full config
    run_dir: Path
    board: object                     # vaebench.board.Board
    on_evaluation: object = None      # callable(trainer, val_terms) for pictures and diagnostics
    extra_state: dict = field(default_factory=dict)  # saved with every checkpoint, e.g. the board's folder
    progress: Progress = field(default_factory=Progress)
    objective: object = None          # vaebench.objectives: what the step minimises; None: cfg.objective's

    def __post_init__(self):
        self.device = self.data.train.device
        if self.device.type == "cpu":
            use_fast_cpu_math()
        # Fused Adam: the same update as the default, in one kernel per step instead of several per tensor.
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg.trainer.lr,
                                          fused=self.device.type in ("cpu", "cuda") or None)
        self.learned = [p for p in self.model.parameters() if p.requires_grad]
        self.order_generator = torch.Generator().manual_seed(int(self.cfg.seed))
        self.epoch_order: torch.Tensor | None = None
        self.epoch_sums: torch.Tensor | None = None
        self.term_names: list[str] | None = None
        self.saved_step: int | None = None  # the step checkpoints/last.pt holds, named when a run diverges
        if self.objective is None:  # the one the config names (train.py hands in the one it built)
            self.objective = _objective_of(self.cfg, self.model, self.data)
        # Steps taken, on the device for an objective with a schedule (capacity); the default step skips it.
        self.objective_step = torch.zeros((), device=self.device) if getattr(self.objective, "uses_step", False) else None
        self.loss_fn = _CompiledOrEager(self._loss) if self.cfg.trainer.compile else self._loss
        bf16 = self.cfg.trainer.precision == "bf16" and self.device.type == "cuda"
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    # -- the step -----------------------------------------------------------------------------
    def _loss(self, x: torch.Tensor, beta: torch.Tensor):
        """The mean loss to differentiate, the names of what is logged, and [loss, *ELBO terms, *the
        objective's quantities, beta] summed over the batch's points (a batch-level value and beta count
        once per point), so that the epoch's sums divided by its points are per-point means."""
        loss, terms, quantities = self.objective(self.model, x, beta, self.objective_step)
        with torch.no_grad():  # the logged sums need no graph
            rows = [(v if v.dim() else v.expand(len(x))).float() for v in (loss, *terms.values(), *quantities.values())]
            sums = torch.stack([*rows, beta.float().expand(len(x))]).sum(dim=1)
        return loss.mean(), [*terms, *(f"objective/{name}" for name in quantities)], sums

    def train_step(self, x: torch.Tensor, beta: torch.Tensor, measure_grad_norm: bool = False):
        """One optimiser step. Returns [loss, *terms, beta] summed over the batch's points as one device
        vector, and the gradients' 2-norm when asked (else None): 13 norm kernels, so the loop asks once
        per log interval."""
        with self.autocast:
            loss, names, sums = self.loss_fn(x, beta)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = _total_norm([p.grad for p in self.learned if p.grad is not None]) if measure_grad_norm else None
        self.optimizer.step()
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
            while self.progress.epoch < t.epochs:
                started = time.perf_counter()
                if self.epoch_order is None:
                    self.epoch_order = torch.randperm(n, generator=self.order_generator).to(self.device)
                    self.epoch_sums = None
                    self.progress.batch_in_epoch = 0
                bar = self._progress_bar(steps_per_epoch)
                first_batch = self.progress.batch_in_epoch
                interval = _Interval(self.progress.step)
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
                        interval = _Interval(self.progress.step)
                        bar.show(b + 1, self.progress.step, self.epoch_sums[:-2] / min(n, (b + 1) * batch_size), self.term_names)
                    if signals.received:
                        bar.close()
                        self.progress.wall_time_s += time.perf_counter() - started
                        self.save("last.pt")
                        raise self._interrupted(signals.received)
                bar.close()
                self._end_epoch(steps_per_epoch, n, time.perf_counter() - started, samples=n - first_batch * batch_size)
                if signals.received:  # it arrived during the evaluation; _end_epoch has just saved last.pt
                    raise self._interrupted(signals.received)
                if t.patience and self.progress.epoch - self.progress.best_epoch >= t.patience:
                    log.info(f"Early stop: no better validation ELBO for {t.patience} epochs "
                             f"(best {self.progress.best_val_elbo:.2f} at epoch {self.progress.best_epoch}).")
                    break
        return "completed"

    def _end_epoch(self, steps_per_epoch: int, n: int, seconds: float, samples: int | None = None) -> None:
        """`samples`: the points this process trained on in the epoch (fewer than n after a resume
        mid-epoch), over `seconds`."""
        p, t = self.progress, self.cfg.trainer
        p.epoch += 1
        p.wall_time_s += seconds
        *sums, grad_norm_sum, grad_norm_steps = self.epoch_sums.tolist()
        # Per-point means over the epoch: a short last batch counts by its points. beta is the mean of
        # the steps' beta over the points, so loss = -reconstruction + beta * kl when beta is constant.
        means = {name: total / n for name, total in zip(self.term_names, sums)}
        means["grad_norm"] = grad_norm_sum / max(grad_norm_steps, 1)
        means["lr"] = self.optimizer.param_groups[0]["lr"]
        means["samples_per_s"] = (n if samples is None else samples) / max(seconds, 1e-9)
        means["elbo_bits_per_dim"] = elbo.bits_per_dim(-means["elbo"], math.prod(self.data.data_shape),
                                                       data_levels(self.model))
        self.board.scalars("train", means, p.step)
        self.epoch_order, self.epoch_sums = None, None
        if p.epoch % t.eval_every == 0 or p.epoch == t.epochs:
            # The per-dimension KL is not summed during training; a fixed slice of the training set gives it.
            probe = split_terms(self.model, self.data.train[: self.cfg.eval.batch_size], self.cfg.eval.batch_size,
                                binarize=self.data.dynamic_binarize)
            if "kl_per_dim" in probe:  # absent for a prior without 1-D marginals
                self.board.histogram("train/kl_per_dim", probe["kl_per_dim"], p.step)
            val = split_terms(self.model, self.data.val, self.cfg.eval.batch_size)
            split_loss = getattr(self.objective, "split_loss", None)
            # The beta the next step trains with: the model as it now stands.
            val_loss = split_loss(val, elbo.warmup_beta(float(self.cfg.beta), p.epoch, t.kl_warmup_epochs), p.step) \
                if split_loss else None
            if val_loss is not None:  # None: the objective is no function of the split's means (IWAE, beta-TC)
                val["loss"] = val_loss
            surgery_every = self.cfg.eval.surgery_every
            if surgery_every and (p.epoch // t.eval_every) % surgery_every == 0:
                # One draw per point for the curves (their SE says how much that is); the final metrics
                # and `vaebench eval` take eval.surgery_samples.
                val.update(split_diagnostics(self.model, self.data.val, self.cfg.eval.batch_size, surgery_samples=1))
            # log N is no curve; the standard errors are in metrics.json and the final table
            self.board.scalars("val", {k: v for k, v in val.items() if k != "mutual_info_max" and not k.endswith("_se")}, p.step)
            if self.on_evaluation is not None:
                with fixed_randomness(self.device):
                    self.on_evaluation(self, val)
            val_elbo = float(val["elbo"])
            log.info(f"epoch {p.epoch:>4}/{t.epochs}  step {p.step:>7}  loss {means['loss']:9.3f}  "
                     f"train elbo {means['elbo']:9.3f}  val elbo {val_elbo:9.3f}  ({means['samples_per_s']:,.0f} samples/s)")
            if val_elbo > p.best_val_elbo:
                p.best_val_elbo, p.best_epoch = val_elbo, p.epoch
                self.save("best.pt")
        self.save("last.pt")
        self.board.flush()

    def _interrupted(self, signal_name: str) -> Stop:
        return Stop("interrupted", f"{signal_name} received after step {self.progress.step} ({self.progress.epoch} "
                                   f"epochs completed): saved {self.run_dir / 'checkpoints' / 'last.pt'}.")

    def _fold(self, interval: "_Interval", grad_norm: torch.Tensor | None) -> None:
        """Adds the interval's steps to the epoch sums, [*term sums, grad-norm sum, grad-norm count],
        one step at a time as the steps came, so a resumed run sums in the same order as a straight
        one; then stops the run if a step's loss or the measured gradient norm is NaN/inf."""
        rows = interval.rows()
        if self.epoch_sums is None:
            self.epoch_sums = rows.new_zeros(rows.shape[1] + 2)
        for row in rows:
            self.epoch_sums[:-2] += row
        checked = rows[:, 0]
        if grad_norm is not None:
            self.epoch_sums[-2:] += torch.stack([grad_norm.float(), grad_norm.new_ones((), dtype=torch.float)])
            checked = torch.cat([checked, grad_norm.float().reshape(1)])
        finite = torch.isfinite(checked)
        if not bool(finite.all()):  # the host waits on the device here, once per log interval
            bad = min(int(torch.nonzero(~finite)[0]), len(rows) - 1)
            raise self._diverged(f"The loss or its gradient became NaN/inf at step {interval.first_step + bad} "
                                 f"(epoch {self.progress.epoch + 1})")

    def _check_parameters_finite(self) -> None:
        # A finite gradient can still take a huge step; never write such a state over the last good one.
        finite = torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all()
        if not finite:
            raise self._diverged(f"The parameters became NaN/inf by step {self.progress.step}")

    def _diverged(self, what: str) -> Stop:
        remedies = f"a lower trainer.lr (now {self.cfg.trainer.lr}) or a KL warm-up (trainer.kl_warmup_epochs=10)"
        if self.cfg.trainer.precision != "fp32":
            remedies += f", or trainer.precision=fp32 (now {self.cfg.trainer.precision})"
        kept = "" if self.saved_step is None else f" checkpoints/last.pt keeps the last good state, from step {self.saved_step}."
        return Stop("diverged", f"{what}.{kept} Try {remedies}.")

    # -- state --------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.progress.epoch,
            "step": self.progress.step,
            "progress": asdict(self.progress),
            "epoch_order": None if self.epoch_order is None else self.epoch_order.cpu(),
            "epoch_sums": None if self.epoch_sums is None else self.epoch_sums.cpu(),
            "term_names": self.term_names,
            "order_generator": self.order_generator.get_state(),
            "rng": checkpoint.rng_state(),
            "config": self._config_container(),
            **self.extra_state,
        }

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.progress = Progress(**state["progress"])
        order, sums, names = state["epoch_order"], state["epoch_sums"], state["term_names"]
        if names and "grad_norm" in names:  # saved before the grad norm moved to the end of the sums
            i = names.index("grad_norm")
            names = names[:i] + names[i + 1:]
            if sums is not None:  # the old layout measured the norm at every step
                steps = torch.tensor([float(self.progress.batch_in_epoch)], dtype=sums.dtype)
                sums = torch.cat([sums[:i], sums[i + 1:], sums[i:i + 1], steps])
        if names and "beta" not in names:  # saved before the sums became per-point sums with beta
            names, sums = self._per_point_sums(names, sums)
        self.epoch_order = None if order is None else order.to(self.device)
        self.epoch_sums = None if sums is None else sums.to(self.device)
        self.term_names = names
        self.order_generator.set_state(state["order_generator"])
        checkpoint.set_rng_state(state["rng"])
        self.saved_step = self.progress.step

    def _per_point_sums(self, names: list[str], sums: torch.Tensor | None):
        """The old layout's sums of batch means, [*terms, grad-norm sum, count], as per-point sums with beta:
        each batch taken so far was a full one (a short last batch ends its epoch before any save)."""
        names = [*names, "beta"]
        if sums is None:
            return names, None
        t = self.cfg.trainer
        taken, batch_size = self.progress.batch_in_epoch, int(t.batch_size)
        steps_per_epoch = math.ceil(len(self.data.train) / batch_size)
        beta_sum = batch_size * sum(elbo.warmup_beta(float(self.cfg.beta), self.progress.epoch + b / steps_per_epoch,
                                                     t.kl_warmup_epochs) for b in range(taken))
        terms = sums[:-2] * batch_size
        return names, torch.cat([terms, terms.new_tensor([beta_sum]), sums[-2:]])

    def save(self, name: str) -> None:
        self._check_parameters_finite()
        checkpoint.save_atomic(self.state(), self.run_dir / "checkpoints" / name)
        if name == "last.pt":
            self.saved_step = self.progress.step

    def _config_container(self) -> dict:
        from omegaconf import OmegaConf

        return OmegaConf.to_container(self.cfg, resolve=True)

    def _progress_bar(self, total: int):
        return _Bar(total, self.progress.epoch + 1, self.cfg.trainer.epochs, self.progress.batch_in_epoch)


def _objective_of(cfg, model, data):
    from vaebench.components import build_objective
    from vaebench.objectives.elbo import ELBO

    if cfg.get("objective") is None:
        return ELBO()
    steps_per_epoch = math.ceil(len(data.train) / cfg.trainer.batch_size)
    return build_objective(cfg.objective, model, len(data.train), steps_per_epoch, cfg.beta)




class _Interval:
    """The per-step [loss, *terms, beta] sums since the last log, kept on the device."""

    def __init__(self, step: int):
        self.first_step, self.values = step + 1, []  # steps are counted from 1

    def add(self, values: torch.Tensor) -> None:
        self.values.append(values)

    def rows(self) -> torch.Tensor:
        return torch.stack(self.values)


class _CompiledOrEager:
    """`fn` through torch.compile, or `fn` itself once compiling fails: at torch.compile() or at any
    call, since compilation is lazy (a missing C++ compiler shows only at the first step). One line
    on stderr says why."""

    def __init__(self, fn):
        self.fn, self.compiled = fn, None
        try:
            self.compiled = torch.compile(fn)
        except Exception as err:  # e.g. an unsupported platform or Python version
            self._fall_back(err)

    def __call__(self, *args):
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except Exception as err:  # e.g. no working C++ compiler; an error of fn itself recurs below
                self._fall_back(err)
        return self.fn(*args)

    def _fall_back(self, err: Exception) -> None:
        self.compiled = None
        reason = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
        print(f"trainer.compile=true: torch.compile failed ({reason.strip()}); training uncompiled.", file=sys.stderr)


def _total_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of all gradients together, as clip_grad_norm_ computes it, without rescaling them."""
    if hasattr(torch.nn.utils, "get_total_norm"):  # torch >= 2.6
        return torch.nn.utils.get_total_norm(grads)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


class _Bar:
    """A tqdm bar on a terminal that moves with every step, with the running loss and ELBO at each log
    interval; nothing between epoch lines when output goes to a file or pipe."""

    def __init__(self, total: int, epoch: int, epochs: int, initial: int):
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=f"epoch {epoch}/{epochs}", leave=False, dynamic_ncols=True)
            self.last = initial

    def advance(self, done: int) -> None:
        """`done` batches of the epoch taken: called every step; tqdm redraws at most every 0.1 s."""
        if self.bar is not None:
            self.bar.update(done - self.last)
            self.last = done

    def show(self, done: int, step: int, means: torch.Tensor, names: list[str]) -> None:
        """The running loss and ELBO, at each log interval (reading them waits for the device)."""
        if self.bar is None:
            return
        values = dict(zip(names, means.tolist()))
        self.bar.set_postfix(step=step, loss=f"{values['loss']:.2f}", elbo=f"{values['elbo']:.2f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
