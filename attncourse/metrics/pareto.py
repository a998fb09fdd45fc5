"""The Pareto front of accuracy against a cost: which arms no other arm beats at the same or lower cost (module 09).

Rows are dicts with an ``"arm"``, a value (``"mean"``: higher is better) and cost columns (lower is better), e.g. the
rows of :func:`attncourse.experiments.capstone.capstone_table`.
"""
from __future__ import annotations

import math

__all__ = ["CAPSTONE_COSTS", "pareto_front"]

#: cost column → (words, unit) for tables, plots and sentences
CAPSTONE_COSTS = {"params": ("parameters", ""), "flops": ("forward FLOPs per image", ""),
                  "step_ms": ("training-step time", " ms")}


def pareto_front(rows: list[dict], cost: str = "params", value: str = "mean") -> list[str]:
    """The arms on the Pareto front of ``value`` (higher is better) against ``cost`` (lower is better): no other
    row has a cost ≤ and a value ≥ with one of them strict. Rows whose cost or value is ``nan`` are left out.
    Sorted by cost."""
    if cost not in CAPSTONE_COSTS:
        raise ValueError(f"pareto_front: cost must be one of {list(CAPSTONE_COSTS)}, got {cost!r}")
    ok = [r for r in rows if not (math.isnan(float(r[cost])) or math.isnan(float(r[value])))]

    def dominated(r):
        return any(o[cost] <= r[cost] and o[value] >= r[value] and (o[cost] < r[cost] or o[value] > r[value])
                   for o in ok if o is not r)

    return [r["arm"] for r in sorted(ok, key=lambda r: (r[cost], -r[value])) if not dominated(r)]
