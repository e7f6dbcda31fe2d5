"""The final terms as people read them: `value ± SE` cells, the console's final table and its markdown
for TensorBoard's TEXT dashboard, the disentanglement section."""

from __future__ import annotations

from vaebench.metrics.disentanglement import FACTOR_VAE_MIN_STD, METRIC_NAMES


def format_estimate(terms: dict, name: str, width: int = 20) -> str:
    """`value ± se` for an estimate, the value alone for what is not one (active_units as an integer),
    '-' where the split lacks the term; right-aligned in `width`."""
    if name not in terms:
        text = "-"
    elif name == "active_units" or type(terms[name]) is int:  # a count
        text = f"{int(terms[name])}"
    elif f"{name}_se" in terms:
        text = f"{terms[name]:.3f} ± {terms[f'{name}_se']:.3f}"
    else:
        text = f"{terms[name]:.3f}"
    return f"{text:>{width}}"


SUMMARY_TERMS = ("elbo", "reconstruction", "kl", "kl_z1", "kl_z2", "log_joint", "entropy", "log_likelihood",
                 "elbo_iw", "posterior_kl", "amortization_gap", "approximation_gap", "mutual_info", "marginal_kl", "total_correlation", "dimwise_kl",
                 "active_units")


def final_table_markdown(metrics: dict, best_epoch: int) -> str:
    """The final table of the console, in markdown, for TensorBoard's TEXT dashboard."""
    splits = ("train", "val", "test")
    terms = [t for t in SUMMARY_TERMS if any(t in metrics[split] for split in splits)]
    lines = [f"Final terms, nats per point, ± standard error; best checkpoint (epoch {best_epoch}):", "",
             "| term | " + " | ".join(splits) + " |", "|---|" + "---:|" * len(splits)]
    lines += [f"| {t} | " + " | ".join(format_estimate(metrics[split], t, 0) for split in splits) + " |" for t in terms]
    return "\n".join(lines)


def final_table_lines(metrics: dict, best_epoch: int) -> list[str]:
    """The console's final table: every term of every split, `value ± SE`."""
    splits = ("train", "val", "test")
    terms = [t for t in SUMMARY_TERMS if any(t in metrics[split] for split in splits)]
    lines = [f"\nFinal terms (nats per point, ± standard error; best checkpoint, epoch {best_epoch}):",
             f"  {'term':<18}" + "".join(f"{split:>20}" for split in splits)]
    lines += [f"  {t:<18}" + "".join(format_estimate(metrics[split], t) for split in splits) for t in terms]
    return lines + gap_note(metrics["test"])


def gap_note(test: dict) -> list[str]:
    """Where the inference gaps were measured, and what they add up to there."""
    if "amortization_gap" not in test:
        return []
    return [f"  (the gaps: on the first {test['inference_gap_points']:,} test points, where posterior_kl is "
            f"{test['posterior_kl_of_gap_points']:.3f} ± {test['posterior_kl_of_gap_points_se']:.3f} = amortization_gap "
            f"+ approximation_gap; q* from at most {test['inference_gap_steps']} L-BFGS iterations per point)"]


def disentanglement_lines(scalars: dict, details: dict) -> list[str]:
    """The console's section: the five numbers, then which factor each informative dimension holds."""
    lines = [f"Disentanglement (posterior means of {scalars['points']} points of every split; factors: "
             f"{', '.join(details['factors'])}):",
             f"  {'mig':<22}{scalars['mig']:>8.3f}",
             f"  {'factor_vae_score':<22}{scalars['factor_vae_score']:>8.3f} ± {scalars['factor_vae_score_se']:.3f}",
             *(f"  {name:<22}{scalars[name]:>8.3f}" for name in METRIC_NAMES[2:])]
    held = [f"z{j}: {details['factor_of_dim'][j]} ({details['factor_share_of_dim'][j]:.2f})" for j in details["active_dims"]]
    lines.append("  the factor each dimension in use holds most of (its share of the factor's entropy): "
                 + (", ".join(held) or f"none: the standard deviation of every dimension's mean is below {FACTOR_VAE_MIN_STD}"))
    return lines
