"""A run that a job scheduler starts again: a SLURM job requeued after preemption (`scontrol requeue`,
SIGTERM) or before its time limit (submitit's SIGUSR2) runs the same command in the same folder. It
finds its own checkpoint there and continues from it, with no `resume=` by hand and no new folder; a
run that had completed does nothing.

"Its own" is checked, not assumed: each checkpoint records the SLURM job that wrote it (the job's id,
an array task's own) and how often SLURM had restarted that job then. Only the same job, restarted
since (SLURM_RESTART_COUNT higher than the checkpoint's), continues. Any other start in a folder that
holds a run (a new job given an old run's or sweep's folder, a second command in one `salloc` shell, a
`hydra.run.dir` of an earlier run) is refused: continuing someone else's run would drop the new
command's settings and report the old run's numbers as its own."""

from __future__ import annotations

import os
from pathlib import Path

from vaebench.errors import UserError
from vaebench.run import checkpoint
from vaebench.run.record import recorded_status

# Statuses after which a started-again job has nothing to do: a diverged run would only diverge again.
FINISHED = ("completed", "diverged")


def this_job() -> dict | None:
    """The SLURM job this process runs in, as a checkpoint records it; None outside SLURM."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    return {"slurm_job_id": job, "restart_count": _restart_count()}


def _restart_count() -> int:
    count = os.environ.get("SLURM_RESTART_COUNT", "0")
    return int(count) if count.isdigit() else 0


def started_again(run_dir: Path, resume) -> str | None:
    """"resume" when this process is the SLURM job that wrote the folder's checkpoints/last.pt, restarted
    since; "finished" when that run had ended (FINISHED); None for a run's first start (or `resume=`).
    Any other start in a folder that holds a run is refused (UserError)."""
    last = run_dir / "checkpoints" / "last.pt"
    if resume or not last.is_file():
        return None
    job, recorded = this_job(), checkpoint.load(last).get("job")
    if job is not None and _same_job_restarted(job, recorded):
        return "finished" if recorded_status(run_dir) in FINISHED else "resume"
    wrote = (f"SLURM job {recorded['slurm_job_id']}" if recorded else "an earlier command")
    if job is None:
        this = "not a SLURM job"
    else:
        same = recorded is not None and recorded.get("slurm_job_id") == job["slurm_job_id"]
        this = f"SLURM job {job['slurm_job_id']}" + (", not restarted since" if same else "")
    raise UserError(
        f"{run_dir} already holds a run ({recorded_status(run_dir) or 'no metrics.json'}, its checkpoints/last.pt written by "
        f"{wrote}), and this command ({this}) would start another in it. To continue that run: vaebench train "
        f"resume={run_dir} (add trainer.epochs=N to train longer). To start a new run, give it a folder of its own "
        f"(leave hydra.run.dir / hydra.sweep.dir to their dated defaults)."
    )


def _same_job_restarted(job: dict, recorded: dict | None) -> bool:
    if recorded is None:  # a checkpoint from before jobs were recorded: SLURM's restart count alone
        return job["restart_count"] > 0
    return recorded.get("slurm_job_id") == job["slurm_job_id"] and job["restart_count"] > int(recorded.get("restart_count", 0))
