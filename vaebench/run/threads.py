"""How many threads a run's torch uses: its share of the CPUs it may run on, so that runs sharing a
machine do not slow each other down.

The CPUs a run may use are its affinity mask (what SLURM and `taskset` set), the CPUs SLURM gave its
job (`SLURM_CPUS_PER_TASK`, where no affinity binds it) and its cgroup's CPU quota (what a container or
SLURM's cgroup sets), the fewest of them. A parallel sweep divides them among the jobs the
launcher runs at once on this machine (Hydra's joblib launcher: `hydra.launcher.n_jobs`, at most the
sweep's size). On a GPU the host needs no more than 2 threads per job. `trainer.threads` fixes the
count; so does an OMP_NUM_THREADS of the user's own (outside a joblib job, where joblib sets it).

Other work on the machine is measured, not guessed: from /proc/stat, the CPU time the run's CPUs spent
busy, less the run's own. When others keep some of the run's CPUs busy (two `vaebench train` commands
at once), the run takes the rest, at least one thread, and says so once with the remedy. Measured on a
2-core CPU (scripts/BENCHMARKS.md, "Runs that share the machine"): two default runs at once trained
0.22x as fast together as one alone with 2 threads each (torch's OpenMP threads spin while they wait
for each other, burning the time slice the other run needs), 1.48x with 1 thread each; a passive
OpenMP wait policy instead cost a run alone 54%, so vaebench leaves the wait policy as it is.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# At most this many threads for the host side of a run on a GPU: data sit on the device already.
GPU_HOST_THREADS = 2


def usable_cpus() -> tuple[int, str]:
    """The CPUs this process may run on, and in words why that many."""
    try:
        mask = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity masks here (macOS)
        mask = os.cpu_count() or 1
    why = f"{mask} CPUs this process may run on"
    granted = os.environ.get("SLURM_CPUS_PER_TASK", "")  # a SLURM job's CPUs, where no affinity mask binds it
    if granted.isdigit() and 0 < int(granted) < mask:
        mask, why = int(granted), f"{granted} CPUs SLURM gave this job (cpus_per_task)"
    quota = cgroup_cpu_quota()
    if quota is not None and quota < mask:
        return max(1, math.floor(quota)), f"{why}, {quota:g} by its cgroup's CPU quota"
    return mask, why


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs' worth of time the process's cgroup may use (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us`);
    None without a quota."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def jobs_at_once(launcher_target: str, n_jobs, sweep_size: int | None, cpus: int) -> int:
    """How many jobs of a sweep run side by side on this machine: joblib's n_jobs (negative counts back
    from the CPUs, -1: one per CPU), at most the sweep's size; 1 for any other launcher."""
    if "joblib" not in launcher_target or n_jobs is None:
        return 1
    n_jobs = int(n_jobs)
    at_once = n_jobs if n_jobs > 0 else max(1, (os.cpu_count() or cpus) + 1 + n_jobs)
    return max(1, min(at_once, sweep_size or at_once))


@dataclass(frozen=True)
class ThreadPlan:
    threads: int   # what the run starts with
    most: int      # what it may use when the machine has room; == threads when fixed
    fixed: bool    # set by the user: never changed
    why: str


def plan_threads(requested: int | None, user_omp: str | None, cpus: int, cpus_why: str, jobs: int,
                 device_type: str) -> ThreadPlan:
    """The thread count a run starts with, the most it may take, and why."""
    if requested is not None:
        return ThreadPlan(int(requested), int(requested), True, f"trainer.threads={requested}")
    if user_omp and user_omp.strip().isdigit() and int(user_omp) > 0:
        return ThreadPlan(int(user_omp), int(user_omp), True, f"OMP_NUM_THREADS={user_omp.strip()}")
    share = max(1, cpus // jobs)
    why = cpus_why + (f", shared by the {jobs} jobs the joblib launcher runs at once" if jobs > 1 else "")
    if device_type == "cuda" and share > GPU_HOST_THREADS:
        share, why = GPU_HOST_THREADS, f"{why}; on a GPU the host side needs {GPU_HOST_THREADS}"
    return ThreadPlan(share, share, False, why)


class CpuTimes:
    """Busy CPU time of a set of CPUs (from /proc/stat) and this process's own, between two readings."""

    def __init__(self, cpus: set[int] | None = None, stat: Path = Path("/proc/stat")):
        self.stat, self.cpus = stat, cpus
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.last = self.read()

    def read(self) -> tuple[float, float, float] | None:
        """(busy seconds of the CPUs, this process's CPU seconds, wall seconds), or None without /proc."""
        import time

        try:
            lines = self.stat.read_text().splitlines()
        except OSError:
            return None
        busy = 0
        for line in lines:
            name, *fields = line.split()
            if not name.startswith("cpu") or name == "cpu" or (self.cpus is not None and int(name[3:]) not in self.cpus):
                continue
            values = [int(v) for v in fields]
            busy += sum(values) - values[3] - (values[4] if len(values) > 4 else 0)  # all but idle and iowait
        times = os.times()
        return busy / self.tick, times.user + times.system, time.monotonic()

    def others_since_last(self) -> float | None:
        """CPUs' worth of work that other processes did on these CPUs since the last call (or creation)."""
        now = self.read()
        before, self.last = self.last, now
        if now is None or before is None or now[2] - before[2] < 0.05:
            return None
        return max(0.0, (now[0] - before[0]) - (now[1] - before[1])) / (now[2] - before[2])


class CpuShare:
    """The run's thread count over its life: set at the start, then at each `adjust()` (an epoch's end)
    to what other work leaves of the run's CPUs, between 1 and the plan's most."""

    def __init__(self, plan: ThreadPlan, cpus: int, times: CpuTimes | None = None):
        self.plan, self.cpus = plan, cpus
        self.times = times if times is not None else CpuTimes(_affinity())
        self.threads = plan.threads
        self.told = False

    def start(self) -> str:
        """Sets the thread count the run starts with (others' load since this share was made counted)
        and returns the line the run's log shows."""
        free = self._free()
        if free is not None and free < self.threads:
            self.threads = free
            self._set()
            return (f"Threads: {self.threads} ({self.plan.why}; other processes keep {self.cpus - free} of them "
                    f"busy)." + self._remedy())
        self._set()
        return f"Threads: {self.threads} ({self.plan.why})."

    def adjust(self) -> None:
        """At an epoch's end: as many threads as other work leaves free, said once when the machine is busy."""
        free = self._free()
        if free is None or free == self.threads:
            return
        before, self.threads = self.threads, free
        self._set()
        if free < before and not self.told:
            log.info(f"This machine is busier than this run's share of it: other processes keep "
                     f"{self.cpus - free} of its {self.cpus} CPUs busy. Training with {free} thread"
                     f"{'s' if free > 1 else ''} from here on, instead of {before}." + self._remedy())
            self.told = True
        else:
            logging.getLogger("vaebench.record").info(f"Threads: {self.threads} (other processes use "
                                                      f"{self.cpus - free} of {self.cpus} CPUs).")

    def _free(self) -> int | None:
        if self.plan.fixed:
            return None
        others = self.times.others_since_last()
        if others is None:
            return None
        return max(1, min(self.plan.most, math.floor(self.cpus - others + 0.5)))

    def _remedy(self) -> str:
        self.told = True
        return (" Runs that share a machine go faster as one sweep (vaebench train -m hydra/launcher=joblib "
                "hydra.launcher.n_jobs=N ...), which gives each its share from the start; trainer.threads=N "
                "fixes the count.")

    def _set(self) -> None:
        import torch

        torch.set_num_threads(self.threads)


def _affinity() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


_TORCH_DEFAULT: list[int] = []


def torch_default_threads() -> int:
    """torch's own thread count in this process before vaebench set one (on a CPU with two hardware
    threads per core it counts cores): never more than that."""
    if not _TORCH_DEFAULT:
        import torch

        _TORCH_DEFAULT.append(torch.get_num_threads())
    return _TORCH_DEFAULT[0]


def share_for(requested: int | None, jobs: int, device) -> CpuShare:
    """The run's share of the CPUs (not yet applied: `start()` applies it), measuring others' load from now on."""
    cpus, why = usable_cpus()
    # torch's default counts cores, unless OMP_NUM_THREADS set it (the user, or joblib in its workers).
    if "OMP_NUM_THREADS" not in os.environ and torch_default_threads() < cpus:
        cpus, why = torch_default_threads(), f"{why}, {torch_default_threads()} of them cores for torch"
    user_omp = None if jobs > 1 else os.environ.get("OMP_NUM_THREADS")  # in a joblib job, joblib set it
    return CpuShare(plan_threads(requested, user_omp, cpus, why, jobs, getattr(device, "type", str(device))), cpus)
