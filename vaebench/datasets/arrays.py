"""A dataset as tensors in memory: the `Dataset` every dataset function returns, splits fixed by the
seed, binarisation. `from_arrays` makes a `Dataset` of a pool of images, as the shipped datasets do.

Every dataset is a `Dataset` of float tensors shaped (N, *data_shape); batches are drawn by index on
the training device, so no DataLoader is involved.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch

from vaebench.errors import UserError

@dataclass
class Factors:
    """The known generative factors of a dataset's points: each point's class of each factor, per
    split, shaped (N, n_factors), with the factors' names and numbers of classes."""
    names: tuple[str, ...]
    sizes: tuple[int, ...]
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor

    def split(self, name: str) -> torch.Tensor:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


@dataclass
class Dataset:
    name: str
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    # Dynamic binarisation draws a fresh Bernoulli image every time a training point is used;
    # validation and test are binarised once, so their scores compare across epochs and runs.
    dynamic_binarize: bool = False
    # Data with known generative factors (vaebench.datasets.with_factors) carry them here; the disentanglement metrics read them.
    factors: Factors | None = None

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])

    def split(self, name: str) -> torch.Tensor:
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def labels(self, name: str) -> torch.Tensor | None:
        return {"train": self.train_labels, "val": self.val_labels, "test": self.test_labels}[name]

    def to(self, device: torch.device | str) -> Dataset:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return replace(
            self,
            train=move(self.train), val=move(self.val), test=move(self.test),
            train_labels=move(self.train_labels), val_labels=move(self.val_labels),
            test_labels=move(self.test_labels),
        )

    def scored(self, name: str) -> torch.Tensor:
        """The split as every evaluation scores it: dynamically binarised training points as one fixed
        Bernoulli image each (`fixed_binarization`), the others as they are."""
        x = self.split(name)
        return fixed_binarization(x) if name == "train" and self.dynamic_binarize else x

    def train_batch(self, index: torch.Tensor) -> torch.Tensor:
        x = self.train[index]
        return bernoulli_image(x) if self.dynamic_binarize else x


def bernoulli_image(x: torch.Tensor) -> torch.Tensor:
    """A Bernoulli(x) draw of every pixel of `x` (values in [0, 1]), as a float tensor of 0s and 1s.

    Each pixel is u < x with u uniform on the 2^16 levels k / 2^16, so P(1) is x rounded up to the
    next multiple of 2^-16 (exact at 0 and 1, within 1.6e-5 elsewhere: far below any Monte-Carlo
    error of training). 16 bits are all the randomness a pixel needs, and one full-range 64-bit
    draw makes four of them: on a CPU, whose generator makes one number at a time, this is twice
    as fast as torch.rand_like(x) < x (one draw per pixel) and eight times torch.bernoulli. A GPU's
    counter-based generator (Philox) makes a 32-bit uniform per pixel cheaply; there it draws one.
    """
    if x.device.type != "cpu":
        return (torch.rand_like(x) < x).to(x.dtype)
    n = x.numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)
    u = bits.view(torch.int16)[:n].view(x.shape)  # uniform on -2^15 .. 2^15 - 1
    return (u < x * 65536 - 32768).to(x.dtype)


# The seed of every evaluation's randomness (`evaluate.fixed_randomness`) and of the fixed binarisation.
EVAL_SEED = 1234


def fixed_binarization(x: torch.Tensor) -> torch.Tensor:
    """One Bernoulli image per point, the same in every evaluation of the split (the final metrics,
    `vaebench eval` and the aggregate-posterior prior see the same images), drawn on the CPU so that a
    run trained on a GPU and evaluated on a CPU sees them too."""
    return torch.bernoulli(x.cpu(), generator=torch.Generator().manual_seed(EVAL_SEED)).to(x.device)


Binarize = Literal["dynamic", "static", "none"]


def from_arrays(name: str, x: torch.Tensor, y: torch.Tensor | None = None, *, seed: int, val_size: float,
                test_size: float, binarize: Binarize = "none", source: str = "") -> Dataset:
    """A pool of points (N, *shape) with optional labels, split into train / val / test by `seed`
    (sizes are counts, or fractions of N below 1) and binarised as `binarize` says. `source` names
    the data in error messages (default `dataset=<name>`)."""
    pools = split_pool(x, y, val_size, test_size, seed)
    return binarized(name, pools, binarize, seed, source)


def binarized(name: str, pools, binarize: Binarize, seed: int, source: str = "") -> Dataset:
    """The Dataset of three (x, labels) pools. `dynamic` draws a fresh Bernoulli image each time a
    training point is used and binarises val and test once, with the seed; `static` binarises all
    three once; `none` keeps the values."""
    (train, train_y), (val, val_y), (test, test_y) = pools
    if binarize != "none":
        _require_probabilities(source or f"dataset={name}", binarize, train, val, test)
        generator = torch.Generator().manual_seed(seed)
        val, test = (torch.bernoulli(t, generator=generator) for t in (val, test))
        if binarize == "static":
            train = torch.bernoulli(train, generator=generator)
    return Dataset(name, train, val, test, train_y, val_y, test_y, dynamic_binarize=binarize == "dynamic")


def _require_probabilities(source: str, binarize: str, *splits: torch.Tensor) -> None:
    """Binarising draws Bernoulli(x) images, so every value must be a probability."""
    splits = [x for x in splits if x.numel()]
    low, high = min(float(x.min()) for x in splits), max(float(x.max()) for x in splits)
    if low < 0 or high > 1:
        raise UserError(
            f"{source}: values lie in [{low:g}, {high:g}], but dataset.binarize={binarize} draws "
            "Bernoulli images from them and needs values in [0, 1]. Rescale the data to [0, 1] (uint8 "
            "arrays are divided by 255 for you), or use dataset.binarize=none model.likelihood=gaussian."
        )


def split_pool(x, y, val_size, test_size, seed):
    n = len(x)
    n_val, n_test = _count(val_size, n, "val_size"), _count(test_size, n, "test_size")
    if n_val + n_test >= n:
        raise UserError(f"dataset.val_size + dataset.test_size leave no training points out of {n}.")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    parts = order[n_val + n_test:], order[:n_val], order[n_val:n_val + n_test]
    return tuple((x[i], None if y is None else y[i]) for i in parts)


def _count(size, n: int, key: str) -> int:
    if size is None or float(size) < 0:
        raise UserError(f"dataset.{key}={size!r} must be a count >= 0, or a fraction below 1.")
    return int(round(float(size) * n)) if float(size) < 1 else int(size)
