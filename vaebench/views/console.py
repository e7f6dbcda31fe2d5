"""What the terminal shows besides plain messages: in a sweep, which run each line comes from; the
progress of an epoch and of a long evaluation."""

from __future__ import annotations

import logging
import sys

import torch


class RunPrefixFormatter(logging.Formatter):
    """Puts `prefix` (`[#3] ` in a sweep, nothing in a single run) before every line of a message, so
    the lines of runs that a parallel launcher runs side by side can be told apart."""

    def __init__(self, prefix: str = "", fmt: str = "%(message)s"):
        super().__init__(fmt)
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return "\n".join(self.prefix + line if line else line for line in text.split("\n")) if self.prefix else text


# What this process's bars look like: set once per run (`configure`). In a sweep whose jobs run side by
# side (joblib), several processes share one terminal, and bars redrawn in place by each would overwrite
# each other and leave half-drawn lines behind: there each run says its progress in whole lines.
_CONSOLE = {"prefix": "", "bars": True}


def configure(prefix: str = "", bars: bool = True) -> None:
    """`prefix`: `[#3] ` for a sweep's run; `bars`: whether this process may draw bars on a terminal."""
    _CONSOLE.update(prefix=prefix, bars=bars)


def _draws_bars() -> bool:
    return _CONSOLE["bars"] and sys.stderr.isatty()


class EvaluationProgress:
    """Points done and the time left of a long evaluation: a tqdm bar on a terminal; elsewhere (a file,
    a pipe, a cluster's log) a line through the `vaebench` logger at most every `every_s` seconds.
    Nothing shows for an evaluation shorter than `quiet_s`; one that took `said_s` or more says so as
    it ends, in a line that stays on the terminal and in the run's log.

    `update(0)` says the counted work begins: the clock restarts there, so that what ran before it
    (the surgery of the same split) does not count as time per point. `done` points were finished
    before (a resumed evaluation) and count neither for the rate nor for the time left."""

    def __init__(self, total: int, what: str, quiet_s: float = 1.0, every_s: float = 15.0, done: int = 0,
                 unit: str = "points", said_s: float = 10.0):
        import time

        self.total, self.what, self.done, self.counted, self.unit = total, what, done, 0, unit
        self.quiet_s, self.every_s, self.said_s = quiet_s, every_s, said_s
        self.clock = time.perf_counter
        self.started = self.last_line = self.clock()
        self.tty = _draws_bars()
        self.bar = None

    def update(self, points: int) -> None:
        if points == 0 and self.counted == 0:
            self.started = self.last_line = self.clock()
            return
        self.done += points
        self.counted += points
        elapsed = self.clock() - self.started
        if elapsed < self.quiet_s or self.done >= self.total:
            if self.bar is not None:
                self.bar.update(points)
            return
        if self.tty:
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=self.total, initial=self.done - points, desc=_CONSOLE["prefix"] + self.what,
                                unit=f" {self.unit}" if self.unit else "it", leave=False, dynamic_ncols=True)
            self.bar.update(points)
        elif self.clock() - self.last_line >= self.every_s or self.last_line == self.started:
            self.last_line = self.clock()
            left = elapsed / self.counted * (self.total - self.done)
            logging.getLogger("vaebench").info(
                f"{self.what}: {self.done:,}/{self.total:,}{' ' + self.unit if self.unit else ''}, about {_duration(left)} left")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        took = self.clock() - self.started
        if self.done >= self.total and self.counted and took >= self.said_s:
            logging.getLogger("vaebench").info(f"{self.what}: done in {_duration(took)}")
            self.counted = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class StagedProgress:
    """The progress of an evaluation in stages, as `progress(stage, done, total)` hears it (metrics'
    `counting`): an EvaluationProgress per stage, named `<prefix><stage>`, so each long stage shows its
    own bar or lines with its own time left, and a short one nothing."""

    def __init__(self, prefix: str = ""):
        self.prefix = prefix
        self.stage: str | None = None
        self.current: EvaluationProgress | None = None
        self.done = 0

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage or done < self.done:
            self.close()
            self.stage, self.done = stage, 0
            self.current = EvaluationProgress(total, f"{self.prefix}{stage}", unit="")
            self.current.update(0)
        self.current.update(done - self.done)
        self.done = done

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
        self.current, self.stage = None, None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _duration(seconds: float) -> str:
    """12 s, 4 min 10 s, 2 h 05 min: a time left as a person reads it."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class TrainingBar:
    """A tqdm bar on a terminal that moves with every step, with the running loss and ELBO at each log
    interval; nothing between epoch lines when output goes to a file or pipe."""

    def __init__(self, total: int, epoch: int, epochs: int, initial: int):
        self.bar = None
        if _draws_bars():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=f"{_CONSOLE['prefix']}epoch {epoch}/{epochs}", unit=" steps",
                            leave=False, dynamic_ncols=True)
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
