"""A long evaluation on a CPU gives the C heap's free pages back (glibc keeps them otherwise: full
MNIST's test log p(x) grew by megabytes a point until a 24 GB machine killed the run)."""

import subprocess
import sys

import pytest

from vaebench.metrics import evaluation

# In a fresh process (the heap's state decides what glibc keeps): 400 MB of 8 MB blocks, each followed by
# a small tensor that outlives it, as an evaluation's calls leave them; the blocks freed; then the
# resident MiB above the start, with and without vaebench's release.
FRAGMENTED = """
import sys, torch
def resident_mib():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
first = torch.empty(2_000_000).fill_(1)  # freeing one 8 MB block raises glibc's mmap threshold above it,
del first                                # as an evaluation's first call does: later blocks come from the heap
start = resident_mib()
blocks, kept = [], []
for _ in range(50):
    blocks.append(torch.empty(2_000_000).fill_(1))
    kept.append(torch.ones(10))
del blocks
if sys.argv[1] == "release":
    from vaebench.metrics import evaluation  # imported here: importing it first lays the heap out otherwise
    evaluation.release_freed_memory()
print(resident_mib() - start)
"""


def resident_growth(how: str) -> float:
    proc = subprocess.run([sys.executable, "-c", FRAGMENTED, how], capture_output=True, text=True, check=True, timeout=120)
    return float(proc.stdout.split()[-1])


@pytest.mark.skipif(evaluation._MALLOC_TRIM is None, reason="malloc_trim is glibc's")
def test_the_pages_of_freed_tensors_go_back_to_the_system():
    assert resident_growth("keep") > 300  # glibc keeps what the freed blocks held
    assert resident_growth("release") < 100
