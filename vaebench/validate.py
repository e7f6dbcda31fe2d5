"""Refuse a bad configuration before any work starts, with one paragraph naming the key, the value
and what is allowed."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

from vaebench.data import BINARIZE, DATASETS
from vaebench.errors import UserError
from vaebench.models import MODELS
from vaebench.nets import GAUSSIAN_VARIANCES, LIKELIHOODS
from vaebench.priors import PRIORS


def _integer(minimum: int):
    return ("an integer >= %d" % minimum, lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum)


def _number(minimum: float, strict: bool = False):
    text = f"a number {'>' if strict else '>='} {minimum:g}"
    ok = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and (v > minimum if strict else v >= minimum)  # noqa: E731
    return text, ok


def _choice(*choices):
    return "one of " + ", ".join(map(str, choices)), lambda v: v in choices


_BOOL = ("true or false", lambda v: isinstance(v, bool))

RULES = {
    "beta": _number(0),
    "seed": _integer(0),
    "trainer.epochs": _integer(0),
    "trainer.batch_size": _integer(1),
    "trainer.lr": _number(0, strict=True),
    "trainer.kl_warmup_epochs": _integer(0),
    "trainer.eval_every": _integer(1),
    "trainer.patience": _integer(0),
    "trainer.device": _choice("auto", "cpu", "cuda"),
    "trainer.compile": _BOOL,
    "trainer.precision": _choice("fp32", "bf16"),
    "trainer.log_every": _integer(1),
    "model.name": _choice(*MODELS),
    "model.latent_dim": _integer(1),
    "model.hidden_dim": _integer(1),
    "model.channels": _integer(1),
    "model.likelihood": _choice(*LIKELIHOODS),
    "model.gaussian_variance": _choice(*GAUSSIAN_VARIANCES),
    "prior.name": _choice(*PRIORS),
    "prior.sigma": _number(0, strict=True),
    "prior.K": _integer(1),
    "prior.init": _choice("random", "data"),
    "prior.learn_weights": _BOOL,
    "dataset.name": _choice(*DATASETS),
    "dataset.binarize": _choice(*BINARIZE),
    "dataset.val_size": _number(0),
    "dataset.test_size": _number(0),
    "eval.batch_size": _integer(1),
    "eval.iw_samples": _integer(0),
    "eval.surgery_every": _integer(0),
    "eval.split": _choice("train", "val", "test"),
    "eval.max_points": _integer(1),
}


def validate_config(cfg) -> None:
    """Raise UserError for the first key whose value is out of its allowed range."""
    for key, (allowed, ok) in RULES.items():
        if OmegaConf.select(cfg, key, default="<absent>") == "<absent>":
            continue
        value = OmegaConf.select(cfg, key)
        if value is None and key in ("eval.max_points", "prior.K"):
            continue  # optional: no limit / not used by this prior
        if not ok(value):
            shown = f"{value!r}" if isinstance(value, str) else str(value)
            raise UserError(f"{key}={shown} is not allowed: {key} must be {allowed}.")
    if cfg.dataset.name == "npz" and OmegaConf.is_missing(cfg.dataset, "path"):
        raise UserError("dataset=npz needs dataset.path=FILE.npz (an .npz file with an array `x`).")
    if cfg.trainer.device == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "trainer.device=cuda was asked for, but PyTorch sees no CUDA GPU on this machine. "
            "Use trainer.device=auto (GPU when there is one) or trainer.device=cpu."
        )


def validate_data(cfg, train: torch.Tensor) -> None:
    """The data must suit the likelihood and the binarisation."""
    low, high = float(train.min()), float(train.max())
    needs_unit = cfg.model.likelihood == "bernoulli" or cfg.dataset.binarize != "none"
    if needs_unit and (low < 0 or high > 1):
        raise UserError(
            f"dataset={cfg.dataset.name}: values lie in [{low:g}, {high:g}], but model.likelihood="
            f"{cfg.model.likelihood} with dataset.binarize={cfg.dataset.binarize} needs values in [0, 1]. "
            "Rescale the data, or use model.likelihood=gaussian dataset.binarize=none."
        )


def device_for(cfg) -> torch.device:
    if cfg.trainer.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.trainer.device)
