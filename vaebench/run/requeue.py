"""A run that a job scheduler starts again: a SLURM job requeued after preemption (`scontrol requeue`,
SIGTERM) or before its time limit (submitit's SIGUSR2) runs the same command in the same folder. It
finds its own checkpoint there and continues from it, with no `resume=` by hand and no new folder; a
run that had completed does nothing."""

from __future__ import annotations

import os
from pathlib import Path

from vaebench.run.record import recorded_status

# Statuses after which a started-again job has nothing to do: a diverged run would only diverge again.
FINISHED = ("completed", "diverged")


def started_again(run_dir: Path, resume) -> str | None:
    """"resume" when this process is a SLURM job started again whose folder already holds its
    checkpoints/last.pt, "finished" when that run had ended (FINISHED), None for a run's first start."""
    if resume or not os.environ.get("SLURM_JOB_ID") or not (run_dir / "checkpoints" / "last.pt").is_file():
        return None
    return "finished" if recorded_status(run_dir) in FINISHED else "resume"
