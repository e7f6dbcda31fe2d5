"""A trained run read back from its folder: one of its checkpoints, its config as this vaebench reads it
(a run saved by an earlier vaebench included: `config.saved`), and the data and model that config names,
with the checkpoint's weights. `vaebench eval` and `vaebench sample` start here."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from vaebench.config.components import build_dataset, build_model
from vaebench.config.saved import saved_config
from vaebench.config.validate import validate_config
from vaebench.datasets import Dataset
from vaebench.errors import UserError
from vaebench.run import checkpoint
from vaebench.run.cpu_math import use_fast_cpu_math
from vaebench.run.device import device_for

CHECKPOINTS = ("best", "last")


def read_checkpoint(run_dir: Path, which: str) -> tuple[Path, dict, DictConfig]:
    """The path of RUN_DIR/checkpoints/<which>.pt, its state, and the run's config from it."""
    if which not in CHECKPOINTS:
        raise UserError(f"checkpoint={which!r} is not valid; choose best or last.")
    path = run_dir / "checkpoints" / f"{which}.pt"
    if not path.is_file():
        raise UserError(f"{run_dir} has no checkpoints/{which}.pt; is it a vaebench run folder?")
    state = checkpoint.load(path)
    return path, state, OmegaConf.create(saved_config(state["config"]))


def checked_device(cfg: DictConfig) -> torch.device:
    """Checks `cfg` as a training run's is checked; the device `cfg.trainer.device` asks for."""
    validate_config(cfg, dict(cfg.choices))
    device = device_for(cfg)
    if device.type == "cpu":
        use_fast_cpu_math()
    return device


def rebuild(cfg: DictConfig, state: dict, device: torch.device) -> tuple[Dataset, torch.nn.Module]:
    """The run's data (split by its seed, as in training) and its model with the checkpoint's weights."""
    torch.manual_seed(int(cfg.seed))
    data = build_dataset(cfg.dataset, int(cfg.seed))
    model = build_model(cfg, data.data_shape, data.scored("train"), dict(cfg.choices)).to(device)
    model.load_state_dict(state["model"])
    return data, model
