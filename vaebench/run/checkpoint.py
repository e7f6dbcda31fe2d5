"""Checkpoints: atomic writes, safe reads (no pickled code runs), and the RNG states for exact resume."""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path

import numpy as np
import torch

from vaebench.errors import UserError

REQUIRED_KEYS = ("model", "optimizer", "epoch", "step", "config")


def save_atomic(state: dict, path: Path) -> None:
    """Write to a temporary file, fsync, rename: a kill at any instant leaves the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a half-written file must not linger beside the good one
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def load(path: Path, device: torch.device | str = "cpu") -> dict:
    """Read a vaebench checkpoint with weights_only=True; a clear UserError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"There is no checkpoint at {path}.")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(
            f"Refusing to read {path}: it holds pickled Python objects besides tensors, and unpickling them "
            "could run code (vaebench loads checkpoints with weights_only=True). It is not a vaebench checkpoint."
        ) from None
    except Exception as err:
        raise UserError(
            f"Cannot read the checkpoint {path}: it is truncated, corrupt or not a vaebench checkpoint "
            f"({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''})."
        ) from None
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED_KEYS):
        raise UserError(f"{path} is not a vaebench checkpoint (it lacks {', '.join(REQUIRED_KEYS)}).")
    return state


def rng_state() -> dict:
    """Every random stream a run draws from, as tensors and plain numbers (weights_only-safe)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
