"""How many threads a run's torch uses: its share of the CPUs it may run on, so that runs sharing a
machine do not slow each other down.

The CPUs a run may use are its affinity mask (what SLURM and `taskset` set), the CPUs SLURM gave its
job (`SLURM_CPUS_PER_TASK`, where no affinity binds it) and its cgroup's CPU quota (what a container or
SLURM's cgroup sets), the fewest of them. A parallel sweep divides them among the jobs the
launcher runs at once on this machine (Hydra's joblib launcher: `hydra.launcher.n_jobs`, at most the
sweep's size). On a GPU the host needs no more than 2 threads per job. `trainer.threads` fixes the
count; so does an OMP_NUM_THREADS of the user's own (outside a joblib job, where joblib sets it).

The count is fixed when the run starts and saved in its checkpoints: every number the run records
(validation, the final evaluation) is computed with it, and a resume uses it again. A convolution's
gradient summed by 1 or by 2 threads differs in its last bits, and training makes that grow, so a count
that followed the machine's load would make a run's numbers depend on what else the machine did.

Other work on the machine is measured, not guessed: from /proc/stat, the CPU time the run's CPUs spent
busy, less the run's own. When others keep some of the run's CPUs busy as it starts, it takes the
rest, at least one thread. Later, only a run whose training step gives the same numbers at one thread
as at its own count (checked once, bit for bit, on both of its batch shapes: the MLP models' are, the
convolutional ones' are not) follows the load at each epoch's end, for its training steps only, since
that costs no number. Measured on a 2-core CPU (scripts/BENCHMARKS.md, "Runs that share the machine"):
two default runs at once trained 0.22x as fast together as one alone with 2 threads each (torch's
OpenMP threads spin while they wait for each other, burning the time slice the other run needs), 1.48x
with 1 thread each; a passive OpenMP wait policy instead cost a run alone 54%, so vaebench leaves the
wait policy as it is.
"""

from __future__ import annotations

import contextlib
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


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup"), own: Path = Path("/proc/self/cgroup")) -> float | None:
    """CPUs' worth of time this process's cgroup may use, None without a quota: the tightest `cpu.max`
    (cgroup v2) or `cpu.cfs_quota_us` / `cpu.cfs_period_us` (v1) on the path from the process's own
    cgroup (`/proc/self/cgroup`: a systemd CPUQuota, a container seen with the host's cgroup namespace)
    up to the root."""
    quotas = [q for folder in _own_cgroup_folders(root, own) for q in [_quota_in(folder)] if q is not None]
    return min(quotas) if quotas else None


def _own_cgroup_folders(root: Path, own: Path) -> list[Path]:
    """The cgroup folders that limit this process's CPU time, its own first, then each parent to the root."""
    starts = []
    try:
        lines = own.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:  # v2: "0::/path"; v1: "4:cpu,cpuacct:/path"
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            starts.append(root / path.lstrip("/"))
        elif "cpu" in controllers.split(","):
            mounted = next((root / name for name in (controllers, "cpu,cpuacct", "cpu") if (root / name).is_dir()), root / "cpu")
            starts.append(mounted / path.lstrip("/"))
    folders = []
    for start in starts:
        folder = start
        while True:
            folders.append(folder)
            if folder in (root, root / "cpu") or folder.parent == folder or not folder.is_relative_to(root):
                break
            folder = folder.parent
    # Inside a container's own cgroup namespace the process's path reads "/": the root's files are its.
    return folders + [root, root / "cpu"]


def _quota_in(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
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
    """The run's thread count: fixed when it starts (`start`), saved in its checkpoints, and in force for
    every number the run records (`recording`). Where `settle` finds that the training step's numbers do
    not depend on the count, the training steps follow the load (`adjust`, at an epoch's end): fewer
    threads while other work keeps the run's CPUs busy, the run's own count again when it leaves."""

    def __init__(self, plan: ThreadPlan, cpus: int, times: CpuTimes | None = None):
        self.plan, self.cpus = plan, cpus
        self.times = times if times is not None else CpuTimes(_affinity())
        self.threads = plan.threads   # the run's own count: what it records with, and saves
        self.training = plan.threads  # what its training steps use now
        self.follows_load = False
        self.told = False
        self.resumed_from: int | None = None  # the count a resumed run's checkpoint holds

    def start(self, saved: int | None = None) -> str:
        """Sets the run's count and returns the line the run's log shows. A new run takes its plan's
        count, less what others' load since this share was made keeps busy; a resumed one (`saved`: the
        count its checkpoint holds) takes that count again, where the plan allows it."""
        if saved is not None:
            return self._resume(int(saved))
        free = self._free(self.plan.threads)
        if free is not None and free < self.threads:
            self.threads = self.training = free
            self._set(free)
            return (f"Threads: {free} ({self.plan.why}; other processes keep {self.cpus - free} of them "
                    f"busy)." + self._remedy())
        self._set(self.threads)
        return f"Threads: {self.threads} ({self.plan.why})."

    def _resume(self, saved: int) -> str:
        if self.plan.fixed:
            self.threads = self.plan.threads
            why = self.plan.why
        elif saved <= self.plan.most:
            self.threads = saved
            why = "the count this run started with, from its checkpoint"
        else:
            self.threads = self.plan.most
            why = f"{self.plan.why}; this run started with {saved}"
        self.training = self.threads
        self.resumed_from = saved
        self._set(self.threads)
        return f"Threads: {self.threads} ({why})."

    def settle(self, numbers_depend: bool | None, step: int) -> list[str]:
        """What the run learned of its training step (`numbers_depend`: whether it gives other numbers at
        one thread than at the run's count; None where that was not checked: one thread, a GPU, a
        compiled step), and the lines it says: the cost of a resume on another count, and whether the
        training steps may follow the load."""
        lines = []
        saved = self.resumed_from
        if saved is not None and saved != self.threads:
            if numbers_depend is False:
                cost = "its training step gives the same numbers at any thread count (checked), so nothing is lost"
            else:
                how = "(checked)" if numbers_depend else "(not checked: a compiled step or a GPU run)"
                cost = (f"its numbers {'depend' if numbers_depend else 'may depend'} on the thread count {how}, so from step "
                        f"{step} on it is not bit-identical to a run that never stopped: its sums round differently, "
                        f"by about 1e-7 at first, and training makes that grow. trainer.threads={saved} keeps it exact "
                        f"where the machine has {saved} CPUs")
            lines.append(f"This run started with {saved} threads and resumes with {self.threads}: {cost}.")
        self.follows_load = numbers_depend is False and not self.plan.fixed and self.plan.most > 1
        return lines

    def adjust(self) -> None:
        """At an epoch's end: the training steps take as many threads as other work leaves free, up to the
        plan's most, where that changes no number (`settle`); said once when the machine is busy."""
        if not self.follows_load:
            return
        free = self._free(self.plan.most)
        if free is None or free == self.training:
            return
        before, self.training = self.training, free
        self._set(free)
        if free < before and not self.told:
            log.info(f"This machine is busier than this run's share of it: other processes keep "
                     f"{self.cpus - free} of its {self.cpus} CPUs busy. Training with {free} thread"
                     f"{'s' if free > 1 else ''} from here on, instead of {before}; its numbers do not depend on it "
                     f"(checked), and what it records uses {self.threads}." + self._remedy())
            self.told = True
        else:
            logging.getLogger("vaebench.record").info(f"Threads: {free} for training (other processes use "
                                                      f"{self.cpus - free} of {self.cpus} CPUs).")

    def stop_following(self) -> None:
        """The run's own count from here on, for every step: a compiled step's kernels are built for one count."""
        self.follows_load = False
        if self.training != self.threads:
            self.training = self.threads
            self._set(self.threads)

    @contextlib.contextmanager
    def recording(self):
        """Computes what the run records (validation, the final evaluation) with the run's own count."""
        if self.training == self.threads:
            yield
            return
        self._set(self.threads)
        try:
            yield
        finally:
            self._set(self.training)

    def _free(self, most: int) -> int | None:
        if self.plan.fixed:
            return None
        others = self.times.others_since_last()
        if others is None:
            return None
        return max(1, min(most, math.floor(self.cpus - others + 0.5)))

    def _remedy(self) -> str:
        self.told = True
        return (" Runs that share a machine go faster as one sweep (vaebench train -m hydra/launcher=joblib "
                "hydra.launcher.n_jobs=N ...), which gives each its share from the start; trainer.threads=N "
                "fixes the count.")

    @staticmethod
    def _set(threads: int) -> None:
        import torch

        torch.set_num_threads(threads)


def numbers_depend_on_threads(numbers, counts: tuple[int, int]) -> bool:
    """Whether `numbers()` (a list of tensors) come out different, in any bit, at the two thread counts.
    torch's count is put back."""
    import torch

    before = torch.get_num_threads()
    try:
        results = []
        for count in counts:
            torch.set_num_threads(count)
            results.append(numbers())
    finally:
        torch.set_num_threads(before)
    return any(a.shape != b.shape or not torch.equal(a, b) for a, b in zip(*results))


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
