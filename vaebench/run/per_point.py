"""Each test point's final terms, kept in the run folder (test_points.npz) so that two runs scored on the
same points can be compared point by point: a paired difference's standard error is the spread of the
differences, far below the two runs' own SEs when most of each run's spread is the points'.

The file holds float32 arrays, one per term (log_likelihood, elbo_iw, posterior_kl, elbo,
reconstruction, kl, ...), and `points_id`, a fingerprint of the very points scored (their values), so
that runs on other points (another seed's split, another dataset) are never paired."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

FILE_NAME = "test_points.npz"
POINTS_ID = "points_id"


def points_id(x: torch.Tensor) -> str:
    """A fingerprint of the points `x` (their values, in order)."""
    return hashlib.sha1(x.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def save_points(run_dir: Path, x: torch.Tensor, values: dict[str, torch.Tensor]) -> Path:
    path = run_dir / FILE_NAME
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, **{name: value.float().cpu().numpy() for name, value in values.items()},
             **{POINTS_ID: np.array(points_id(x))})
    os.replace(tmp, path)
    return path


def load_points(run_dir: Path) -> tuple[str, dict[str, np.ndarray]] | None:
    """(points_id, {term: values}) of a run's test points; None for a run that kept none (an earlier
    vaebench's, or one stopped before its final evaluation)."""
    path = run_dir / FILE_NAME
    if not path.is_file():
        return None
    with np.load(path) as saved:
        return str(saved[POINTS_ID]), {name: saved[name] for name in saved.files if name != POINTS_ID}
