"""TensorBoard: scalars as `<split>/<term>`, histograms, image grids and HParams. Knows names and
tensors only, never models."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary


class Board:
    def __init__(self, log_dir: Path, purge_step: int | None = None):
        # purge_step: a resumed run drops whatever an earlier attempt logged after its checkpoint
        # (from that step on; the checkpoint step itself was logged before the checkpoint was written).
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def scalars(self, split: str, values: dict[str, float | torch.Tensor], step: int) -> None:
        for name, value in values.items():
            value = torch.as_tensor(value)
            if value.numel() == 1:
                self.writer.add_scalar(f"{split}/{name}", float(value), step)
            else:
                self.writer.add_histogram(f"{split}/{name}", value.detach().float().cpu(), step)

    def histogram(self, tag: str, values: torch.Tensor, step: int) -> None:
        self.writer.add_histogram(tag, values.detach().float().cpu(), step)

    def image_grid(self, tag: str, images: torch.Tensor, step: int, nrow: int = 10) -> None:
        """Images shaped (N, C, H, W) with values in [0, 1]."""
        # Imported here: torchvision takes longer to import than torch, and a run refused for bad input
        # or stopped before its first picture should not wait for it.
        from torchvision.utils import make_grid

        grid = make_grid(images.detach().float().clamp(0, 1).cpu(), nrow=nrow, padding=1, pad_value=0.5)
        self.writer.add_image(tag, grid, step)

    def figure(self, tag: str, figure, step: int) -> None:
        self.writer.add_figure(tag, figure, step)

    def hparams(self, params: dict, metric_tags: list[str]) -> None:
        """Register this run in the HParams dashboard; the metric values are the scalars logged
        under `metric_tags` in this same run, so nothing is duplicated."""
        clean = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in params.items()}
        for summary in hparams_summary(clean, {tag: 0.0 for tag in metric_tags}):
            self.writer.file_writer.add_summary(summary)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
