"""A run's share of the CPUs: the CPUs it may use over the jobs running at once, what the user fixes,
what other work leaves free, measured; the count fixed for the run's numbers, kept on resume, and
followed by the training steps only where the count changes no number."""

import pytest
import torch

from vaebench.run.threads import CpuShare, ThreadPlan, cgroup_cpu_quota, jobs_at_once, numbers_depend_on_threads, plan_threads


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
    own = tmp_path / "self_cgroup"
    own.write_text("0::/\n")
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(tmp_path, own) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path, own) is None
    (tmp_path / "cpu.max").unlink()
    assert cgroup_cpu_quota(tmp_path, own) is None


def test_the_quota_is_read_from_the_process_own_cgroup_and_its_parents_v2(tmp_path):
    """A systemd CPUQuota on the service's slice, seen with the host's cgroup namespace: the root has no
    quota, the process's own cgroup none either, its parent 0.5 CPUs."""
    (tmp_path / "cpu.max").write_text("max 100000\n")
    service = tmp_path / "system.slice" / "lab.slice" / "run.service"
    service.mkdir(parents=True)
    (service / "cpu.max").write_text("max 100000\n")
    (service.parent / "cpu.max").write_text("50000 100000\n")
    own = tmp_path / "self_cgroup"
    own.write_text("0::/system.slice/lab.slice/run.service\n")
    assert cgroup_cpu_quota(tmp_path, own) == 0.5
    (service / "cpu.max").write_text("25000 100000\n")  # the tightest on the path counts
    assert cgroup_cpu_quota(tmp_path, own) == 0.25


def test_the_quota_is_read_from_the_process_own_cgroup_v1(tmp_path):
    group = tmp_path / "cpu,cpuacct" / "slurm" / "uid_0" / "job_7"
    group.mkdir(parents=True)
    (group / "cpu.cfs_quota_us").write_text("300000\n")
    (group / "cpu.cfs_period_us").write_text("100000\n")
    (group.parent / "cpu.cfs_quota_us").write_text("-1\n")
    (group.parent / "cpu.cfs_period_us").write_text("100000\n")
    own = tmp_path / "self_cgroup"
    own.write_text("12:memory:/slurm/uid_0/job_7\n4:cpu,cpuacct:/slurm/uid_0/job_7\n1:name=systemd:/init.scope\n")
    assert cgroup_cpu_quota(tmp_path, own) == 3.0
    own.write_text("4:cpu,cpuacct:/elsewhere\n")  # a cgroup with no folder here: no quota found, none invented
    assert cgroup_cpu_quota(tmp_path, own) is None


class OthersLoad:
    """Stands in for /proc/stat: the CPUs' worth of other processes' work since the last reading."""

    def __init__(self, *loads):
        self.loads = list(loads)

    def others_since_last(self):
        return self.loads.pop(0)


def test_training_follows_the_load_only_where_the_count_changes_no_number(caplog):
    before = torch.get_num_threads()
    try:
        share = CpuShare(ThreadPlan(2, 2, False, "2 CPUs this process may run on"), 2, OthersLoad(0.1, 1.0, 1.9, 0.0))
        assert share.start() == "Threads: 2 (2 CPUs this process may run on)." and torch.get_num_threads() == 2
        assert share.settle(numbers_depend=False, step=0) == [] and share.follows_load
        with caplog.at_level("INFO", logger="vaebench"):
            share.adjust()   # another run keeps a CPU busy
            assert torch.get_num_threads() == 1
            with share.recording():  # what the run records: its own count
                assert torch.get_num_threads() == 2
            assert torch.get_num_threads() == 1
            share.adjust()   # all but nothing left: still one thread
            share.adjust()   # the other run has ended
        assert torch.get_num_threads() == 2 and share.threads == 2
        told = [r.getMessage() for r in caplog.records if "busier than this run's share" in r.getMessage()]
        assert len(told) == 1 and "1 of its 2 CPUs busy" in told[0] and "hydra/launcher=joblib" in told[0]
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("depends", [True, None])
def test_a_run_whose_numbers_depend_on_the_count_keeps_it(depends):
    """None: not checked (a compiled step, a GPU), so not followed either."""
    before = torch.get_num_threads()
    try:
        share = CpuShare(ThreadPlan(2, 2, False, "2 CPUs this process may run on"), 2, OthersLoad(0.0, 1.0, 1.0))
        share.start()
        share.settle(numbers_depend=depends, step=0)
        share.adjust()
        share.adjust()
        assert torch.get_num_threads() == 2 and not share.follows_load
    finally:
        torch.set_num_threads(before)


def test_a_fixed_count_is_never_changed():
    before = torch.get_num_threads()
    try:
        share = CpuShare(ThreadPlan(1, 1, True, "trainer.threads=1"), 2, OthersLoad())
        assert share.start() == "Threads: 1 (trainer.threads=1)."
        share.settle(numbers_depend=None, step=0)
        share.adjust()  # reads no load at all
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("plan,saved,threads,said", [
    (ThreadPlan(2, 2, False, "2 CPUs"), 2, 2, "the count this run started with, from its checkpoint"),
    (ThreadPlan(4, 4, False, "4 CPUs"), 2, 2, "the count this run started with, from its checkpoint"),  # a bigger machine
    (ThreadPlan(1, 1, False, "1 CPUs"), 2, 1, "this run started with 2"),                               # a smaller one
    (ThreadPlan(1, 1, True, "trainer.threads=1"), 2, 1, "trainer.threads=1"),
])
def test_a_resume_takes_the_saved_count_where_the_machine_has_it(plan, saved, threads, said):
    before = torch.get_num_threads()
    try:
        share = CpuShare(plan, plan.most, OthersLoad(1.0))  # the load at the resume does not count
        line = share.start(saved=saved)
        assert share.threads == threads == torch.get_num_threads() and said in line
        lines = share.settle(numbers_depend=True, step=25)
        if threads == saved:
            assert lines == []
        else:
            (cost,) = lines
            assert f"started with {saved} threads and resumes with {threads}" in cost
            assert "from step 25 on it is not bit-identical" in cost and f"trainer.threads={saved}" in cost
            assert "nothing is lost" in share.settle(numbers_depend=False, step=25)[0]
    finally:
        torch.set_num_threads(before)


def test_the_check_compares_every_bit_at_both_counts():
    before = torch.get_num_threads()
    try:
        seen = []
        assert not numbers_depend_on_threads(lambda: seen.append(torch.get_num_threads()) or [torch.ones(3)], (1, 2))
        assert seen == [1, 2] and torch.get_num_threads() == before
        values = iter([[torch.tensor([1.0])], [torch.tensor([1.0 + 2**-20])]])
        assert numbers_depend_on_threads(lambda: next(values), (1, 2))
    finally:
        torch.set_num_threads(before)
