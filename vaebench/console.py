"""What the terminal shows besides plain messages: in a sweep, which run each line comes from."""

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
