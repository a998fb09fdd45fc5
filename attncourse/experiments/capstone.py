"""The capstone (module 09): one representative block per family in one backbone on one task, and its Pareto front.

``capstone_blocks`` trains :class:`~attncourse.models.AttnResNet` (widths 16/32/64, one basic block per stage) on
cluttered digits — the course's shared task (modules 00, 02, 05) — with each block in its registered place: a
residual block in every basic block, a stage block (Non-local, CC, PAM) after every stage but the first, whose
40×40 map would make PAM's and Non-local's N×N matrix 1600×1600 per image. Arms that modules 02, 05 and 09 already
train with the same block, keywords, task and recipe (baseline, SE, ECA, CBAM, BAM, scSE, SA) are those runs:
trained once, shared.

:func:`capstone_table` turns the results into one row per block — Δ accuracy against the plain baseline with its
95 % interval over seeds and test items (:func:`~attncourse.experiments.core.effects`), its label, the parameters
and forward FLOPs the runs recorded, and the training-step time of the benchmark (``benchmarks/capstone_cost.py``)
where one is shipped. :func:`pareto_front` marks the blocks no other block beats at the same or lower cost, and
:func:`pareto_sentence` says what the front is, in words computed from the table.
"""
from __future__ import annotations

import math

from ..blocks import get_block_spec
from ..metrics.pareto import CAPSTONE_COSTS, pareto_front
from .core import BackboneArm, Experiment, effects, register_experiment

__all__ = ["CAPSTONE_ARMS", "CAPSTONE_COSTS", "CAPSTONE_COLUMNS", "capstone_cells", "capstone_step_ms", "capstone_table",
           "pareto_front", "pareto_sentence"]

#: the capstone table's columns, as the results page and notebook 09 show them (:func:`capstone_cells`)
CAPSTONE_COLUMNS = ("arm", "family", "seeds", "test acc (%)", "Δ (points) [95 % interval]", "label", "params",
                    "FLOPs", "step")

_R = {"reduction": 4}  # as modules 02 and 05 (the papers' r = 16 leaves 1–4 hidden units at these widths)

#: arm → builder; one block per family (channel, second order, gather-excite, mixed, position, non-local, dual,
#: branch). The arms shared with earlier modules use their exact keywords, so they are the same runs.
CAPSTONE_ARMS = {
    "baseline": BackboneArm("none"),
    "se": BackboneArm("se", _R),
    "eca": BackboneArm("eca", _R),          # senet_cluttered's arm (ECA ignores the reduction)
    "srm": BackboneArm("srm"),
    "gsop": BackboneArm("gsop", _R),
    "ge_theta_e4": BackboneArm("ge_theta_e4"),
    "cbam": BackboneArm("cbam", _R),
    "bam": BackboneArm("bam", _R),
    "scse": BackboneArm("scse", _R),
    "coordatt": BackboneArm("coordatt"),
    "sa": BackboneArm("sa"),
    "gc": BackboneArm("gc"),
    "nonlocal": BackboneArm("nonlocal"),
    "cc": BackboneArm("cc"),
    "danet_pam": BackboneArm("danet_pam"),
    "sk": BackboneArm("sk"),
    "split_attn": BackboneArm("split_attn"),
}

register_experiment(Experiment(
    name="capstone_blocks",
    description=("Every family on one table: cluttered digits (module 05's task and recipe), the course backbone "
                 "with one representative block per family in its registered place — SE, ECA, SRM, GSoP, "
                 "Gather-Excite, CBAM, BAM, scSE, Coordinate Attention, SA, GC, Non-local, CC, DANet's PAM, SK, "
                 "split attention — against the plain baseline; accuracy against parameters, FLOPs and time."),
    task="cluttered_digits",
    arms=dict(CAPSTONE_ARMS),
    module="09_position_fusion",
))


def _block_name(arm: str) -> str:
    builder = CAPSTONE_ARMS.get(arm)
    return builder.attention if builder is not None else arm


def capstone_step_ms(device: str = "cpu") -> dict:
    """Arm → the median training-step time (ms) of the shipped ``capstone_cost`` benchmark on ``device``, or ``{}``
    when none is shipped. Only a table measured on a quiet machine counts (under load the times are noise)."""
    from ..benchmark_tables import benchmark_table

    try:
        table = benchmark_table("capstone_cost", device)
    except ValueError:
        return {}
    return {r["arm"]: r["median_ms"] for r in table.rows} if table.quiet else {}


def capstone_table(results: dict, step_ms: dict | None = None, baseline: str = "baseline") -> list[dict]:
    """One row per arm of ``results`` (an experiment's results dict, e.g. ``load_results("capstone_blocks")``).

    Keys: ``arm``, ``family`` (the block's registered family; ``"baseline"``), ``n`` (paired seeds), ``mean``
    (accuracy), ``delta``, ``ci_low``, ``ci_high``, ``label`` (against ``baseline``; ``None`` on its own row),
    ``params``, ``flops`` (recorded with the runs) and ``step_ms`` (from ``step_ms``, arm → milliseconds, else
    ``nan``). Rows keep the results' order.
    """
    step_ms = step_ms or {}
    rows = []
    for e in effects(results, baseline):
        a = results["arms"][e["arm"]]
        name = _block_name(e["arm"])
        try:
            family = "baseline" if name == "none" else get_block_spec(name).family
        except (KeyError, ValueError):
            family = "learner"
        rows.append({"arm": e["arm"], "family": family, "n": e["n"], "mean": e["mean"], "delta": e["delta"],
                     "ci_low": e["ci_low"], "ci_high": e["ci_high"], "label": e["label"],
                     "params": a.get("params", math.nan), "flops": a.get("flops", math.nan),
                     "step_ms": step_ms.get(e["arm"], math.nan)})
    return rows


def capstone_cells(row: dict) -> list[str]:
    """One row of :func:`capstone_table` as the cells of :data:`CAPSTONE_COLUMNS` (step blank when not measured)."""
    effect = ("baseline" if row["label"] is None else
              f"{100 * row['delta']:+.1f} [{100 * row['ci_low']:+.1f}, {100 * row['ci_high']:+.1f}]")
    step = "" if math.isnan(row["step_ms"]) else f"{row['step_ms']:.0f} ms"
    return [row["arm"], row["family"], str(row["n"]), f"{100 * row['mean']:.1f}", effect, row["label"] or "",
            f"{row['params']:,}", f"{row['flops'] / 1e6:.1f}M", step]


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def pareto_sentence(rows: list[dict], cost: str = "params", baseline: str = "baseline", gains: bool = True) -> str:
    """Two to three sentences from the table: which blocks are clear gains over the baseline (with Δ and interval),
    which arms form the Pareto front of accuracy against ``cost``, and what the front's cheapest clear gain costs.
    The words follow the labels: a block is called a gain only when its interval is above 0. ``gains=False``
    leaves out the first sentence (the gains), e.g. for a second cost."""
    words, unit = CAPSTONE_COSTS[cost]
    by = {r["arm"]: r for r in rows}
    if baseline not in by:
        raise ValueError(f"pareto_sentence: no {baseline!r} row; rows: {list(by)}")
    others = [r for r in rows if r["arm"] != baseline]
    winners = sorted((r for r in others if r["label"] == "clear gain"), key=lambda r: -r["delta"])
    losses = [r for r in others if r["label"] == "clear loss"]
    n = min((r["n"] for r in others), default=0)
    if winners:
        listed = ", ".join(f"{r['arm']} ({_pts(r['delta'])} [{_pts(r['ci_low'])}, {_pts(r['ci_high'])}])"
                           for r in winners)
        first = (f"Against the plain baseline, {len(winners)} of {len(others)} blocks are clear gains in test accuracy "
                 f"(points, 95 % interval over ≥ {n} seeds and the test images): {listed}")
    else:
        first = (f"Against the plain baseline, none of the {len(others)} blocks is a clear gain in test accuracy "
                 f"(95 % intervals over ≥ {n} seeds and the test images)")
    rest = len(others) - len(winners) - len(losses)
    first += f"; {len(losses)} {'is a clear loss' if len(losses) == 1 else 'are clear losses'}"
    first += (f" ({', '.join(r['arm'] for r in losses)})" if losses else "") + f", {rest} inconclusive."
    front = pareto_front(rows, cost)
    if not front:
        return first if gains else ""
    second = (f"On accuracy against {words}, the Pareto front — no block is more accurate at the same or lower "
              f"cost — is {', '.join(front)}.")
    cheapest = next((a for a in front if by[a]["label"] == "clear gain"), None)
    if cheapest is not None:
        extra = by[cheapest][cost] / by[baseline][cost] - 1 if by[baseline][cost] else math.nan
        value = by[cheapest][cost]  # counts in full with thousands separators; times to four digits
        amount = f"{value:,.0f}" if value >= 1000 else f"{value:,.4g}"
        third = (f" Its cheapest clear gain is {cheapest}, at {amount}{unit} {words} "
                 f"({100 * extra:+.1f} % against the baseline).")
    else:
        third = " No block on the front is a clear gain: what the front buys over the baseline is within the noise."
    return f"{first} {second}{third}" if gains else f"{second}{third}"

