"""What the terminal shows besides plain messages: in a sweep, which run each line comes from; the
progress of a long evaluation."""

from __future__ import annotations

import logging


class RunPrefixFormatter(logging.Formatter):
    """Puts `prefix` (`[#3] ` in a sweep, nothing in a single run) before every line of a message, so
    the lines of runs that a parallel launcher runs side by side can be told apart."""

    def __init__(self, prefix: str = "", fmt: str = "%(message)s"):
        super().__init__(fmt)
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return "\n".join(self.prefix + line if line else line for line in text.split("\n")) if self.prefix else text


class EvaluationProgress:
    """Points done and the time left of a long evaluation: a tqdm bar on a terminal; elsewhere (a file,
    a pipe, a cluster's log) a line through the `vaebench` logger at most every `every_s` seconds.
    Nothing shows for an evaluation shorter than `quiet_s`.

    `update(0)` says the counted work begins: the clock restarts there, so that what ran before it
    (the surgery of the same split) does not count as time per point. `done` points were finished
    before (a resumed evaluation) and count neither for the rate nor for the time left."""

    def __init__(self, total: int, what: str, quiet_s: float = 2.0, every_s: float = 15.0, done: int = 0):
        import sys
        import time

        self.total, self.what, self.done, self.counted = total, what, done, 0
        self.quiet_s, self.every_s = quiet_s, every_s
        self.clock = time.perf_counter
        self.started = self.last_line = self.clock()
        self.tty = sys.stderr.isatty()
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

                self.bar = tqdm(total=self.total, initial=self.done - points, desc=self.what, unit="pt",
                                leave=False, dynamic_ncols=True)
            self.bar.update(points)
        elif self.clock() - self.last_line >= self.every_s or self.last_line == self.started:
            self.last_line = self.clock()
            left = elapsed / self.counted * (self.total - self.done)
            logging.getLogger("vaebench").info(f"{self.what}: {self.done:,}/{self.total:,} points, about {left:.0f} s left")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
