"""TensorBoard: scalars as `<split>/<term>`, histograms, image grids, HParams and a text summary.
Knows names and tensors only, never models.

TensorBoard's TIME SERIES orders tag groups by name (character by character, digits as numbers) and
opens the first two: `train` and `val`, the curves. Values measured once (the best checkpoint's final
terms, a `vaebench eval`) go into the run's own event file under `verdict/`, which sorts after them
and before the pictures under `visuals/`: a run keeps one entry and one colour in the run selector,
its end-of-run dots share its curves' colour, and no card of a single dot opens the page."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

# The tag group of values measured once, by what measured them: `verdict/final/val/elbo` (the final
# evaluation), `verdict/eval/test/log_likelihood` (a `vaebench eval`). Groups sort by name:
# train < val < verdict < visuals.
VERDICT = "verdict"


def verdict_tag(source: str, tag: str) -> str:
    """`verdict/final/val/elbo` for the final evaluation's `val/elbo`."""
    return f"{VERDICT}/{source}/{tag}"


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

    def hparams(self, params: dict, metrics: dict[str, str], source: str = "final", varied=frozenset()) -> None:
        """Register this run in the HParams dashboard. `metrics` maps the tags of end-of-run values
        (`val/elbo`), which `single_values(source, ...)` writes into this run under `verdict/<source>/`,
        to the names the dashboard shows. TensorBoard ticks the first five metrics, and the first five
        hyperparameters, those marked as differing between runs (`varied`: the sweep's axes) first,
        then by name."""
        from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

        clean = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in params.items()}
        names = {verdict_tag(source, tag): shown for tag, shown in metrics.items()}
        experiment, *session = hparams_summary(clean, {tag: 0.0 for tag in names})
        value = experiment.value[0]
        content = HParamsPluginData.FromString(value.metadata.plugin_data.content)
        for info in content.experiment.hparam_infos:
            info.differs = info.name in varied
        for info in content.experiment.metric_infos:
            info.display_name = names[info.name.tag]
            info.name.group = ""  # the run itself, not a sub-run
        value.metadata.plugin_data.content = content.SerializeToString()
        for summary in (experiment, *session):
            self.writer.file_writer.add_summary(summary)

    def single_values(self, source: str, values: dict[str, float], step: int) -> None:
        """Values measured once (`source`: "final" for the best checkpoint's final terms, "eval" for a
        `vaebench eval`) into this run's own event file, a tag `val/elbo` as `verdict/<source>/val/elbo`:
        in a sweep, one card per term with a dot per run in the run's colour."""
        for tag, value in values.items():
            self.writer.add_scalar(verdict_tag(source, tag), float(value), step)
        self.writer.flush()

    def text(self, tag: str, markdown: str, step: int) -> None:
        self.writer.add_text(tag, markdown, step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
