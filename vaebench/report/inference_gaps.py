"""inference_gaps.png: where each configuration's posterior gap comes from (Cremer et al. 2018). One row
per configuration: from the ELBO of the encoder's q(z|x) up to log p(x), the amortization gap (what a
better encoder would win) stacked with the approximation gap (what no diagonal Gaussian can win), on
the test points the gaps were measured on; seeds averaged."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from vaebench.report.settings import configuration_names, configurations

PARTS = (("amortization_gap", "amortization gap: ELBO(q*) − ELBO(q)", "#4C72B0"),
         ("approximation_gap", "approximation gap: log p(x) − ELBO(q*)", "#DD8452"))


def has_gaps(rows: list[dict]) -> bool:
    return any(row.get("test_amortization_gap") is not None for row in rows)


def gaps_figure(rows: list[dict], varied: list[str]) -> Figure:
    groups = {config: [row for row in members if row.get("test_amortization_gap") is not None]
              for config, members in configurations(rows, varied).items()}
    groups = {config: members for config, members in groups.items() if members}
    names = configuration_names(groups)
    figure = Figure(figsize=(8.5, 1.6 + 0.55 * len(groups)), dpi=110, layout="constrained")
    ax = figure.subplots()
    lows, highs = [], []
    for position, (config, members) in enumerate(groups.items()):
        start = float(np.mean([row["test_elbo_iw_of_gap_points"] for row in members]))
        lows.append(start)
        ax.plot([start], [position], marker="|", ms=14, color="0.2")
        for term, label, colour in PARTS:
            width = float(np.mean([row[f"test_{term}"] for row in members]))
            spread = _error(members, term)
            ax.barh(position, width, left=start, height=0.55, color=colour, label=label if position == 0 else None,
                    xerr=spread, error_kw={"ecolor": "0.3", "capsize": 3, "lw": 1})
            ax.text(start + width / 2, position + 0.12, f"{width:.2f}", ha="center", va="top", fontsize=8, color="white")
            start += width
            highs.append(start + spread)
        ax.plot([start], [position], marker="|", ms=14, color="0.2")
    ax.set_yticks(range(len(groups)), [names[config] for config in groups])
    ax.set_xlabel("nats per test point: ELBO of q(z|x) (left end) + the two gaps = log p(x) (right end)")
    points = sorted({int(row["test_inference_gap_points"]) for members in groups.values() for row in members})
    ax.set_title(f"Where the posterior gap comes from (first {', '.join(map(str, points))} test points)", pad=24)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2, fontsize=8, frameon=False, borderaxespad=0.3)
    low, high = min(lows), max(highs)
    ax.set_xlim(low - 0.05 * (high - low), high + 0.05 * (high - low))
    ax.set_ylim(len(groups) - 0.4, -0.6)
    seeds = max(len(members) for members in groups.values())
    figure.supxlabel("bars: ±1 s.d. over replicate runs (seeds)" if seeds > 1 else
                     "bars: ±1 SE of each gap's mean over the points (unpaired)", fontsize=8, color="0.2")
    ax.grid(axis="x", alpha=0.25)
    return figure


def _error(members: list[dict], term: str) -> float:
    if len(members) > 1:
        return float(np.std([row[f"test_{term}"] for row in members], ddof=1))
    return float(members[0].get(f"test_{term}_se") or 0.0)
