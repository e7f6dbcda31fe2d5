"""On a CUDA device only (skipped elsewhere): what a CPU cannot exercise. Training on the GPU in
float32 and in bf16 autocast, a resume there, and `vaebench eval` of a GPU run."""

import math

import pytest
import torch

from tests.conftest import TINY, read_metrics, run_cli, run_dirs

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

ON_GPU = [arg for arg in TINY if not arg.startswith("trainer.device=")] + ["trainer.device=cuda"]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_on_the_gpu_logs_finite_terms(tmp_path, precision):
    proc = run_cli(["train", *ON_GPU, "prior=vamp", "prior.K=10", f"trainer.precision={precision}"], cwd=tmp_path)
    assert "on cuda" in proc.stdout
    (run_dir,) = run_dirs(tmp_path)
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed"
    for split in ("train", "val", "test"):
        assert all(math.isfinite(v) for v in metrics[split].values()), metrics[split]
    assert metrics["test"]["log_likelihood"] >= metrics["test"]["elbo"] - 1.0  # IW bound above the ELBO, up to MC error


def test_a_gpu_run_resumes_and_evaluates(tmp_path):
    run_cli(["train", *ON_GPU, "trainer.epochs=1"], cwd=tmp_path)
    (run_dir,) = run_dirs(tmp_path)
    proc = run_cli(["train", f"resume={run_dir}", "trainer.epochs=2"], cwd=tmp_path)
    assert "Resuming" in proc.stdout
    assert read_metrics(run_dir)["status"] == "completed"
    run_cli(["eval", str(run_dir), "eval.max_points=50", "eval.iw_samples=10"], cwd=run_dir)
    assert list((run_dir / "evals").glob("test_best_*.json"))
