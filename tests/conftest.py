"""Shared helpers: the real CLI in a subprocess, with models small enough for a 2-core CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# A tiny model and a short run: seconds on a CPU, every code path still exercised.
TINY = [
    "trainer.epochs=2",
    "model.hidden_dim=16",
    "model.latent_dim=4",
    "eval.iw_samples=8",
    "trainer.device=cpu",
]


def run_cli(args: list[str], cwd: Path, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    """`vaebench ARGS` as a user types it, from `cwd`; returns the finished process."""
    # One thread: tiny models run faster without OpenMP's fan-out, and parallel tests do not thrash.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "vaebench.cli", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"vaebench {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


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
