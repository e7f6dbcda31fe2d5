"""An alarm for posterior collapse, raised once per run during training.

At every evaluation the validation split gives two counts of the latent dimensions in use:
- active units (Burda et al. 2015), #{u : Cov_x(E_q[z_u|x]) > 0.01}, where the ELBO surgery ran;
- informative dimensions, #{j : KL(q(z_j|x) || p(z_j)), averaged over the split, > KL_NATS}, where
  the prior has 1-D marginals.
A dimension is in use when either count has it: the run uses max(active units, informative
dimensions). Each count alone misleads early in a healthy run: in its first epochs the KL is spread
thin (0.05 nats a dimension, so few dimensions pass KL_NATS) while the posterior means already vary
(many active units); later both agree. The alarm sounds when, from epoch GRACE_EPOCHS on, the
dimensions in use are at most NEVER_FRACTION of the latent size: "fell" when the run once had
more, "never rose" otherwise. An objective that holds the KL down by design at first (capacity,
while C rises) gets its schedule's epochs as grace. A run whose latents come back into use after the
alarm (a conv VAE on sprites uses them only after its first epochs) gets a note saying so, and the
alarm in metrics.json its `recovered_epoch`: the alarm was right about its epoch, not about the end.

A healthy default run (`vaebench train`: 50 epochs of the MLP VAE on mnist5k, 40 latents) has
21 and 23 in use in its first two epochs and 39-40 active units with ~20 informative dimensions from
then on, far above the alarm's 4; the same run at beta = 50 has 0 from the first epoch.
"""

from __future__ import annotations

import logging
import math

log = logging.getLogger(__name__)

KL_NATS = 0.05          # a dimension carrying less KL than this says next to nothing about x
NEVER_FRACTION = 0.1    # in use: at most this fraction of the latent size is collapse
GRACE_EPOCHS = 2        # the first evaluation is too early to judge: the latents are only starting to be used


def dimensions_in_use(val_terms: dict, kl_nats: float = KL_NATS) -> dict[str, int]:
    """The counts this evaluation offers: `active_units` and/or `informative_dims`."""
    counts = {}
    if "active_units" in val_terms:
        counts["active_units"] = int(val_terms["active_units"])
    kl_per_dim = val_terms.get("kl_per_dim")
    if kl_per_dim is not None:
        counts["informative_dims"] = int((kl_per_dim > kl_nats).sum())
    return counts


def collapse_limit(latent_dim: int) -> int:
    """The most dimensions in use that still count as collapse: 4 of 40; none at all below 10 latents,
    where a model using 1 of its 1 or 2 dimensions is healthy."""
    return math.floor(NEVER_FRACTION * latent_dim)


def collapse_finding(in_use: int, peak: int, latent_dim: int, epoch: int, grace_epochs: int = GRACE_EPOCHS) -> str | None:
    """What the rule finds, in words with the numbers; None when healthy or too early to say.
    `in_use` is this evaluation's count, `peak` the largest of the run so far (this one included)."""
    limit = collapse_limit(latent_dim)
    if epoch < grace_epochs or in_use > limit:
        return None
    if peak > limit:
        return f"the latent dimensions in use fell from {peak} to {in_use} of {latent_dim} by epoch {epoch}"
    return f"at most {peak} of {latent_dim} latent dimensions have been in use in {epoch} epochs"


class CollapseWatch:
    """Follows the counts through a run; `record` (the peak and the alarms) travels in the
    checkpoints, so a resumed run neither forgets its peak nor repeats an alarm."""

    def __init__(self, latent_dim: int, record: dict | None = None, settings: dict | None = None):
        self.latent_dim = int(latent_dim)
        self.record = {"peak": 0, "alarms": []}
        if record:
            self.record["peak"] = int(record.get("peak", 0))
            self.record["alarms"].extend(record.get("alarms", []))
        self.settings = settings or {}

    def observe(self, epoch: int, val_terms: dict) -> str | None:
        """The alarm's message the first time the rule finds collapse, else None."""
        counts = dimensions_in_use(val_terms)
        if not counts:
            return None
        in_use = max(counts.values())
        self.record["peak"] = max(self.record["peak"], in_use)
        grace = max(GRACE_EPOCHS, int(self.settings.get("schedule_epochs") or 0))
        finding = collapse_finding(in_use, self.record["peak"], self.latent_dim, epoch, grace)
        if self.record["alarms"]:
            self._note_recovery(epoch, in_use, counts)
            return None
        if finding is None:
            return None
        numbers = ", ".join(f"{name.replace('_', ' ')} {count}" for name, count in counts.items())
        message = (f"Posterior collapse: {finding} ({numbers} on validation; in use: an active unit or "
                   f"more than {KL_NATS} nats of KL; at most {collapse_limit(self.latent_dim)} counts as "
                   f"collapse). The decoder is modelling the data without the latents. Try {advice(self.settings)}.")
        self.record["alarms"].append({"epoch": epoch, "kind": "posterior_collapse", "in_use": in_use,
                                      "peak": self.record["peak"], **counts, "message": message})
        log.warning(message)
        return message

    def _note_recovery(self, epoch: int, in_use: int, counts: dict) -> None:
        alarm = self.record["alarms"][-1]
        if "recovered_epoch" in alarm or in_use <= collapse_limit(self.latent_dim):
            return
        alarm.update(recovered_epoch=epoch, in_use_at_recovery=in_use)
        numbers = ", ".join(f"{name.replace('_', ' ')} {count}" for name, count in counts.items())
        log.warning(f"The latents are back in use: {in_use} of {self.latent_dim} dimensions at epoch {epoch} "
                    f"({numbers} on validation), above the collapse limit of {collapse_limit(self.latent_dim)}; "
                    f"the posterior-collapse alarm of epoch {alarm['epoch']} held then, not now.")


def advice(settings: dict) -> str:
    """What to try, given what the run already does."""
    warmup = int(settings.get("kl_warmup_epochs") or 0)
    tips = [f"a longer KL warm-up (now trainer.kl_warmup_epochs={warmup})" if warmup
            else "a KL warm-up (trainer.kl_warmup_epochs=10)"]
    tips.append("more free bits (a larger objective.lambda_nats)" if settings.get("objective") == "free_bits"
                else "free bits (objective=free_bits objective.lambda_nats=0.1)")
    beta = settings.get("beta")
    if beta is not None and float(beta) > 0 and settings.get("beta_weighs") is not None:
        tips.append(f"a smaller beta (now {float(beta):g})")
    return ", ".join(tips[:-1]) + " or " + tips[-1]
