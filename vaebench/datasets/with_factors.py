"""Data with known generative factors: 2-D sprites in the manner of dSprites (Matthey et al. 2017).

`dataset=sprites` renders binary images procedurally: a white shape (square, ellipse, heart) on
black, at a scale, an orientation and an x and y position, each factor taking a fixed grid of
values. The dataset is the full product of the grids (every combination once), rendered at first use
and cached (as packed bits) under `root`, or `$XDG_CACHE_HOME/vaebench/sprites` (`~/.cache/...`)
when `root` is null; the render is deterministic, so the seed only splits the pool. The factor
classes of every image are its labels (`Dataset.factors`).

`dataset=dsprites dataset.path=FILE.npz` reads DeepMind's original file (arrays `imgs` (N, 64, 64) and
`latents_classes` (N, 6): color, shape, scale, orientation, posX, posY); the constant color is dropped.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from vaebench.config.checks import Count, NonNegative
from vaebench.datasets.arrays import Dataset, Factors, from_arrays
from vaebench.errors import UserError

SHAPES = ("square", "ellipse", "heart")
FACTOR_NAMES = ("shape", "scale", "orientation", "x", "y")
SCALE_RANGE = (0.5, 1.0)   # as in dSprites
HALF_SIZE = 0.16           # half the side of a square of scale 1, as a fraction of the image width
# The x and y positions keep the largest sprite (the rotated square's half-diagonal, 0.16 * sqrt 2) inside.
POSITION_RANGE = (0.25, 0.75)
# Orientations are spread over [0, 90 degrees): a square turned by 90 degrees is the same image, so a
# wider range would give the square (and the ellipse, at 180) factor values that no image can tell apart.
ORIENTATION_SPAN = math.pi / 2
RENDER_VERSION = 2         # part of the cache file's name: a change of the renderer renders afresh


def factor_values(scales: int, orientations: int, positions: int) -> dict[str, np.ndarray]:
    """The grid of values of every factor (shape by its index in SHAPES)."""
    return {
        "shape": np.arange(len(SHAPES), dtype=np.float64),
        "scale": np.linspace(*SCALE_RANGE, scales) if scales > 1 else np.array([1.0]),
        "orientation": np.arange(orientations) * ORIENTATION_SPAN / orientations,
        "x": np.linspace(*POSITION_RANGE, positions) if positions > 1 else np.array([0.5]),
        "y": np.linspace(*POSITION_RANGE, positions) if positions > 1 else np.array([0.5]),
    }


def render(shape: np.ndarray, scale: np.ndarray, orientation: np.ndarray, x: np.ndarray, y: np.ndarray,
           size: int = 64, chunk: int = 2048) -> np.ndarray:
    """Binary images (N, size, size), uint8, of sprites with the given factor values (shape as an index
    into SHAPES, orientation in radians, x and y the centre as fractions of the width; y grows
    downwards). A pixel is on when its centre lies inside the shape."""
    values = [np.asarray(v, dtype=np.float64).reshape(-1) for v in (shape, scale, orientation, x, y)]
    n = len(values[0])
    centres = (np.arange(size) + 0.5) / size
    px, py = centres[None, None, :], centres[None, :, None]  # column -> x, row -> y
    images = np.empty((n, size, size), dtype=np.uint8)
    for start in range(0, n, chunk):
        s, sc, th, cx, cy = (v[start:start + chunk, None, None] for v in values)
        dx, dy = px - cx, py - cy
        # into the sprite's own frame: undo the rotation, then the scale
        u = (np.cos(th) * dx + np.sin(th) * dy) / (sc * HALF_SIZE)
        v = (-np.sin(th) * dx + np.cos(th) * dy) / (sc * HALF_SIZE)
        inside = np.where(s == 0, _square(u, v), np.where(s == 1, _ellipse(u, v), _heart(u, v)))
        images[start:start + chunk] = inside
    return images


def _square(u, v):
    return (np.abs(u) <= 1) & (np.abs(v) <= 1)


def _ellipse(u, v):
    return (u / 1.2) ** 2 + (v / 0.6) ** 2 <= 1  # elongated, so that its orientation shows


def _heart(u, v):
    # The heart curve (x^2 + y^2 - 1)^3 = x^2 y^3, pointing down (y grows downwards), shifted so that its
    # centroid is the sprite's centre; its area is the square's.
    a, b = u / 1.05, -(v - 0.308) / 1.05
    return (a * a + b * b - 1) ** 3 - a * a * b ** 3 <= 0


def factor_grid(sizes: tuple[int, ...]) -> np.ndarray:
    """Every combination of factor classes, (prod sizes, n_factors), the last factor fastest."""
    return np.stack([g.reshape(-1) for g in np.meshgrid(*[np.arange(k) for k in sizes], indexing="ij")], axis=1)


def render_classes(classes: np.ndarray, values: dict[str, np.ndarray], size: int) -> np.ndarray:
    """The images of factor classes (N, n_factors) on the grid `values`."""
    columns = [values[name][classes[:, i]] for i, name in enumerate(FACTOR_NAMES)]
    return render(*columns, size=size)


def sprites(seed: int, size: Literal[32, 64] = 64, scales: Count = 6, orientations: Count = 10, positions: Count = 10,
            root: str | None = None, val_size: NonNegative = 0.1, test_size: NonNegative = 0.1) -> Dataset:
    """Every combination of 3 shapes x `scales` x `orientations` x `positions` x `positions` (x and y),
    as binary `size` x `size` images, split into train / val / test by `seed`."""
    sizes = (len(SHAPES), scales, orientations, positions, positions)
    values = factor_values(scales, orientations, positions)
    classes = factor_grid(sizes)
    images = _cached_render(classes, values, size, sizes, root)
    x = torch.from_numpy(images).float().unsqueeze(1)
    return with_factors(from_arrays("sprites", x, torch.from_numpy(classes).long(), seed=seed, val_size=val_size,
                                    test_size=test_size), FACTOR_NAMES, sizes)


def with_factors(data: Dataset, names: tuple[str, ...], sizes: tuple[int, ...]) -> Dataset:
    """`data`, whose labels are factor classes (N, n_factors), with those as its `factors` and the
    first factor (the shape) as its 1-D labels (the latent scatter's colours)."""
    factors = Factors(tuple(names), tuple(int(k) for k in sizes), data.train_labels, data.val_labels, data.test_labels)
    data.factors = factors
    data.train_labels, data.val_labels, data.test_labels = (y[:, 0] for y in (factors.train, factors.val, factors.test))
    return data


def cache_folder(root: str | None) -> Path:
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vaebench" / "sprites"


def _cached_render(classes, values, size: int, sizes: tuple[int, ...], root: str | None) -> np.ndarray:
    key = hashlib.sha1(repr((RENDER_VERSION, size, sizes)).encode()).hexdigest()[:10]
    folder = cache_folder(root)
    path = folder / f"sprites_{size}px_{'x'.join(map(str, sizes))}_{key}.npz"
    if path.is_file():
        try:
            with np.load(path) as f:
                return np.unpackbits(f["bits"], count=len(classes) * size * size).reshape(-1, size, size)
        except Exception:  # a damaged cache file (an interrupted write is never left, see below): render again
            pass
    images = render_classes(classes, values, size)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez_compressed(tmp, bits=np.packbits(images.reshape(-1)))
        os.replace(tmp, path)
    except OSError:  # a read-only cache: render every time rather than fail
        pass
    return images


def dsprites(seed: int, path: str, max_points: Count | None = 50000, val_size: NonNegative = 0.1,
             test_size: NonNegative = 0.1) -> Dataset:
    """DeepMind's dSprites file (737,280 images of 64x64): a random `max_points` of them chosen by the
    seed (null: all, about 12 GB as float32), with the factor classes as labels."""
    file = Path(str(path))
    hint = ("dataset=dsprites needs DeepMind's dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz (arrays imgs and "
            "latents_classes; github.com/deepmind/dsprites-dataset). Without it, dataset=sprites renders the "
            "same kind of images offline.")
    if not file.is_file():
        raise UserError(f"dataset.path={str(path)!r} is not a file. {hint}")
    try:
        arrays = np.load(file)
        names = list(arrays.files)
    except Exception as err:
        raise UserError(f"dataset.path={str(path)!r} is not a readable .npz file ({type(err).__name__}). {hint}") from None
    missing = [name for name in ("imgs", "latents_classes") if name not in names]
    if missing:
        raise UserError(f"dataset.path={str(path)!r} has no array {' or '.join(missing)} (it has: "
                        f"{', '.join(names) or 'nothing'}). {hint}")
    imgs, classes = arrays["imgs"], np.asarray(arrays["latents_classes"])
    if imgs.ndim != 3 or classes.ndim != 2 or classes.shape != (len(imgs), 6):
        raise UserError(f"dataset.path={str(path)!r}: imgs has shape {imgs.shape} and latents_classes {classes.shape}; "
                        f"expected (N, H, W) and (N, 6). {hint}")
    if max_points is not None and max_points < len(imgs):
        chosen = np.sort(np.random.default_rng(seed).choice(len(imgs), max_points, replace=False))
        imgs, classes = imgs[chosen], classes[chosen]
    classes = classes.astype(np.int64)
    names_all = ("color", "shape", "scale", "orientation", "x", "y")
    sizes_all = classes.max(0) + 1
    keep = [i for i in range(6) if sizes_all[i] > 1]  # the constant color
    x = torch.from_numpy(np.ascontiguousarray(imgs, dtype=np.float32)).unsqueeze(1)
    data = from_arrays("dsprites", x, torch.from_numpy(classes[:, keep]), seed=seed, val_size=val_size,
                       test_size=test_size, source=f"dataset.path={str(path)!r}")
    return with_factors(data, tuple(names_all[i] for i in keep), tuple(int(sizes_all[i]) for i in keep))
