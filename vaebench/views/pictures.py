"""What a researcher would rather look at than read, logged at every evaluation."""

from __future__ import annotations

import torch

from vaebench.distributions import DiagonalNormal
from vaebench.metrics.evaluation import chunks

N_SHOWN = 100
TRAVERSAL_DIMS = 10    # rows of the traversal grid: the dimensions with the largest KL
TRAVERSAL_STEPS = 10   # images per row
TRAVERSAL_SIGMAS = 3.0  # each row spans mean ± 3 sd of the aggregate posterior in that dimension
ENCODE_CHUNK = 1000    # bounds the encoder's activations on a large validation split


@torch.no_grad()
def log_pictures(board, model, val: torch.Tensor, step: int, labels: torch.Tensor | None = None,
                 kl_per_dim: torch.Tensor | None = None) -> None:
    """Reconstructions, prior samples, latent traversals and the prior's own pictures for image data;
    a scatter of the validation codes, coloured by `labels`, when the latent space is a plane."""
    model.eval()
    q_loc, q_scale = posterior_moments(model, val)
    if q_loc.shape[1] == 2:
        board.figure("visuals/latent_scatter", latent_scatter(q_loc, labels), step)
    if val.dim() == 4:  # flat vectors are not images
        inputs = val[:10]
        board.image_grid("visuals/reconstructions", torch.cat([inputs, model.reconstruct(inputs)]), step, nrow=10)
        try:
            board.image_grid("visuals/prior_samples", model.sample(N_SHOWN), step)
        except NotImplementedError:  # a prior without a sampler (the run's log said so once)
            pass
        dims = dimensions_by_kl(kl_per_dim, q_loc.shape[1])
        z = traversal_codes(q_loc, q_scale, dims)
        board.figure("visuals/traversals", traversal_figure(decode_top(model, z), dims, kl_per_dim), step)
        pseudo_inputs = getattr(model.prior, "pseudo_inputs", None)
        if isinstance(pseudo_inputs, torch.Tensor) and pseudo_inputs.shape[1:] == val.shape[1:]:
            # One grey scale for all, the data's, as the encoder sees them: each stretched to its own
            # range, nearly flat images filled black to white, some looked inverted, none compared.
            low, high = data_range(model.prior, val)
            board.image_grid("visuals/pseudo_inputs", on_grey_scale(pseudo_inputs[:N_SHOWN], low, high), step)
    prior = model.prior
    if hasattr(prior, "logits") and prior.logits.requires_grad:
        board.histogram("visuals/prior_weights", torch.softmax(prior.logits, 0), step)
    model.train()


def posterior_moments(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Means and standard deviations of q(z|x) (the top layer) for every point of x: each (N, D)."""
    posteriors = [model.encode(batch) for batch in chunks(x, ENCODE_CHUNK)]
    return torch.cat([q.mean for q in posteriors]), torch.cat([q.stddev for q in posteriors])


def data_range(prior, data: torch.Tensor) -> tuple[float, float]:
    """The values an image of the data takes, lowest and highest: the prior's own bounds where it keeps
    them (the VampPrior's pseudo-inputs live in the training split's range), else `data`'s."""
    if hasattr(prior, "low") and hasattr(prior, "high"):
        return float(prior.low), float(prior.high)
    low, high = float(data.min()), float(data.max())
    return low, (high if high > low else low + 1.0)


def on_grey_scale(images: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """`images` mapped from the data's range [low, high] to [0, 1], one scale for all of them: a value
    halfway shows mid-grey whatever the other images hold."""
    return ((images.detach().float() - low) / (high - low)).clamp(0, 1)


def dimensions_by_kl(kl_per_dim: torch.Tensor | None, latent_dim: int) -> torch.Tensor:
    """The dimensions that carry the most information first; in index order when the KL is unknown."""
    if kl_per_dim is None:
        return torch.arange(min(latent_dim, TRAVERSAL_DIMS))
    return torch.argsort(torch.as_tensor(kl_per_dim).cpu(), descending=True)[:TRAVERSAL_DIMS]


def traversal_codes(q_loc: torch.Tensor, q_scale: torch.Tensor, dims: torch.Tensor,
                    base: torch.Tensor | None = None) -> torch.Tensor:
    """One row per dimension in `dims`: `base` (default the first point's code, q_loc[0]) with that
    one coordinate swept.

    The sweep spans the aggregate posterior q(z_j) = avg_n q(z_j|x_n), not the prior: a VampPrior
    or mixture prior has no unit scale, and q(z_j) is where the decoder was trained. Its variance is
    Var_n[mean_n] + E_n[sd_n^2]; a collapsed dimension has q(z_j|x) = p(z_j) and shows a constant row."""
    centre = q_loc.mean(0)
    spread = (q_loc.var(0, unbiased=False) + q_scale.pow(2).mean(0)).sqrt()
    offsets = torch.linspace(-TRAVERSAL_SIGMAS, TRAVERSAL_SIGMAS, TRAVERSAL_STEPS, device=q_loc.device)
    dims = dims.to(q_loc.device)
    codes = (q_loc[0] if base is None else base).repeat(len(dims), TRAVERSAL_STEPS, 1)  # (rows, steps, D)
    rows = torch.arange(len(dims), device=q_loc.device)
    codes[rows, :, dims] = centre[dims, None] + offsets * spread[dims, None]
    return codes.reshape(-1, q_loc.shape[1])


def decode_top(model, z_top: torch.Tensor) -> torch.Tensor:
    """Mean image of p(x|z) at codes of the top layer. A two-level model (one with p(z1|z2)) fills
    its lower layer with the mean of p(z1|z2), so that only z2 varies across a picture."""
    p_z1_given_z2 = getattr(model, "p_z1", None)
    latents = z_top if p_z1_given_z2 is None else (p_z1_given_z2(z_top).mean, z_top)
    return model.likelihood.mean(model.decoder_output(latents))


def decode_at_posterior_means(model, x: torch.Tensor) -> torch.Tensor:
    """Mean image of p(x|z) at every layer's posterior mean (z2, then z1 given it in a two-level model):
    the reconstruction without the noise of a draw from q(z|x)."""
    latents, _ = model.latents(x, model.prior(), adjust=_point_mass_at_mean)
    return model.likelihood.mean(model.decoder_output(latents))


def _point_mass_at_mean(layer: str, q) -> DiagonalNormal:
    """q(z|x) replaced by its mean, for `latents(adjust=...)`: the draw it then makes is the mean."""
    return DiagonalNormal(q.mean, torch.zeros_like(q.mean))


def traversal_figure(images: torch.Tensor, dims: torch.Tensor, kl_per_dim: torch.Tensor | None,
                     row_labels: list[str] | None = None):
    """The traversal grid with its labels: each row names its dimension (and that dimension's KL, or
    the caller's `row_labels`), each column the offset from the aggregate posterior's mean, in its
    standard deviations."""
    from matplotlib.figure import Figure
    from torchvision.utils import make_grid

    rows = len(dims)
    grid = make_grid(images.detach().float().clamp(0, 1).cpu(), nrow=TRAVERSAL_STEPS, padding=1, pad_value=0.5)
    height, width = grid.shape[1:]
    figure = Figure(figsize=(1.2 + TRAVERSAL_STEPS * 0.62, 0.9 + rows * 0.62), dpi=100)
    left = 0.16 if row_labels is None else 0.24  # room for longer labels
    ax = figure.add_axes((left, 0.08, 0.98 - left, 0.86))
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    offsets = torch.linspace(-TRAVERSAL_SIGMAS, TRAVERSAL_SIGMAS, TRAVERSAL_STEPS)
    ax.set_xticks([(i + 0.5) * width / TRAVERSAL_STEPS for i in range(TRAVERSAL_STEPS)],
                  [f"{float(o):+.1f}" for o in offsets], fontsize=7)
    kl = None if kl_per_dim is None else torch.as_tensor(kl_per_dim).cpu()
    labels = row_labels or [f"z{int(d)}" + ("" if kl is None else f"  KL {float(kl[d]):.1f}") for d in dims.cpu()]
    ax.set_yticks([(r + 0.5) * height / rows for r in range(rows)], labels, fontsize=7)
    ax.tick_params(length=0)
    ax.set_xlabel("offset from the mean of q(z_j), in its standard deviations", fontsize=8)
    for side in ax.spines.values():
        side.set_visible(False)
    return figure


def latent_scatter(codes: torch.Tensor, labels: torch.Tensor | None):
    """A matplotlib figure of 2-D codes, one colour per label (one colour in all without labels)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 5), dpi=100)
    ax = figure.add_subplot()
    z = codes.detach().float().cpu().numpy()
    if labels is None:
        ax.scatter(z[:, 0], z[:, 1], s=4, alpha=0.6)
    else:
        points = ax.scatter(z[:, 0], z[:, 1], c=labels.cpu().numpy(), cmap="tab10", s=4, alpha=0.6)
        ax.legend(*points.legend_elements(), title="label", loc="best", fontsize="small")
    ax.set_xlabel("z[0]  (mean of q(z|x))")
    ax.set_ylabel("z[1]")
    ax.set_title("validation codes")
    figure.tight_layout()
    return figure
