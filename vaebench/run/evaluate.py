"""`vaebench eval RUN_DIR [OVERRIDES]`: every ELBO term and diagnostic of a trained run on one split,
as a table, as a file of its own in RUN_DIR/evals/ and in the run's TensorBoard."""

from __future__ import annotations

import json
from dataclasses import fields
import logging
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from vaebench.config.settings import EvalSettings
from vaebench.errors import UserError
from vaebench.metrics import disentanglement
from vaebench.metrics.diagnostics import split_report
from vaebench.metrics.evaluation import PER_POINT
from vaebench.run.final_evaluation import inference_gaps_of_points
from vaebench.run.saved_run import checked_device, read_checkpoint, rebuild
from vaebench.run.threads import share_for
from vaebench.views.board import Board
from vaebench.views.console import EvaluationProgress, StagedProgress
from vaebench.views.summary import disentanglement_lines, format_estimate

USAGE = "usage: vaebench eval RUN_DIR [checkpoint=best|last] [eval.split=train|val|test] [eval.max_points=N] [eval.iw_samples=S] [eval.gap_points=N] [trainer.device=cpu]"
ALLOWED = ("checkpoint", "eval.", "trainer.device")
# What the run's TensorBoard gets of an evaluation (the file has every term).
HEADLINE_TERMS = ("elbo", "reconstruction", "kl", "log_likelihood", "mutual_info", "marginal_kl", "active_units",
                  "amortization_gap", "approximation_gap")


HELP = f"""{USAGE}

Every ELBO term, the ELBO surgery, total correlation, active units and the importance-weighted
log p(x) of a trained run, on one split, from its best (or last) checkpoint; for data with known
factors (dataset=sprites, dsprites) also MIG, the FactorVAE score and DCI, on every split's points
(up to 10,000), whatever the split. Each evaluation is
kept: RUN_DIR/evals/<split>_<checkpoint>_<points>points_<S>iw.json (a repeat gets -2, -3, ...),
and its headline terms go to the run's TensorBoard, as dots at the checkpoint's step under
verdict/eval_<checkpoint>/<split>/<term> (verdict/eval_best/test/log_likelihood).

  checkpoint=best|last   which checkpoint (best: the best validation ELBO; default best)
  eval.split=test        train | val | test
  eval.max_points=N      the first N points of the split only (default: all)
  eval.iw_samples=S      importance samples for log p(x) (default: the run's, 5000 as in the paper)
  eval.gap_points=N      the first N points get the inference gaps, amortization and approximation
                         (default 100; 0: none)
  trainer.device=cpu     auto | cpu | cuda
"""


def evaluate_run(argv: list[str]) -> dict:
    if argv and argv[0] in ("-h", "--help", "help"):
        print(HELP)
        return {}
    if not argv or argv[0].startswith("-") or "=" in argv[0]:
        raise UserError(f"vaebench eval needs a run folder first.\n{USAGE}")
    run_dir, overrides = Path(argv[0]), argv[1:]
    options = _parse(overrides)
    which = options.pop("checkpoint", "best")
    path, state, cfg = read_checkpoint(run_dir, which)
    for key, value in options.items():
        known = [*cfg.eval, *(f.name for f in fields(EvalSettings) if f.name not in cfg.eval)]  # an older run's too
        if key.startswith("eval.") and key.removeprefix("eval.") not in known:
            raise UserError(f"{key} is not an eval option; choose from {', '.join('eval.' + k for k in known)}. {USAGE}")
        OmegaConf.update(cfg, key, value, force_add=True)
    device = checked_device(cfg)
    cpu_share = share_for(cfg.trainer.get("threads"), 1, device)
    data, model = rebuild(cfg, state, device)
    split = cfg.eval.split
    x = data.scored(split)  # the train split: the same images as training's final metrics
    if cfg.eval.max_points:
        x = x[: cfg.eval.max_points]
    x = x.to(device)

    started = time.perf_counter()
    _show_progress_lines()
    logging.getLogger("vaebench").info(cpu_share.start(saved=state.get("threads")))  # the run's own count: its numbers
    with (EvaluationProgress(len(x), f"{split} log p(x), {cfg.eval.iw_samples} samples per point") as likelihood,
          StagedProgress(f"{split} ") as stages):
        terms = split_report(model, x, cfg.eval.batch_size, cfg.eval.iw_samples, cfg.eval.surgery_samples,
                             on_points=likelihood.update, surgery_points=cfg.eval.get("surgery_points"),
                             progress=stages, keep_points=True)
    per_point = terms.pop(PER_POINT)
    if cfg.eval.iw_samples > 0 and cfg.eval.get("gap_points"):
        terms.update(inference_gaps_of_points(model, x, per_point, int(cfg.eval.gap_points), cfg.eval.batch_size, split))
    factors = disentanglement.of_model(model, data, cfg.eval.batch_size)  # every split's points, not eval.split's
    seconds = time.perf_counter() - started

    result = {"split": split, "points": len(x), "checkpoint": str(path), "epoch": state["epoch"],
              "step": state["step"], "iw_samples": cfg.eval.iw_samples, "seconds": seconds, split: terms}
    if factors:
        result["disentanglement"], result["latent_factors"] = factors
    out = _unused_path(run_dir / "evals" / f"{split}_{which}_{len(x)}points_{cfg.eval.iw_samples}iw.json")
    out.write_text(json.dumps(result, indent=2))
    if "board_dir" in state:
        board = Board(run_dir / state["board_dir"])
        # One source per checkpoint (`verdict/eval_best/...`): TensorBoard keeps a series' steps rising and
        # drops the later points of a series that steps back, so `best` after `last` would hide `last`'s dots.
        board.single_values(f"eval_{which}", {f"{split}/{term}": value for term, value in terms.items()
                                              if term in HEADLINE_TERMS}, state["step"])
        if factors:
            board.single_values(f"eval_{which}", {f"disentanglement/{name}": factors[0][name]
                                                  for name in disentanglement.METRIC_NAMES}, state["step"])
        board.close()
    _print_table(result, terms, out)
    return result


def _show_progress_lines() -> None:
    """vaebench's messages on stdout, as `vaebench train` shows them (there Hydra sets this up)."""
    logger = logging.getLogger("vaebench")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _unused_path(path: Path) -> Path:
    """`path`, or `name-2.json`, `name-3.json`, ... when it is taken: no evaluation overwrites another."""
    path.parent.mkdir(parents=True, exist_ok=True)
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


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
    if "disentanglement" in result:
        print("\n".join(disentanglement_lines(result["disentanglement"], result["latent_factors"])))
    print(f"Wrote {out}")
