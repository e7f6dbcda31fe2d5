"""Issue 37: a job scheduler's restart is recognised only for the same job, restarted; any other start in
a folder that holds a run is refused, and a resume that would change what the run is is refused naming
the keys. SLURM is stood in for by its environment variables (tests/run/test_slurm.py runs a real one)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY, read_metrics, run_cli, run_cli_stopped_after


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(path, x=(np.random.default_rng(4).random((400, 8, 8)) < 0.3).astype(np.float32))
    return path


def slurm(job: str, restarts: int | None = None) -> dict:
    return {"SLURM_JOB_ID": job, **({"SLURM_RESTART_COUNT": str(restarts)} if restarts is not None else {})}


def fingerprint(run_dir: Path) -> tuple[str, str]:
    """What a refused start must leave as it was: the run's record and its last checkpoint."""
    return ((run_dir / "metrics.json").read_text(),
            hashlib.sha256((run_dir / "checkpoints" / "last.pt").read_bytes()).hexdigest())


@pytest.fixture
def stopped_job(tmp_path, data) -> tuple[Path, list[str]]:
    """A run of SLURM job 111, stopped by SIGTERM at step 5 (of 2 epochs of 4 steps)."""
    run_dir = tmp_path / "run"
    args = ["train", *TINY, "dataset=npz", f"dataset.path={data}", "trainer.batch_size=80", f"hydra.run.dir={run_dir}"]
    run_cli_stopped_after(5, [*args, "beta=1"], tmp_path, env=slurm("111"))
    return run_dir, args


@pytest.mark.parametrize("env,who", [
    (slurm("222"), "SLURM job 222"),                      # a new job given the old run's folder
    (slurm("111"), "SLURM job 111, not restarted since"),  # a second command in the same salloc shell
    ({"SLURM_JOB_ID": ""}, "not a SLURM job"),            # any start with hydra.run.dir of an earlier run
], ids=["another job", "the same job not restarted", "no job"])
def test_another_start_in_a_run_folder_is_refused_and_leaves_the_run_as_it_was(stopped_job, tmp_path, env, who):
    run_dir, args = stopped_job
    before = fingerprint(run_dir)
    proc = run_cli([*args, "beta=4", "trainer.epochs=3"], tmp_path, check=False, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{run_dir} already holds a run (interrupted, its checkpoints/last.pt written by SLURM job 111)" in proc.stderr
    assert f"this command ({who}) would start another in it" in proc.stderr
    assert f"vaebench train resume={run_dir}" in proc.stderr
    assert fingerprint(run_dir) == before and read_metrics(run_dir)["config"]["beta"] == 1


def test_the_same_job_restarted_continues_its_own_run(stopped_job, tmp_path):
    run_dir, args = stopped_job
    proc = run_cli([*args, "beta=1"], tmp_path, env=slurm("111", restarts=1))
    assert "Restarted by the job scheduler (restart 1): resuming" in proc.stdout
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["restarts"] == 1 and metrics["config"]["beta"] == 1
    again = run_cli([*args, "beta=1"], tmp_path, env=slurm("111", restarts=2))  # requeued once more after it ended
    assert "this run has ended" in again.stdout and read_metrics(run_dir) == metrics


def test_a_restart_whose_command_changes_the_run_is_refused_naming_the_keys(stopped_job, tmp_path):
    run_dir, args = stopped_job
    proc = run_cli([*args, "beta=4", "prior=mog"], tmp_path, check=False, env=slurm("111", restarts=1))
    assert proc.returncode == 2
    assert "beta=4 (the run's own: beta=1); prior=mog (the run's own: prior=standard)" in proc.stderr
    assert "these change what the run is" in proc.stderr and "trainer.epochs, trainer.patience" in proc.stderr


@pytest.mark.parametrize("overrides,named", [
    (["beta=4"], ["beta=4 (the run's own: beta=1)"]),
    (["trainer.lr=0.01", "trainer.compile=true"], ["trainer.lr=0.01 (the run's own: trainer.lr=0.0005)",
                                                  "trainer.compile=True (the run's own: trainer.compile=auto)"]),
    (["trainer.batch_size=40"], ["trainer.batch_size=40 (the run's own: trainer.batch_size=80)"]),
])
def test_a_resume_that_would_change_what_the_run_is_is_refused_naming_every_key(stopped_job, tmp_path, overrides, named):
    run_dir, _ = stopped_job
    proc = run_cli(["train", f"resume={run_dir}", *overrides], tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    for text in named:
        assert text in proc.stderr
    assert read_metrics(run_dir)["status"] == "interrupted"


def test_a_resume_may_repeat_the_runs_own_settings_and_change_its_length(stopped_job, tmp_path):
    run_dir, _ = stopped_job
    run_cli(["train", f"resume={run_dir}", "beta=1", "trainer.batch_size=80", "trainer.epochs=3", "eval.iw_samples=4"],
            tmp_path)
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["epochs"] == 3 and metrics["config"]["eval"]["iw_samples"] == 4
