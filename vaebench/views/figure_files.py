"""A trained model's pictures as files for a paper (`vaebench sample`): the pictures TensorBoard shows
(pictures.py), of chosen test points, from any checkpoint, each a PNG upscaled without blur (a 28-pixel
digit becomes 84 pixels or more) with its caption in the PNG's own text fields, and its numbers beside
it as .npz. A model of flat vectors, not images, gets the .npz alone."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vaebench.metrics.evaluation import split_terms
from vaebench.views.pictures import (TRAVERSAL_SIGMAS, TRAVERSAL_STEPS, data_range, decode_at_posterior_means,
                                     decode_top, dimensions_by_kl, on_grey_scale, posterior_moments,
                                     traversal_codes, traversal_figure)

SMALLEST_SIDE = 84          # pixels an image takes at the default scale, at least: a 28-pixel digit three times over
PER_ROW = 10                # images per row of a grid
INTERPOLATION_STEPS = 10    # decoded images between (and at) the two points' codes
TRAVERSAL_POINTS = 1000     # test points whose posteriors set the traversals' spread and order


@dataclass
class Picture:
    """One picture: a grid of images in [0, 1] (C, H, W), or a labelled matplotlib figure, or neither
    (data that are not images); its caption; and the arrays it shows, for the .npz."""
    what: str
    caption: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    grid: torch.Tensor | None = None
    figure: object = None


def default_scale(image_side: int) -> int:
    """The smallest whole factor that makes an image SMALLEST_SIDE pixels or more."""
    return max(1, math.ceil(SMALLEST_SIDE / image_side))


def is_image(x: torch.Tensor) -> bool:
    return x.dim() == 4


def upscaled_grid(images: torch.Tensor, scale: int, per_row: int = PER_ROW) -> torch.Tensor:
    """Images (N, C, H, W) in [0, 1], each pixel a scale x scale block (nearest neighbour: no blur), in a
    grid of `per_row` columns on a white ground, `scale` pixels apart."""
    from torchvision.utils import make_grid  # torchvision is slow to import, and only pictures need it

    big = images.detach().float().clamp(0, 1).cpu().repeat_interleave(scale, -2).repeat_interleave(scale, -1)
    grid = make_grid(big, nrow=per_row, padding=scale, pad_value=1.0)
    return grid[:1] if images.shape[1] == 1 else grid  # make_grid repeats a grey channel as RGB; a grey PNG is smaller


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()


@torch.no_grad()
def prior_samples(model, n: int, scale: int) -> Picture | None:
    """n draws z ~ p(z), each shown as the mean image of p(x|z); None where the prior has no sampler."""
    try:
        latents = model.sample_latents(n, model.prior())
    except NotImplementedError:
        return None
    images = model.likelihood.mean(model.decoder_output(latents))
    top = latents[-1] if isinstance(latents, tuple) else latents  # (z1, z2): the prior acts on z2
    caption = f"{n} draws z ~ p(z) from the prior, each shown as the mean of p(x|z)"
    return Picture("samples", caption, {"images": _numpy(images), "z": _numpy(top)},
                   upscaled_grid(images, scale) if is_image(images) else None)


@torch.no_grad()
def reconstructions(model, x: torch.Tensor, points: list[int], scale: int) -> Picture:
    """The chosen test points, each above its reconstruction, up to PER_ROW points to a pair of rows."""
    inputs = x[points]
    outputs = decode_at_posterior_means(model, inputs)
    caption = (f"test points {_points_text(points)} (odd rows) above their reconstructions, the mean of "
               "p(x|z) at the posterior mean of q(z|x) (even rows)")
    arrays = {"points": np.asarray(points), "inputs": _numpy(inputs), "reconstructions": _numpy(outputs)}
    if not is_image(inputs):
        return Picture("reconstructions", caption, arrays)
    width, rows = min(PER_ROW, len(points)), []
    for start in range(0, len(points), width):
        rows += [_row(inputs[start:start + width], width), _row(outputs[start:start + width], width)]
    return Picture("reconstructions", caption, arrays, upscaled_grid(torch.cat(rows), scale, per_row=width))


def _row(images: torch.Tensor, width: int) -> torch.Tensor:
    """`images` padded with white ones to a row of `width`, so that each row of a grid starts a new one."""
    blank = torch.ones(width - len(images), *images.shape[1:], device=images.device)
    return torch.cat([images.float(), blank])


@torch.no_grad()
def interpolations(model, x: torch.Tensor, pairs: list[tuple[int, int]], scale: int) -> Picture:
    """For each pair of test points (a, b): a, then the images decoded along the straight line from the
    posterior mean of q(z|a) to that of q(z|b), then b."""
    a, b = x[[p for p, _ in pairs]], x[[q for _, q in pairs]]
    start, end = model.encode(a).mean, model.encode(b).mean
    t = torch.linspace(0, 1, INTERPOLATION_STEPS, device=start.device)
    codes = start[:, None] + t[None, :, None] * (end - start)[:, None]  # (pairs, steps, D)
    images = decode_top(model, codes.reshape(-1, codes.shape[-1])).reshape(len(pairs), INTERPOLATION_STEPS, *x.shape[1:])
    caption = (f"each row: test point a, the mean of p(x|z) at {INTERPOLATION_STEPS} evenly spaced codes on the "
               "straight line from the posterior mean of q(z|a) to that of q(z|b), test point b; (a, b) = "
               + ", ".join(f"({p}, {q})" for p, q in pairs))
    arrays = {"pairs": np.asarray(pairs), "a": _numpy(a), "b": _numpy(b), "t": _numpy(t),
              "z": _numpy(codes), "images": _numpy(images)}
    if not is_image(x):
        return Picture("interpolations", caption, arrays)
    rows = torch.cat([a[:, None].float(), images.float(), b[:, None].float()], dim=1)
    return Picture("interpolations", caption, arrays,
                   upscaled_grid(rows.flatten(0, 1), scale, per_row=INTERPOLATION_STEPS + 2))


@torch.no_grad()
def traversals(model, x: torch.Tensor, base: int, batch_size: int) -> Picture:
    """The traversal figure TensorBoard shows (pictures.py), from test point `base`'s code; the spread
    and the order of the dimensions from the first TRAVERSAL_POINTS test points."""
    scored = x[:TRAVERSAL_POINTS]
    kl_per_dim = split_terms(model, scored, batch_size).get("kl_per_dim")
    q_loc, q_scale = posterior_moments(model, scored)
    dims = dimensions_by_kl(kl_per_dim, q_loc.shape[1])
    base_code = model.encode(x[base:base + 1]).mean[0]
    codes = traversal_codes(q_loc, q_scale, dims, base=base_code)
    images = decode_top(model, codes)
    caption = (f"each row sweeps one latent dimension of test point {base}'s posterior mean (top: the most KL, "
               f"over the first {len(scored):,} test points) from -{TRAVERSAL_SIGMAS:g} to +{TRAVERSAL_SIGMAS:g} "
               "standard deviations of the aggregate posterior q(z_j) around its mean; each image the mean of p(x|z)")
    arrays = {"dims": _numpy(dims), "offsets_sd": _numpy(torch.linspace(-TRAVERSAL_SIGMAS, TRAVERSAL_SIGMAS, TRAVERSAL_STEPS)),
              "z": _numpy(codes.reshape(len(dims), TRAVERSAL_STEPS, -1)),
              "images": _numpy(images.reshape(len(dims), TRAVERSAL_STEPS, *images.shape[1:]))}
    if kl_per_dim is not None:
        arrays["kl_per_dim"] = _numpy(kl_per_dim)
    figure = traversal_figure(images, dims, kl_per_dim) if is_image(x) else None
    return Picture("traversals", caption, arrays, figure=figure)


@torch.no_grad()
def pseudo_inputs(model, n: int, train: torch.Tensor, scale: int) -> Picture | None:
    """The prior's first n pseudo-inputs on one grey scale, the data's range (pictures.py: data_range);
    None where the prior has none."""
    prior = model.prior
    inputs = getattr(prior, "pseudo_inputs", None)
    if not isinstance(inputs, torch.Tensor):
        return None
    low, high = data_range(prior, train)
    shown = inputs[:n]
    caption = (f"the first {len(shown)} of the prior's {len(inputs)} pseudo-inputs, as the encoder sees them: one "
               f"grey scale for all, the data's range, black {low:g} to white {high:g}")
    arrays = {"pseudo_inputs": _numpy(shown), "low": np.float32(low), "high": np.float32(high)}
    if hasattr(prior, "logits"):
        arrays["weights"] = _numpy(torch.softmax(prior.logits, 0))
    grid = upscaled_grid(on_grey_scale(shown, low, high), scale) if shown.shape[1:] == train.shape[1:] and is_image(train) else None
    return Picture("pseudo_inputs", caption, arrays, grid)


def write(picture: Picture, stem: Path, title: str, scale: int) -> list[Path]:
    """stem.npz (the arrays and the caption) and stem.png (with `title` and the caption in its text
    fields) where the picture has one; the paths written."""
    from PIL.PngImagePlugin import PngInfo

    stem.parent.mkdir(parents=True, exist_ok=True)
    written = [stem.with_suffix(".npz")]
    np.savez_compressed(written[0], caption=np.array(picture.caption), title=np.array(title), **picture.arrays)
    png = stem.with_suffix(".png")
    if picture.grid is not None:
        from torchvision.transforms.functional import to_pil_image

        text = PngInfo()
        text.add_text("Title", title)
        text.add_text("Description", picture.caption)
        to_pil_image(picture.grid).save(png, pnginfo=text)
        written.append(png)
    elif picture.figure is not None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(picture.figure)
        picture.figure.savefig(png, dpi=_figure_dpi(picture.figure, picture.arrays["images"].shape[-1], scale),
                               metadata={"Title": title, "Description": picture.caption})
        written.append(png)
    return written


def _figure_dpi(figure, image_side: int, scale: int) -> int:
    """The resolution at which each image of a traversal figure's grid takes image_side * scale pixels."""
    ax = figure.axes[0]
    cell_inches = ax.get_position().width * figure.get_size_inches()[0] / TRAVERSAL_STEPS
    return max(100, math.ceil(image_side * scale / cell_inches))


def _points_text(points: list[int]) -> str:
    """'0-9' for a run of points, '3, 17, 42' otherwise."""
    if len(points) > 2 and points == list(range(points[0], points[-1] + 1)):
        return f"{points[0]}-{points[-1]}"
    return ", ".join(map(str, points))
