"""A Hydra callback for sweeps: at the end of a multirun, say where the runs are and how to compare them."""

from __future__ import annotations

from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class SweepSummary(Callback):
    def __init__(self) -> None:
        self.sweep_dir: Path | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        # hydra.sweep.dir holds ${now:...}: read it once, at the start, as the launcher does.
        self.sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = self.sweep_dir or Path(str(config.hydra.sweep.dir)).absolute()
        print(f"\nSweep folder: {sweep_dir}")
        print(f"Compare its runs:  vaebench report {sweep_dir}")
        print(f"TensorBoard:       tensorboard --logdir {sweep_dir}")
