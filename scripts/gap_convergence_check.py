"""Is q* found? The inference gaps take ELBO(q*) from an optimisation that lowers its learning rate
each time a check rises by less than TOLERANCE_NATS and stops after the last of LEARNING_RATES
(vaebench/metrics/inference_gaps.py). This reruns it on a trained run's first test points with a
tolerance ten times stricter, one more rate (a quarter of the last) and four times the steps, and
prints the paired difference in ELBO(q*) per point: where it is small beside the amortization gap,
the shipped rule has found q* as far as a longer optimisation can tell.

    python scripts/gap_convergence_check.py RUN_FOLDER [POINTS]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from vaebench.config.components import build_dataset, build_model
from vaebench.config.saved import saved_config
from vaebench.metrics import inference_gaps as gaps
from vaebench.report.paired import paired_mean_and_se
from vaebench.run import checkpoint


def elbo_star(model, x: torch.Tensor, **settings) -> tuple[torch.Tensor, int]:
    shipped = {name: getattr(gaps, name) for name in settings}
    for name, value in settings.items():
        setattr(gaps, name, value)
    try:
        model.eval()
        with torch.no_grad():
            p_z = model.prior()
        torch.manual_seed(0)  # the same ELBO draws for both settings: the difference is the offsets'
        return gaps.optimised_elbo(model, x, p_z)
    finally:
        for name, value in shipped.items():
            setattr(gaps, name, value)


def main(run_dir: Path, points: int) -> None:
    torch.set_num_threads(1)
    state = checkpoint.load(run_dir / "checkpoints" / "best.pt")
    cfg = OmegaConf.create(saved_config(state["config"]))
    data = build_dataset(cfg.dataset, int(cfg.seed))
    model = build_model(cfg, data.data_shape, data.scored("train"), dict(cfg.choices))
    model.load_state_dict(state["model"])
    x = data.scored("test")[:points]
    shipped, shipped_steps = elbo_star(model, x)
    longer, longer_steps = elbo_star(model, x, TOLERANCE_NATS=gaps.TOLERANCE_NATS / 10, MAX_STEPS=4 * gaps.MAX_STEPS,
                                     LEARNING_RATES=(*gaps.LEARNING_RATES, gaps.LEARNING_RATES[-1] / 4))
    mean, se = paired_mean_and_se(longer.numpy(), shipped.numpy())
    print(f"{run_dir}: {points} test points\n"
          f"  shipped rule: ELBO(q*) {shipped.mean():.3f} after at most {shipped_steps} steps\n"
          f"  stricter:     ELBO(q*) {longer.mean():.3f} after at most {longer_steps} steps\n"
          f"  stricter − shipped: {mean:+.3f} ± {se:.3f} nats per point (paired over the points)")

if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 100)
