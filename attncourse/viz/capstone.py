"""The capstone's picture: every block's accuracy gain against its cost, with the Pareto front (module 09)."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt

from ..metrics.pareto import CAPSTONE_COSTS, pareto_front

__all__ = ["plot_pareto"]

_COLORS = {"clear gain": "#2b7a3d", "clear loss": "#b03a2e", "inconclusive": "0.45", None: "black"}


def plot_pareto(rows: list[dict], cost: str = "params", extra: list[dict] | None = None, title: str | None = None):
    """Δ test accuracy against the baseline (points, with its 95 % interval) against the ``cost`` each block **adds**
    to the baseline network (symmetric log axis: the baseline sits at 0), one marker per row of
    :func:`~attncourse.experiments.capstone.capstone_table`, coloured by its label; the Pareto front of the mean
    accuracy is drawn as a step line through its arms. Labels that would overlap are moved up until they do not.

    ``rows`` must hold the baseline's row (arm ``"baseline"``): the added cost is measured from it.
    ``extra``: rows to place beside them without joining the front (e.g. a learner's block trained at another
    budget: ``{"arm", "delta", cost}`` with the whole network's cost, optional ``"note"``), drawn as stars.
    """
    if cost not in CAPSTONE_COSTS:
        raise ValueError(f"plot_pareto: cost must be one of {list(CAPSTONE_COSTS)}, got {cost!r}")
    words, unit = CAPSTONE_COSTS[cost]
    shown = [r for r in rows if not math.isnan(float(r[cost]))]
    if not shown:
        raise ValueError(f"plot_pareto: no row has a {cost!r} value")
    base = [r for r in shown if r["arm"] == "baseline"]
    if not base:
        raise ValueError(f"plot_pareto: the rows need the baseline's row (arm 'baseline', with a {cost!r} value): "
                         f"each block's cost is drawn as what it adds to it; got arms {[r['arm'] for r in shown]}")
    base_cost = float(base[0][cost])

    def added(r):
        return float(r[cost]) - base_cost

    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    ax.axhline(0, color="0.7", lw=1)
    labels = []
    for r in shown:
        d, lo, hi = (100 * r[k] for k in ("delta", "ci_low", "ci_high"))
        color = _COLORS.get(r["label"], "black")
        ax.errorbar([added(r)], [d], yerr=[[d - lo], [hi - d]], fmt="o", color=color, ms=5, capsize=3, lw=1.2)
        labels.append(ax.annotate(r["arm"], (added(r), d), textcoords="offset points", xytext=(4, 3), fontsize=7.5))
    front = {r["arm"]: r for r in shown}
    path = [front[a] for a in pareto_front(shown, cost)]
    if len(path) > 1:
        ax.step([added(r) for r in path], [100 * r["delta"] for r in path], where="post", color="#2b5d8a", lw=1.2,
                alpha=0.7, label="Pareto front (mean accuracy)")
    for r in extra or []:
        ax.scatter([added(r)], [100 * r["delta"]], marker="*", s=160, color="#d18f00", zorder=5,
                   label=r.get("note", r["arm"]))
        labels.append(ax.annotate(r["arm"], (added(r), 100 * r["delta"]), textcoords="offset points", xytext=(5, -10),
                                  fontsize=8))
    positive = [abs(added(r)) for r in shown + list(extra or []) if abs(added(r)) > 0]
    ax.set_xscale("symlog", linthresh=10.0 ** math.floor(math.log10(min(positive, default=1.0))))
    ax.set_xlabel(f"{words} added to the baseline's {base_cost:,.{0 if base_cost >= 100 else 1}f}"
                  f"{' ' + unit.strip() if unit.strip() else ''} (symmetric log scale)")
    ax.set_ylabel("Δ test accuracy vs the baseline (points)")
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=l) for l, c in _COLORS.items() if l]
    ax.legend(handles=handles + ax.get_legend_handles_labels()[0], fontsize=7.5, loc="best")
    n = min((r["n"] for r in shown if r["label"] is not None), default=0)
    ax.set_title(title or f"every block on one task: Δ and its 95 % interval (≥ {n} seeds and the test images)",
                 fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _spread_labels(fig, labels)
    return fig


def _spread_labels(fig, labels, step: float = 6.0, tries: int = 15) -> None:
    """Place each label (bottom to top) where its box overlaps no label placed before it: right of its point, else
    left of it, each raised by ``step`` points at a time."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    placed = []
    for text in sorted(labels, key=lambda t: (t.xy[1], t.xy[0])):
        x0, y0 = text.get_position()
        for k in range(tries):
            for x, ha in ((x0, "left"), (-x0, "right")):
                text.set_position((x, y0 + k * step))
                text.set_horizontalalignment(ha)
                if not any(text.get_window_extent(renderer).overlaps(other) for other in placed):
                    break
            else:
                continue
            break
        placed.append(text.get_window_extent(renderer))
