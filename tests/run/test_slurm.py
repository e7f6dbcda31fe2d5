"""Sweeps on a SLURM cluster through Hydra's submitit launcher, for real: against the one-node cluster of
scripts/slurm_local.sh (CI starts it), skipped where there is none. A job requeued in the middle of
training, or at its time limit, continues from its own folder's checkpoint and ends with the numbers of
a run that never stopped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TINY, read_metrics, run_cli

pytestmark = pytest.mark.skipif(
    shutil.which("sbatch") is None or not os.environ.get("SLURM_CONF")
    or subprocess.run(["sinfo", "-h"], capture_output=True).returncode != 0,
    reason="no SLURM cluster here: scripts/slurm_local.sh start (as root), then export SLURM_CONF as it says")

# The local cluster's one partition, and a job's share of its 2-core machine.
ON_THE_LOCAL_CLUSTER = ["hydra/launcher=slurm", "hydra.launcher.partition=local", "hydra.launcher.gpus_per_node=0",
                        "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1"]
# Long enough to be stopped in the middle of training: 30 epochs of 500 small steps.
LONG = [*TINY, "trainer.epochs=30", "trainer.batch_size=8", "eval.surgery_every=0"]


def slurm(*args: str) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, check=True).stdout


def start_sweep(args: list[str], sweep_dir: Path, cwd: Path) -> subprocess.Popen:
    # The jobs take their threads from the CPUs SLURM gives them, not from this process's environment.
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | {"PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.Popen([sys.executable, "-m", "vaebench.cli", "train", "-m", *ON_THE_LOCAL_CLUSTER, *args,
                             f"hydra.sweep.dir={sweep_dir}"], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def job_id(sweep_dir: Path, timeout: float = 60) -> str:
    """The SLURM job of the sweep's only run, from submitit's folder of it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        folders = [p.name for p in (sweep_dir / ".submitit").glob("*") if p.is_dir()] if (sweep_dir / ".submitit").is_dir() else []
        if folders:
            return folders[0]
        time.sleep(0.2)
    raise AssertionError("the sweep submitted no job")


def _checkpoint_epoch(run_dir: Path) -> int:
    import torch

    try:
        return int(torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["epoch"])
    except Exception:  # not written yet, or being written
        return 0


def wait_for(condition, proc: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the sweep ended before {what}:\n{proc.communicate()[0][-3000:]}"
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s"
        time.sleep(0.5)


def release_when_held(job: str) -> bool:
    """SLURM holds a requeued job for about two minutes (its BeginTime): let it start now."""
    asked = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T %r"], capture_output=True, text=True)
    state = asked.stdout.split()  # nothing once the job has ended and left the queue (squeue then fails)
    if state[:2] == ["PENDING", "BeginTime"]:
        slurm("scontrol", "update", f"JobId={job}", "StartTime=now")
        return True
    return False


def finish(proc: subprocess.Popen, job: str, timeout: float) -> str:
    """The sweep's output once it has ended, releasing its job whenever SLURM holds it after a requeue."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        assert time.monotonic() < deadline, "the sweep did not end"
        release_when_held(job)
        time.sleep(0.5)
    output = proc.communicate()[0]
    assert proc.returncode == 0, output[-3000:]
    return output


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> dict:
    """The same run, never stopped, on one thread as the jobs' one CPU gives them."""
    root = tmp_path_factory.mktemp("straight")
    run_cli(["train", *LONG, "hydra.run.dir=run"], cwd=root)
    return read_metrics(root / "run")


def test_a_sweep_runs_as_slurm_jobs_to_its_report(tmp_path):
    sweep = tmp_path / "sweep"
    proc = start_sweep([*TINY, "beta=1,2"], sweep, tmp_path)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output[-3000:]
    assert f"vaebench report {sweep}" in output
    for run in ("0", "1"):
        metrics = read_metrics(sweep / run)
        assert metrics["status"] == "completed" and metrics["restarts"] == 0
        assert metrics["threads"] == 1 and "SLURM gave this job" in metrics["threads_why"]  # cpus_per_task=1
    run_cli(["report", str(sweep)], cwd=tmp_path)
    assert (sweep / "report.csv").read_text().count("\n") == 3  # a header and the two runs


def test_a_job_requeued_in_the_middle_of_training_continues_to_the_numbers_of_a_straight_run(tmp_path, straight):
    sweep = tmp_path / "sweep"
    proc = start_sweep(LONG, sweep, tmp_path)
    job = job_id(sweep)
    wait_for(lambda: 2 <= _checkpoint_epoch(sweep / "0") < 25, proc, 120, "two epochs of training")
    slurm("scontrol", "requeue", job)  # what preemption does
    finish(proc, job, 300)
    metrics = read_metrics(sweep / "0")
    assert metrics["status"] == "completed" and metrics["restarts"] == 1 and metrics["epochs"] == 30
    log = (sweep / "0" / "train.log").read_text()
    assert "SIGTERM received" in log and "Restarted by the job scheduler (restart 1): resuming" in log
    for split in ("train", "val", "test"):
        assert metrics[split] == straight[split], split


def test_a_job_that_reaches_its_time_limit_is_requeued_and_completes(tmp_path):
    """A 1-minute limit with SIGUSR2 30 s ahead (submitit's signal), on a run that trains for longer: the
    run saves, submitit requeues the job, and it goes on where it stopped as often as the limit comes.
    (That it ends with a straight run's numbers, the requeue test above shows.)"""
    sweep = tmp_path / "sweep"
    longer = [*LONG, "trainer.epochs=100", "hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=30"]
    proc = start_sweep(longer, sweep, tmp_path)
    job = job_id(sweep)
    output = finish(proc, job, 600)
    metrics = read_metrics(sweep / "0")
    assert metrics["status"] == "completed" and metrics["epochs"] == 100 and metrics["restarts"] >= 1, output[-2000:]
    log = (sweep / "0" / "train.log").read_text()
    assert "SIGUSR2 received" in log and "Restarted by the job scheduler (restart 1): resuming" in log


def test_a_finished_run_requeued_does_nothing_and_a_new_job_in_its_folder_is_refused(tmp_path):
    """A completed job requeued by hand (`scontrol requeue`) finds its run completed and leaves it as it
    was. A new job given the same sweep folder is another start, not a restart: refused, in one line
    that says how to resume, and the run left as it was."""
    sweep = tmp_path / "sweep"
    proc = start_sweep(TINY, sweep, tmp_path)
    job = job_id(sweep)
    finish(proc, job, 300)
    before = (sweep / "0" / "metrics.json").read_text()

    slurm("scontrol", "requeue", job)
    deadline = time.monotonic() + 300
    while subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True).stdout.strip():
        assert time.monotonic() < deadline, "the requeued job did not end"
        release_when_held(job)
        time.sleep(0.5)
    log = (sweep / "0" / "train.log").read_text()
    assert "Started again by the job scheduler, but this run has ended (completed" in log and "nothing to do" in log
    assert (sweep / "0" / "metrics.json").read_text() == before

    new_job = slurm("sbatch", "--parsable", "--wait", "-p", "local", "--mem=1G", f"--chdir={tmp_path}",
                    f"--output={tmp_path}/again.out", "--wrap",
                    f"{sys.executable} -m vaebench.cli train -m {' '.join(TINY)} hydra.sweep.dir={sweep}").strip()
    said = (tmp_path / "again.out").read_text()
    assert f"{sweep / '0'} already holds a run (completed, its checkpoints/last.pt written by SLURM job {job})" in said
    assert f"this command (SLURM job {new_job}) would start another in it" in said
    assert (sweep / "0" / "metrics.json").read_text() == before
