"""Is q* found? The inference gaps take ELBO(q*) from an L-BFGS per point on fixed draws
(vaebench/metrics/inference_gaps.py). This checks the shipped rule two ways:

- against the analytic answer where there is one (`--known-answer`): linear-Gaussian models whose
  exact posterior is a strongly correlated Gaussian, at 4 and 32 latents and posterior s.d.s of 0.025,
  0.13 and 1.3, where the best diagonal Gaussian's ELBO is known exactly (vaebench/models/linear_gaussian.py).
  It prints how far the q* found falls short of it, exactly (no Monte-Carlo noise), and whether the
  fresh-draw estimate of ELBO(q*) agrees with the exact ELBO of the q* found.
- on a trained run's first test points, against a stricter rerun: four times the fixed draws (other
  ones), a tolerance ten times tighter and four times the iterations. It prints the paired difference
  in ELBO(q*) per point: where it is small beside the amortization gap, the shipped rule has found q*
  as far as a longer optimisation on more draws can tell.

    python scripts/gap_convergence_check.py --known-answer
    python scripts/gap_convergence_check.py RUN_FOLDER [POINTS]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from vaebench.config.components import build_dataset, build_model
from vaebench.config.saved import saved_config
from vaebench.metrics import inference_gaps as gaps
from vaebench.models.linear_gaussian import LinearGaussianVAE
from vaebench.report.paired import paired_mean_and_se
from vaebench.run import checkpoint

WITHIN_NATS = 0.02


def known_answers(points: int = 200) -> None:
    print(f"ELBO(q*) against the best diagonal Gaussian's, exactly, on {points} points each "
          f"(shortfall = KL(q* found || p(z|x)) - its least value):")
    print(f"  {'latents':>7} {'sd':>6} {'gap':>7} {'mean':>8} {'95th %':>8} {'worst':>8} {'within':>7} {'iter.':>6}"
          f"   fresh-draw ELBO(q*) - exact")
    for latents in (4, 32):
        for seed, sd in enumerate((0.025, 0.13, 1.3)):
            model = LinearGaussianVAE(latents, sd, points=points, seed=seed)
            x, p_z = model.x, model.prior()
            torch.manual_seed(0)
            layers = gaps.latent_layers(model, x, p_z)
            params, iterations = gaps.fit_offsets(model, x, p_z, layers, gaps.draws_for(layers))
            with torch.no_grad():
                q_star = gaps.LocalOffsets(layers, params)("z", model.encode(x))
            kl = model.kl_to_posterior(x, q_star.loc, q_star.scale)
            shortfall = kl - model.best_diagonal_gap()
            estimate = gaps.fresh_elbo(model, x, p_z, layers, params)
            error, error_se = paired_mean_and_se(estimate.numpy(), (model.log_px - kl).numpy())
            print(f"  {latents:>7} {sd:>6} {model.best_diagonal_gap():>7.2f} {float(shortfall.mean()):>8.4f} "
                  f"{float(shortfall.quantile(0.95)):>8.4f} {float(shortfall.max()):>8.4f} "
                  f"{float((shortfall <= WITHIN_NATS).double().mean()):>6.0%} {int(iterations.max()):>6}"
                  f"   {error:+.4f} ± {error_se:.4f}")


def main(run_dir: Path, points: int) -> None:
    torch.set_num_threads(1)
    state = checkpoint.load(run_dir / "checkpoints" / "best.pt")
    cfg = OmegaConf.create(saved_config(state["config"]))
    data = build_dataset(cfg.dataset, int(cfg.seed))
    model = build_model(cfg, data.data_shape, data.scored("train"), dict(cfg.choices))
    model.load_state_dict(state["model"])
    model.eval()
    with torch.no_grad():
        p_z = model.prior()
    x = data.scored("test")[:points]
    layers = gaps.latent_layers(model, x, p_z)
    found = {}
    for seed, (name, settings) in enumerate((("shipped rule", {}), ("stricter", {
            "tolerance": gaps.TOLERANCE_NATS / 10, "max_iterations": 4 * gaps.MAX_ITERATIONS}))):
        torch.manual_seed(seed)  # other fixed draws
        draws = gaps.draws_for(layers, factor=4 if settings else 1)
        started = time.perf_counter()
        found[name], iterations = gaps.fit_offsets(model, x, p_z, layers, draws, **settings)
        print(f"  {name + ':':<14}{draws} fixed draws per point, at most {int(iterations.max())} L-BFGS iterations "
              f"({time.perf_counter() - started:.0f} s)")
    elbo_star = {}
    for name, params in found.items():
        torch.manual_seed(2)  # the same fresh draws for both: the difference is the offsets'
        elbo_star[name] = gaps.fresh_elbo(model, x, p_z, layers, params).numpy()
        print(f"  {name + ':':<14}ELBO(q*) {elbo_star[name].mean():.3f}")
    mean, se = paired_mean_and_se(elbo_star["stricter"], elbo_star["shipped rule"])
    print(f"{run_dir}: {points} test points\n  stricter − shipped: {mean:+.4f} ± {se:.4f} nats per point "
          "(paired over the points, the same fresh draws)")

if __name__ == "__main__":
    if sys.argv[1:2] == ["--known-answer"]:
        known_answers()
    else:
        main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 100)
