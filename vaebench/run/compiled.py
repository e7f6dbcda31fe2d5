"""`trainer.compile`: the training step through torch.compile where it pays (`auto`, the default) or
always (`true`), with a fallback to eager when compiling fails.

What `auto` weighs, measured (scripts/BENCHMARKS.md, "Compile where it pays"): on the 2-core CPU a
compiled step ran 8-14% faster than an eager one for the MLP and two-level models, and compiling it took
12-18 s in a fresh process (1-2 s once inductor's cache on disk holds the step, as for every run of a
sweep after the first). So a run compiles when the time its remaining steps would save, at the
smallest measured gain, is at least PAYBACK times the compile time: on that CPU a run with over about
13 minutes of eager training. It decides after TIMED_STEPS eager steps, which it times.
"""

from __future__ import annotations

import logging
import statistics
import sys

import torch

log = logging.getLogger(__name__)

# Seconds a first compile of the step takes, and the step's steady-state gain, the smallest measured;
# a GPU's (no GPU was lent to this project yet) are assumptions, said so in the run's log.
COMPILE_SECONDS = {"cpu": 20.0, "cuda": 60.0}
COMPILE_GAIN = {"cpu": 0.08, "cuda": 0.15}
PAYBACK = 3.0
TIMED_STEPS = 20


class CompiledOrEager:
    """`fn` through torch.compile, or `fn` itself once compiling fails: at torch.compile() or at any
    call, since compilation is lazy (a missing C++ compiler shows only at the first step). One line
    on stderr says why.

    What makes a compiled run's numbers its own, step for step, however often it is resumed: inductor
    draws with eager's random ops (`fallback_random`: the same draws as an eager step, and the same
    generator state after it), every call from the first is compiled, and each batch shape gets its own
    static graph (`dynamic=False`: which kernels a shape runs does not depend on the shapes seen before).
    Before its first compiled call `fn` runs once eagerly, without gradients and with the random streams
    put back: that fills what the step looks up once (the KL function of its pair of distributions), so
    that it compiles into one graph."""

    def __init__(self, fn):
        self.fn, self.compiled, self.primed = fn, None, False
        try:
            import torch._inductor.config as inductor

            inductor.fallback_random = True
            self.compiled = torch.compile(fn, dynamic=False)
        except Exception as err:  # e.g. an unsupported platform or Python version
            self._fall_back(err)

    def __call__(self, *args):
        if self.compiled is not None:
            if not self.primed:
                cuda = [a.device for a in args if isinstance(a, torch.Tensor) and a.device.type == "cuda"]
                with torch.no_grad(), torch.random.fork_rng(devices=cuda[:1]):
                    self.fn(*args)
                self.primed = True
            try:
                return self.compiled(*args)
            except Exception as err:  # e.g. no working C++ compiler; an error of fn itself recurs below
                self._fall_back(err)
        return self.fn(*args)

    def _fall_back(self, err: Exception) -> None:
        self.compiled = None
        reason = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
        print(f"trainer.compile: torch.compile failed ({reason.strip()}); training uncompiled.", file=sys.stderr)


class CompilePlan:
    """`trainer.compile=auto`: times the first TIMED_STEPS eager steps (the first, which warms up, left
    out), then says whether the rest of the run is long enough for a compile to pay PAYBACK times over."""

    def __init__(self, remaining_steps, device: torch.device, seconds: list[float] = ()):
        """`seconds`: the steps a run stopped before its decision had timed, from its checkpoint."""
        self.remaining_steps, self.device = remaining_steps, device
        self.seconds: list[float] = list(seconds)

    def observe(self, seconds: float) -> bool | None:
        """One eager step's time; None until the plan decides, then whether to compile."""
        self.seconds.append(seconds)
        if len(self.seconds) < TIMED_STEPS:
            return None
        kind = "cuda" if self.device.type == "cuda" else "cpu"
        step = statistics.median(self.seconds[1:])
        left = max(0, int(self.remaining_steps()))
        saved, cost = COMPILE_GAIN[kind] * step * left, COMPILE_SECONDS[kind]
        compile_now = saved >= PAYBACK * cost
        guess = "" if kind == "cpu" else "; on a GPU both figures are assumptions, none was measured"
        said = (f"trainer.compile=auto: {'compiling the step' if compile_now else 'eager'}: compiled, the {left:,} steps "
                f"left ({1e3 * step:.1f} ms each eager) would save about {saved:.0f} s ({COMPILE_GAIN[kind]:.0%}), "
                f"{'at least' if compile_now else 'less than'} {PAYBACK:g}x the {cost:.0f} s a compile takes{guess}; "
                f"trainer.compile=true or false decides it.")
        # A compile is news on the console; staying eager, the usual case of a short run, goes to train.log only.
        (log if compile_now else logging.getLogger("vaebench.record")).info(said)
        return compile_now
