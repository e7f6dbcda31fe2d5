"""What a figure's error bar is, said exactly in its caption. A run's `<term>_se` is one of these
things (docs/diagnostics.md, Standard errors), and a figure's caption says which:

- a per-point average (elbo, reconstruction, kl, log_likelihood, ...): the SE of the mean over the
  split's N points, their spread / sqrt(N) (vaebench.metrics.evaluation.standard_error): how far the
  number may lie from the data distribution's. Runs scored on the same points share that spread, so
  the difference of two runs is known better than their two bars suggest: unpaired bars;
- an ELBO-surgery term (mutual_info, marginal_kl, ...): the Monte-Carlo SE of the draws z ~ q(z|x)
  for the split's points as a fixed set (vaebench.metrics.surgery.replicate_mean_and_se), not their spread;
- the FactorVAE score: the binomial SE of its held-out votes' accuracy;
- prior_axis.py's train - test ELBO: the two splits' SEs in quadrature (independent points).

Replicate runs (seeds) are averaged instead, with ±1 s.d. of their values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vaebench.metrics.disentanglement import FACTOR_VAE_VOTES
from vaebench.report.runs import SPLITS

# the split-level terms of vaebench.metrics.surgery.elbo_surgery, whose SE is Monte-Carlo
SURGERY_TERMS = ("mutual_info", "marginal_kl", "total_correlation", "dimwise_kl")


# each source in a few words, for the table's note
SE_WORDS = {"points": "of the mean over the split's points (unpaired)",
            "draws": "(Monte-Carlo) over the draws z ~ q(z|x), the split's points held fixed",
            "votes": "(binomial) over the held-out votes", "gap": "of the difference, the SEs in quadrature"}


@dataclass(frozen=True)
class Bar:
    """What one error bar is: its source ("seeds", "points", "draws", "votes", "gap") and, for a
    split's terms, the split and its number of points (None where the record does not say)."""
    source: str
    split: str | None = None
    points: int | None = None


SEEDS = Bar("seeds")


def standard_error_bar(column: str, row: dict) -> Bar:
    """What the run's `<column>_se` is: `column` names the split and term (`val_kl`)."""
    if column == "elbo_gap":  # prior_axis.py: train - test ELBO, the two SEs in quadrature
        return Bar("gap")
    if column == "disentanglement_factor_vae_score":
        return Bar("votes")
    split, _, term = column.partition("_")
    if split not in SPLITS:
        return Bar("points")
    return Bar("draws" if term in SURGERY_TERMS else "points", split, split_points(row, split))


def split_points(row: dict, split: str) -> int | None:
    """N of the run's `split`, from the bound log N of its mutual information (every final
    evaluation records it)."""
    bound = row.get(f"{split}_mutual_info_max")
    return round(math.exp(bound)) if bound is not None else None


def caption(bars: set[Bar]) -> str:
    """What the error bars of one panel are, in words; empty when it has none."""
    sources = sorted({bar.source for bar in bars} - {"seeds"})
    single = [_single_run(source, sorted((b for b in bars if b.source == source), key=_split_order)) for source in sources]
    if SEEDS not in bars:
        return "bars: " + "; ".join(single) if single else ""
    return "bars: ±1 s.d. over replicate runs (seeds)" + (f"; a single run: {'; '.join(single)}" if single else "")


def _single_run(source: str, bars: list[Bar]) -> str:
    """e.g. '±1 SE of the mean over the 500 val points (unpaired)'; several splits: 'the 4,000 train / 500 test points'."""
    splits = [f"{b.points:,} {b.split}" if b.points else b.split for b in bars if b.split]
    where = f"the {' / '.join(splits)} points" if splits else "the split's points"
    if source == "points":
        return f"±1 SE of the mean over {where} (unpaired)"
    if source == "draws":
        return f"±1 Monte-Carlo SE over the draws z ~ q(z|x), {where} held fixed (not their spread)"
    if source == "votes":
        return f"±1 binomial SE over the {FACTOR_VAE_VOTES} held-out votes"
    return "±1 SE of the difference of the train and test means (their SEs in quadrature)"


def _split_order(bar: Bar) -> tuple:
    return (SPLITS.index(bar.split) if bar.split in SPLITS else len(SPLITS), bar.points or 0)
