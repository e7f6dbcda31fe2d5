"""`trainer.compile=true`: the training step through torch.compile, with a fallback to eager."""

from __future__ import annotations

import sys

import torch


class CompiledOrEager:
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
