"""Where a run computes: the GPU when there is one (CPU otherwise), and in a parallel sweep on a
machine with several GPUs, a GPU of each job's own."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf


def device_for(cfg) -> torch.device:
    if cfg.trainer.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.trainer.device)
    job_num = _parallel_sweep_job() if device.type == "cuda" else None
    if job_num is not None and torch.cuda.device_count() > 1:
        device = torch.device("cuda", gpu_for_job(job_num, torch.cuda.device_count()))
        # Later CUDA calls that name no device (and the CUDA context itself) go to this GPU, not GPU 0.
        torch.cuda.set_device(device)
    return device


def gpu_for_job(job_num: int, gpu_count: int) -> int:
    """Round-robin: the jobs a parallel launcher runs side by side land on different GPUs."""
    return job_num % gpu_count


def _parallel_sweep_job() -> int | None:
    """hydra.job.num when Hydra's joblib launcher runs this job beside others; None otherwise (a single
    run, the basic launcher's one-at-a-time sweep, or SLURM, which gives each job its own GPUs)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if "joblib" not in str(OmegaConf.select(hydra_cfg, "launcher._target_", default="")):
        return None
    return int(hydra_cfg.job.num)
