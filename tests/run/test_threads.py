"""A run's share of the CPUs: the CPUs it may use over the jobs running at once, what the user fixes,
and what other work leaves free, measured."""

import pytest
import torch

from vaebench.run.threads import CpuShare, ThreadPlan, cgroup_cpu_quota, jobs_at_once, plan_threads


@pytest.mark.parametrize("launcher,n_jobs,sweep,cpus,expected", [
    ("hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", 2, 4, 8, 2),
    ("hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", 8, 3, 8, 3),   # at most the sweep's size
    ("hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", None, 4, 8, 1),
    ("hydra._internal.core_plugins.basic_launcher.BasicLauncher", 4, 4, 8, 1),  # one run after another
])
def test_the_jobs_a_launcher_runs_at_once(launcher, n_jobs, sweep, cpus, expected):
    assert jobs_at_once(launcher, n_jobs, sweep, cpus) == expected


def test_joblibs_negative_n_jobs_counts_back_from_the_cpus(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert jobs_at_once("joblib", -1, None, 8) == 8 and jobs_at_once("joblib", -2, 100, 8) == 7


@pytest.mark.parametrize("requested,omp,cpus,jobs,device,threads,fixed", [
    (None, None, 8, 1, "cpu", 8, False),
    (None, None, 8, 2, "cpu", 4, False),
    (None, None, 2, 4, "cpu", 1, False),      # never below one
    (None, None, 16, 1, "cuda", 2, False),    # the host side of a GPU run
    (3, "6", 8, 1, "cpu", 3, True),           # trainer.threads wins
    (None, "6", 8, 1, "cpu", 6, True),        # then the user's OMP_NUM_THREADS
])
def test_the_thread_plan(requested, omp, cpus, jobs, device, threads, fixed):
    plan = plan_threads(requested, omp, cpus, f"{cpus} CPUs this process may run on", jobs, device)
    assert (plan.threads, plan.most, plan.fixed) == (threads, threads, fixed)
    assert (f"shared by the {jobs} jobs" in plan.why) == (jobs > 1 and not fixed)


def test_a_cgroup_quota_caps_the_cpus(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    assert cgroup_cpu_quota(tmp_path) is None


class OthersLoad:
    """Stands in for /proc/stat: the CPUs' worth of other processes' work since the last reading."""

    def __init__(self, *loads):
        self.loads = list(loads)

    def others_since_last(self):
        return self.loads.pop(0)


def test_a_run_takes_what_other_work_leaves_and_says_so_once(caplog):
    before = torch.get_num_threads()
    try:
        share = CpuShare(ThreadPlan(2, 2, False, "2 CPUs this process may run on"), 2, OthersLoad(0.1, 1.0, 1.9, 0.0))
        assert share.start() == "Threads: 2 (2 CPUs this process may run on)." and torch.get_num_threads() == 2
        with caplog.at_level("INFO", logger="vaebench"):
            share.adjust()   # another run keeps a CPU busy
            assert torch.get_num_threads() == 1
            share.adjust()   # all but nothing left: still one thread
            share.adjust()   # the other run has ended
        assert torch.get_num_threads() == 2
        told = [r.getMessage() for r in caplog.records if "busier than this run's share" in r.getMessage()]
        assert len(told) == 1 and "1 of its 2 CPUs busy" in told[0] and "hydra/launcher=joblib" in told[0]
    finally:
        torch.set_num_threads(before)


def test_a_fixed_count_is_never_changed():
    before = torch.get_num_threads()
    try:
        share = CpuShare(ThreadPlan(1, 1, True, "trainer.threads=1"), 2, OthersLoad())
        assert share.start() == "Threads: 1 (trainer.threads=1)."
        share.adjust()  # reads no load at all
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
