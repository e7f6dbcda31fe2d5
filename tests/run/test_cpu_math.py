"""The start-up switch to torch's fast CPU kernels changes which kernel runs, never a number."""

import subprocess
import sys

FRESH_PROCESS = """
import torch, torch.nn.functional as F
torch.manual_seed(0)
x = 10 * torch.randn(50_000)
before = [torch.log1p(x.abs()), F.softplus(x), F.logsigmoid(x)]
from vaebench.run.cpu_math import use_fast_cpu_math
use_fast_cpu_math()
use_fast_cpu_math()
after = [torch.log1p(x.abs()), F.softplus(x), F.logsigmoid(x)]
print(all(torch.equal(a, b) for a, b in zip(before, after)))
"""


def test_fast_cpu_math_gives_bit_identical_results():
    # A fresh interpreter: in this one some test may already have run a pow.
    out = subprocess.run([sys.executable, "-c", FRESH_PROCESS], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True", out.stderr
