"""How a run stops early without losing finished work: `Stop` says why (diverged, interrupted), and
Ctrl-C, SIGTERM (what a cluster sends to preempt or requeue a job) and SIGUSR2 (what submitit asks
SLURM to send before a job's time limit) become a flag that the training loop checks after each step,
so that it saves its state first. A handler that was there before for SIGUSR2 (submitit's, which
requeues the job) is handed the signal after that."""

from __future__ import annotations

import signal
from pathlib import Path


class Stop(Exception):
    """The run stops early: `status` is 'diverged' or 'interrupted'; `message` says what to do;
    `then`, when set, is called once the run has recorded its stop (a job scheduler's own handler)."""

    def __init__(self, status: str, message: str, then=None):
        super().__init__(message)
        self.status, self.message, self.then = status, message, then


class SignalCatcher:
    """Turns SIGINT, SIGTERM and SIGUSR2 into a flag the loop checks after each step."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, *((signal.SIGUSR2,) if hasattr(signal, "SIGUSR2") else ()))

    def __init__(self):
        self.received: str | None = None
        self._previous = {}
        self._signum: int | None = None

    def __enter__(self):
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. a launcher's worker): leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        self.received, self._signum = signal.Signals(signum).name, signum

    def hand_on(self):
        """The handler that was there before for the signal received, as a call (None: none of its own).
        Only SIGUSR2's: submitit's, which requeues the job; Ctrl-C and SIGTERM end the run here."""
        previous = self._previous.get(self._signum)
        if self._signum != getattr(signal, "SIGUSR2", None) or not callable(previous):
            return None
        signum = self._signum
        return lambda: previous(signum, None)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def interrupted(signal_name: str, step: int, epochs_done: int, saved: Path, then=None) -> Stop:
    return Stop("interrupted", f"{signal_name} received after step {step} ({epochs_done} epochs completed): saved {saved}.",
                then)


def diverged(what: str, lr: float, precision: str, saved_step: int | None) -> Stop:
    """A stop for a NaN/inf, with remedies; `saved_step`: the step checkpoints/last.pt holds (None: none yet)."""
    remedies = f"a lower trainer.lr (now {lr}) or a KL warm-up (trainer.kl_warmup_epochs=10)"
    if precision != "fp32":
        remedies += f", or trainer.precision=fp32 (now {precision})"
    kept = "" if saved_step is None else f" checkpoints/last.pt keeps the last good state, from step {saved_step}."
    return Stop("diverged", f"{what}.{kept} Try {remedies}.")
