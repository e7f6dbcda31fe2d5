"""Shared helpers: the real CLI as a user types it, with models small enough for a 2-core CPU."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch

# One thread per test process, as the CLI's subprocesses get (OMP_NUM_THREADS=1 below): tiny models run
# faster without OpenMP's fan-out, and the suite's two workers (pytest-xdist) do not thrash.
torch.set_num_threads(1)

# A tiny model and a short run: seconds on a CPU, every code path still exercised.
TINY = [
    "trainer.epochs=2",
    "model.hidden_dim=16",
    "model.latent_dim=4",
    "eval.iw_samples=8",
    "trainer.device=cpu",
]


def run_cli(args: list[str], cwd: Path, timeout: float = 300, check: bool = True, env: dict | None = None
            ) -> subprocess.CompletedProcess:
    """`vaebench ARGS` as a user types it, from `cwd`; returns the finished process.

    `vaebench train` runs in a subprocess of its own: Hydra configures the process's logging and
    signals, and a run is what a user starts. `vaebench eval`, `sample`, `report` and `vaebench --help`
    set up nothing process-wide, so they run here, through the same `main`, with what they print and
    their exit status captured as a subprocess's would be: a second's start-up (importing torch) each."""
    if args and args[0] in ("eval", "sample", "report", "--help"):
        proc = _run_in_process(args, cwd)
    else:
        # One thread: tiny models run faster without OpenMP's fan-out, and parallel tests do not thrash.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1", **(env or {})}
        proc = subprocess.run(
            [sys.executable, "-m", "vaebench.cli", *args], cwd=cwd, env=env, capture_output=True, text=True,
            timeout=timeout,
        )
    if check and proc.returncode != 0:
        raise AssertionError(f"vaebench {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


# `vaebench ARGS` that sends itself SIGTERM (what a cluster's preemption sends) right after training step
# AT: the stop lands at the same step on any machine.
_STOPPED_AFTER = """
import os, signal, sys
from vaebench.run.trainer import Trainer
step = Trainer.train_step
def train_step_then_stop(self, *args, **kwargs):
    out = step(self, *args, **kwargs)
    if self.progress.step + 1 == {at}:  # the step just taken; the loop counts it next, then sees the signal
        os.kill(os.getpid(), signal.SIGTERM)
    return out
Trainer.train_step = train_step_then_stop
from vaebench.cli import main
main(sys.argv[1:])
"""


def run_cli_stopped_after(step: int, args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """`vaebench ARGS`, stopped by SIGTERM after training step `step`; it must stop as an interrupted run does."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run([sys.executable, "-c", _STOPPED_AFTER.format(at=step), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 130 and "Traceback" not in proc.stderr, proc.stderr
    return proc


def run_cli_on_a_terminal(args: list[str], cwd: Path, timeout: float = 600) -> tuple[int, str]:
    """`vaebench ARGS` with stdout and stderr on one pseudo-terminal, as a user's terminal shows it (bars
    included); the exit status and everything the terminal received."""
    import fcntl
    import pty
    import struct
    import termios
    import threading

    main_fd, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # 40 rows of 120 columns, as tmux has
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
    proc = subprocess.Popen([sys.executable, "-m", "vaebench.cli", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=terminal, stderr=terminal)
    os.close(terminal)
    received = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(main_fd, 65536)
            except OSError:  # the terminal's last writer has gone
                return
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        returncode = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(timeout=10)
        os.close(main_fd)
    return returncode, received.decode(errors="replace")


def _run_in_process(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`vaebench.cli.main(args)` from `cwd`, leaving the working folder, sys.path, the `vaebench`
    logger and torch's random stream as they were."""
    from vaebench.cli import main

    out, err = io.StringIO(), io.StringIO()
    logger = logging.getLogger("vaebench")
    saved = (os.getcwd(), list(sys.path), list(logger.handlers), logger.level, logger.propagate)
    returncode = 0
    try:
        os.chdir(cwd)
        with torch.random.fork_rng(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
            except SystemExit as exit_:
                returncode = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            except Exception:  # what an uncaught error prints in a subprocess
                traceback.print_exc()
                returncode = 1
    finally:
        os.chdir(saved[0])
        sys.path[:] = saved[1]
        logger.handlers[:], logger.level, logger.propagate = saved[2], saved[3], saved[4]
    return subprocess.CompletedProcess(["vaebench", *args], returncode, out.getvalue(), err.getvalue())


def run_dirs(root: Path) -> list[Path]:
    """Every run folder (one holding metrics.json) under root/outputs, sorted."""
    return sorted(p.parent for p in (root / "outputs").rglob("metrics.json"))


def board_dir(run_dir: Path) -> Path:
    """The run's TensorBoard folder (its sub-runs final/ and eval/ lie inside it)."""
    (folder,) = {f.parent for f in run_dir.glob("*/events.out.tfevents.*")}  # a resumed run adds files here
    return folder


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
