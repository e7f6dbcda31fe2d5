"""An alarm for posterior collapse, raised once per run during training.

At every evaluation the validation split gives two counts of the latent dimensions in use:
- active units (Burda et al. 2015), #{u : Cov_x(E_q[z_u|x]) > 0.01}, where the ELBO surgery ran;
- informative dimensions, #{j : KL(q(z_j|x) || p(z_j)) averaged over the split > KL_NATS}, where the
  prior has 1-D marginals.
The alarm sounds when either count
- has fallen to at most FALLEN_FRACTION of its own peak in this run, by at least FALLEN_BY dimensions
  (the latent code was in use and is being given up), or
- is still at most NEVER_FRACTION of the latent size after GRACE_EPOCHS epochs (it never was).
A healthy default run (`vaebench train`: 50 epochs, 40 latents) keeps ~20 of 40 dimensions in use
and rises to its peak; see README, "Posterior collapse".
"""

from __future__ import annotations

import logging
import math

log = logging.getLogger(__name__)

KL_NATS = 0.05            # a dimension carrying less KL than this says next to nothing about x
NEVER_FRACTION = 0.1      # "never above": at most this fraction of the latent size in use ...
GRACE_EPOCHS = 2          # ... after this many epochs (the first evaluations of a healthy run still rise)
FALLEN_FRACTION = 0.5     # "fallen": at most half of the run's own peak ...
FALLEN_BY = 2             # ... and at least this many dimensions fewer (one of four is noise on a tiny model)


def dimensions_in_use(val_terms: dict, kl_nats: float = KL_NATS) -> dict[str, int]:
    """The counts this evaluation offers: `active_units` and/or `informative_dims`."""
    counts = {}
    if "active_units" in val_terms:
        counts["active_units"] = int(val_terms["active_units"])
    kl_per_dim = val_terms.get("kl_per_dim")
    if kl_per_dim is not None:
        counts["informative_dims"] = int((kl_per_dim > kl_nats).sum())
    return counts


def collapse_finding(counts: dict[str, int], peaks: dict[str, int], latent_dim: int, epoch: int) -> str | None:
    """What the rule finds in one evaluation's counts, in words with the numbers; None when healthy."""
    never = max(1, math.floor(NEVER_FRACTION * latent_dim))
    for name, count in counts.items():
        label = name.replace("_", " ")
        peak = peaks.get(name, count)
        if peak - count >= FALLEN_BY and count <= FALLEN_FRACTION * peak:
            return f"{label} fell from {peak} to {count} of {latent_dim} by epoch {epoch}"
        if epoch >= GRACE_EPOCHS and peak <= never:
            return f"{label} never rose above {peak} of {latent_dim} in {epoch} epochs (at most {never} counts as collapsed)"
    return None


class CollapseWatch:
    """Follows the counts through a run; `record` (peaks and alarms) travels in the checkpoints, so
    a resumed run neither forgets its peak nor repeats an alarm."""

    def __init__(self, latent_dim: int, record: dict | None = None, settings: dict | None = None):
        self.latent_dim = int(latent_dim)
        self.record = {"peaks": {}, "alarms": []}
        if record:
            self.record["peaks"].update(record.get("peaks", {}))
            self.record["alarms"].extend(record.get("alarms", []))
        self.settings = settings or {}

    def observe(self, epoch: int, val_terms: dict) -> str | None:
        counts = dimensions_in_use(val_terms)
        peaks = self.record["peaks"]
        finding = collapse_finding(counts, peaks, self.latent_dim, epoch)
        for name, count in counts.items():
            peaks[name] = max(peaks.get(name, count), count)
        if finding is None or self.record["alarms"]:
            return None
        message = (f"Posterior collapse: {finding} (validation; a dimension counts with KL > {KL_NATS} nats or "
                   f"as an active unit). Try {advice(self.settings)}.")
        self.record["alarms"].append({"epoch": epoch, "kind": "posterior_collapse", "counts": counts, "message": message})
        log.warning(message)
        return message


def advice(settings: dict) -> str:
    """What to try, given what the run already does."""
    tips = []
    warmup = int(settings.get("kl_warmup_epochs") or 0)
    tips.append(f"a longer KL warm-up (now trainer.kl_warmup_epochs={warmup})" if warmup
                else "a KL warm-up (trainer.kl_warmup_epochs=10)")
    if settings.get("objective") != "free_bits":
        tips.append("free bits (objective=free_bits objective.lambda_nats=0.1)")
    else:
        tips.append("more free bits (a larger objective.lambda_nats)")
    beta = settings.get("beta")
    if beta is not None and float(beta) > 0 and settings.get("beta_weighs") is not None:
        tips.append(f"a smaller beta (now {float(beta):g})")
    return ", ".join(tips[:-1]) + " or " + tips[-1]
