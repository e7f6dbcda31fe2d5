"""`dataset=npz`: your own images or vectors, from an .npz file with an array `x` and optional labels `y`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vaebench.config.checks import ExistingFile, NonNegative
from vaebench.datasets.arrays import Binarize, Dataset, from_arrays
from vaebench.errors import UserError


def npz(seed: int, path: ExistingFile, val_size: NonNegative = 0.1, test_size: NonNegative = 0.1,
        binarize: Binarize = "dynamic") -> Dataset:
    """Your own .npz file with an array `x` (N,H,W), (N,C,H,W) or (N,D), in [0,1] or uint8, optional labels `y`."""
    x, y = _npz(path)
    return from_arrays("npz", x, y, seed=seed, val_size=val_size, test_size=test_size, binarize=binarize,
                       source=f"dataset.path={str(path)!r}")


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
