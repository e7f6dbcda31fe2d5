"""How a run stops early without losing finished work: `Stop` says why (diverged, interrupted), and
Ctrl-C or SIGTERM (what a cluster sends before preemption) become a flag that the training loop checks
after each step, so that it saves its state first."""

from __future__ import annotations

import signal
from pathlib import Path


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


def interrupted(signal_name: str, step: int, epochs_done: int, saved: Path) -> Stop:
    return Stop("interrupted", f"{signal_name} received after step {step} ({epochs_done} epochs completed): saved {saved}.")


def diverged(what: str, lr: float, precision: str, saved_step: int | None) -> Stop:
    """A stop for a NaN/inf, with remedies; `saved_step`: the step checkpoints/last.pt holds (None: none yet)."""
    remedies = f"a lower trainer.lr (now {lr}) or a KL warm-up (trainer.kl_warmup_epochs=10)"
    if precision != "fp32":
        remedies += f", or trainer.precision=fp32 (now {precision})"
    kept = "" if saved_step is None else f" checkpoints/last.pt keeps the last good state, from step {saved_step}."
    return Stop("diverged", f"{what}.{kept} Try {remedies}.")
