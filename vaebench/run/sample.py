"""`vaebench sample RUN_DIR [OPTIONS]`: a trained run's pictures as files for a paper, from either
checkpoint, in RUN_DIR/samples/: prior samples, reconstructions and interpolations of chosen test points,
latent traversals and the VampPrior's pseudo-inputs, each a PNG and an .npz of its numbers
(views/figure_files.py draws them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from vaebench.errors import UserError
from vaebench.run.saved_run import checked_device, read_checkpoint, rebuild
from vaebench.views import figure_files

KINDS = ("samples", "reconstructions", "interpolations", "traversals", "pseudo_inputs")
OPTIONS = ("checkpoint", "what", "n", "points", "scale", "trainer.device")
SHOWN = 100   # prior samples and pseudo-inputs by default
POINTS = 10   # test points by default
# why a picture some priors do not have is left out, after "prior=NAME"
LACKING = {"samples": "has no sampler", "pseudo_inputs": "has no pseudo-inputs (the VampPrior, prior=vamp, has them)"}

USAGE = ("usage: vaebench sample RUN_DIR [checkpoint=best|last] [what=" + ",".join(KINDS) + "] [n=N] "
         "[points=3,17,42] [scale=S] [trainer.device=cpu]")

HELP = f"""{USAGE}

A trained run's pictures as files for a paper, written into RUN_DIR/samples/ as
<what>_<checkpoint>_epoch<E>.png (captioned in the PNG's Title and Description) and .npz (the
arrays: images, codes, points; and the caption). Each option also takes the form --key value.

  checkpoint=best|last  which checkpoint (best: the best validation ELBO; default best)
  what=LIST             any of {', '.join(KINDS)} (default: all)
                          samples          n draws from the prior, decoded
                          reconstructions  the test points, each above its reconstruction
                          interpolations   pairs of test points (1st-2nd, 3rd-4th, ...) and the images
                                           decoded on the straight line between their posterior means
                          traversals       one latent dimension per row swept from the 1st test point's code
                          pseudo_inputs    the VampPrior's pseudo-inputs, on the data's one grey scale
  n=N                   how many samples and pseudo-inputs (default {SHOWN}); without points=, also the first
                        N test points (default {POINTS})
  points=3,17,42        these test points (indices into the test split) instead of the first ones
  scale=S               each pixel as S x S pixels (default: a 28-pixel image becomes 84, any image at
                        least {figure_files.SMALLEST_SIDE})
  trainer.device=cpu    auto | cpu | cuda (default: the run's)
"""


@dataclass(frozen=True)
class Request:
    run_dir: Path
    checkpoint: str = "best"
    what: tuple[str, ...] = KINDS
    n: int | None = None
    points: tuple[int, ...] | None = None
    scale: int | None = None
    device: str | None = None


def sample_run(argv: list[str]) -> list[Path]:
    """Draws what `argv` asks for; the files written."""
    if argv and argv[0] in ("-h", "--help", "help"):
        print(HELP)
        return []
    request = parse(argv)
    _, state, cfg = read_checkpoint(request.run_dir, request.checkpoint)
    if request.device is not None:
        OmegaConf.update(cfg, "trainer.device", request.device)
    device = checked_device(cfg)
    data, model = rebuild(cfg, state, device)
    test, train = data.scored("test").to(device), data.scored("train")
    points = list(request.points or range(min(request.n or POINTS, len(test))))
    if max(points) >= len(test):
        raise UserError(f"points={','.join(map(str, points))}: the test split has {len(test):,} points, "
                        f"0 to {len(test) - 1:,}; choose indices in that range.")
    scale = request.scale or (figure_files.default_scale(test.shape[-1]) if test.dim() == 4 else 1)
    name = f"{request.checkpoint}_epoch{state['epoch']}"
    title = f"{request.run_dir}, checkpoint {request.checkpoint} (epoch {state['epoch']}, step {state['step']})"
    written = []
    for what in request.what:
        model.eval()
        torch.manual_seed(int(cfg.seed))  # the same pictures each time
        picture = _draw(what, model, test, train, points, request.n or SHOWN, scale, int(cfg.eval.batch_size))
        if picture is None:
            print(f"{what} left out: prior={cfg.choices.get('prior')} {LACKING[what]}.")
            continue
        if isinstance(picture, str):  # what these options cannot draw, said in a line
            print(picture)
            continue
        files = figure_files.write(picture, request.run_dir / "samples" / f"{what}_{name}", f"{what}: {title}", scale)
        print(f"Wrote {' and '.join(str(f) for f in reversed(files))}: {picture.caption}.")
        written += files
    return written


def _draw(what: str, model, test, train, points: list[int], n: int, scale: int, batch_size: int):
    if what == "samples":
        return figure_files.prior_samples(model, n, scale)
    if what == "reconstructions":
        return figure_files.reconstructions(model, test, points, scale)
    if what == "interpolations":
        if len(points) < 2:
            return f"interpolations left out: they need two test points or more (points={points[0]} has one)."
        picture = figure_files.interpolations(model, test, list(zip(points[::2], points[1::2])), scale)
        if len(points) % 2:
            picture.caption += f"; test point {points[-1]}, without a partner, is left out"
        return picture
    if what == "traversals":
        return figure_files.traversals(model, test, points[0], batch_size)
    return figure_files.pseudo_inputs(model, n, train, scale)


def parse(argv: list[str]) -> Request:
    """The run folder, then options as key=value, --key=value or --key value."""
    if not argv or argv[0].startswith("-") or "=" in argv[0]:
        raise UserError(f"vaebench sample needs a run folder first.\n{USAGE}")
    run_dir = Path(argv[0])
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a folder. Pass a run folder, the `Outputs:` line of `vaebench train` "
                        "(e.g. outputs/DATE/TIME, or outputs/multirun/DATE/TIME/N for a sweep's run).")
    options: dict[str, str] = {}
    rest = list(argv[1:])
    while rest:
        item = rest.pop(0)
        if item.startswith("--") and "=" not in item and rest:
            item = f"{item}={rest.pop(0)}"
        key, sep, value = item.removeprefix("--").partition("=")
        if not sep or key not in OPTIONS:
            raise UserError(f"{item!r} is not a sample option; choose from {', '.join(OPTIONS)}. {USAGE}")
        options[key] = value
    what = tuple(dict.fromkeys(options.get("what", ",".join(KINDS)).split(",")))
    unknown = [w for w in what if w not in KINDS]
    if unknown:
        raise UserError(f"what={options['what']}: {', '.join(map(repr, unknown))} is not a picture vaebench "
                        f"draws; choose one or more of {', '.join(KINDS)}, comma-separated "
                        "(e.g. what=samples,traversals).")
    points = options.get("points")
    return Request(run_dir, options.get("checkpoint", "best"), what, _count(options, "n"),
                   None if points is None else _indices(points), _count(options, "scale"),
                   options.get("trainer.device"))


def _count(options: dict, key: str) -> int | None:
    if key not in options:
        return None
    value = options[key]
    if not value.isdigit() or int(value) < 1:
        raise UserError(f"{key}={value} is not valid; give a whole number of 1 or more, e.g. {key}=4.")
    return int(value)


def _indices(text: str) -> tuple[int, ...]:
    items = [item.strip() for item in text.split(",")]
    if not items or not all(item.isdigit() for item in items):
        raise UserError(f"points={text} is not valid; give test-point indices, whole numbers from 0, "
                        "comma-separated (e.g. points=3,17,42).")
    return tuple(int(item) for item in items)
