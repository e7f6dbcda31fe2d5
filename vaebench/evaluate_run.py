"""`vaebench eval RUN_DIR [OVERRIDES]`: every ELBO term and diagnostic of a trained run on one split,
as a table, as checkpoints/eval.json and in the run's TensorBoard."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from vaebench import checkpoint
from vaebench.board import Board
from vaebench.cpu_math import use_fast_cpu_math
from vaebench.data import load_dataset
from vaebench.diagnostics import split_report
from vaebench.errors import UserError
from vaebench.evaluate import fixed_binarization, format_estimate
from vaebench.models import build_model
from vaebench.trainer import surgery_samples
from vaebench.validate import device_for, validate_config

USAGE = "usage: vaebench eval RUN_DIR [checkpoint=best|last] [eval.split=train|val|test] [eval.max_points=N] [eval.iw_samples=S] [trainer.device=cpu]"
ALLOWED = ("checkpoint", "eval.", "trainer.device")


def evaluate_run(argv: list[str]) -> dict:
    if not argv or argv[0].startswith("-") or "=" in argv[0]:
        raise UserError(f"vaebench eval needs a run folder first.\n{USAGE}")
    run_dir, overrides = Path(argv[0]), argv[1:]
    options = _parse(overrides)
    which = options.pop("checkpoint", "best")
    if which not in ("best", "last"):
        raise UserError(f"checkpoint={which!r} is not valid; choose best or last.")
    path = run_dir / "checkpoints" / f"{which}.pt"
    if not path.is_file():
        raise UserError(f"{run_dir} has no checkpoints/{which}.pt; is it a vaebench run folder?")
    state = checkpoint.load(path)
    cfg = OmegaConf.create(state["config"])
    for key, value in options.items():
        if key.startswith("eval.") and key.removeprefix("eval.") not in cfg.eval:
            raise UserError(f"{key} is not an eval option; choose from {', '.join('eval.' + k for k in cfg.eval)}. {USAGE}")
        OmegaConf.update(cfg, key, value, force_add=True)
    validate_config(cfg)
    device = device_for(cfg)
    if device.type == "cpu":
        use_fast_cpu_math()

    torch.manual_seed(int(cfg.seed))
    data = load_dataset(cfg.dataset, int(cfg.seed))
    split = cfg.eval.split
    x = data.split(split)
    if cfg.eval.max_points:
        x = x[: cfg.eval.max_points]
    x = x.to(device)
    binarize = split == "train" and data.dynamic_binarize
    if binarize:  # the same images as training's final metrics
        x = fixed_binarization(x)
    model = build_model(cfg, data.data_shape, data.train).to(device)
    model.load_state_dict(state["model"])

    started = time.perf_counter()
    terms = split_report(model, x, cfg.eval.batch_size, cfg.eval.iw_samples, surgery_samples(cfg))
    seconds = time.perf_counter() - started

    result = {"split": split, "points": len(x), "checkpoint": str(path), "epoch": state["epoch"],
              "step": state["step"], "iw_samples": cfg.eval.iw_samples, "seconds": seconds, split: terms}
    out = path.parent / "eval.json"
    out.write_text(json.dumps(result, indent=2))
    if "board_dir" in state:
        board = Board(run_dir / state["board_dir"])
        board.scalars(f"eval/{split}", terms, state["step"])
        board.close()
    _print_table(result, terms, out)
    return result


def _parse(overrides: list[str]) -> dict:
    options = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.startswith(ALLOWED):
            raise UserError(f"{item!r} is not an eval option. {USAGE}")
        options[key] = _number_or_text(text)
    return options


def _number_or_text(text: str):
    """Values as YAML reads them: 100 -> int, 0.5 -> float, null -> None, val -> 'val'."""
    return OmegaConf.create(f"v: {text}")["v"]


def _print_table(result: dict, terms: dict, out: Path) -> None:
    print(f"{result['split']} split, {result['points']} points, {result['checkpoint']} "
          f"(epoch {result['epoch']}), {result['seconds']:.1f} s")
    names = [name for name in terms if not (name.endswith("_se") and name[:-3] in terms)]
    width = max(map(len, names))
    for name in names:  # an estimate as `value ± se`
        print(f"  {name:<{width}}  {format_estimate(terms, name, width=22)}")
    print(f"Wrote {out}")
