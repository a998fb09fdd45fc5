"""Experiments of module 09 (Coordinate Attention, SA-Net) on a row-position task and on cluttered digits.

* ``coordatt_rows`` — ``row_marker_digits``: the label is the class of the digit in the band that a bar at the far
  left edge marks (beyond the baseline's receptive field). SE's squeeze is a global average, blind to which band is
  marked; CBAM adds a spatial gate from a 7×7 conv (local); CoordAtt pools each row, so the bar and the digit of the
  same band meet in one descriptor. Baseline, SE, CBAM, CoordAtt.
* ``coordatt_rows_control`` — the same images with the bar 1 px left of the marked digit: position along the row no
  longer matters. Baseline, SE, CoordAtt.
* ``sa_cluttered`` — the cluttered-digits task of module 05 with SA-Net's shuffle attention beside the baseline, SE
  and CBAM. Those three arms are ``mixed_compare``'s exactly (same block, ``reduction=4``, task and recipe), so they
  are the same runs and are trained once.

Every arm is :class:`~attncourse.models.AttnResNet` (widths 16/32/64, one basic block per stage). SE and CBAM use
``reduction=4`` as in modules 02 and 05 (the papers' r = 16 leaves 1–4 hidden units at these widths). CoordAtt uses
the official width ``mip = max(8, C // 32)`` — 8 at every stage here — and SA the largest ``G ≤ 64`` dividing
``C / 2`` (8, 16, 32 groups: one channel per half, 6 parameters per block).
"""
from __future__ import annotations

from ..data import row_marker_digits as _row_marker_task  # noqa: F401  (registers the task)
from .cbam import MIXED_REDUCTION
from .core import BackboneArm, Experiment, register_experiment

__all__ = ["ROW_ARMS", "ROW_CONTROL_ARMS", "SA_CLUTTERED_ARMS"]

#: arm name → the arm builder; SE and CBAM as in modules 02 and 05, CoordAtt and SA with their official widths
ROW_ARMS = {
    "baseline": BackboneArm("none"),
    "se": BackboneArm("se", {"reduction": MIXED_REDUCTION}),
    "cbam": BackboneArm("cbam", {"reduction": MIXED_REDUCTION}),
    "coordatt": BackboneArm("coordatt"),
}
ROW_CONTROL_ARMS = {arm: ROW_ARMS[arm] for arm in ("baseline", "se", "coordatt")}
SA_CLUTTERED_ARMS = {
    "baseline": BackboneArm("none", {"reduction": MIXED_REDUCTION}),   # mixed_compare's arms, so the same runs
    "se": BackboneArm("se", {"reduction": MIXED_REDUCTION}),
    "cbam": BackboneArm("cbam", {"reduction": MIXED_REDUCTION}),
    "sa": BackboneArm("sa"),
}

register_experiment(Experiment(
    name="coordatt_rows",
    description=("Row-marker digits (three digits in three bands; a bar at the far left edge, beyond the baseline's "
                 "receptive field, marks the band whose digit is the label): does a directional squeeze (CoordAtt) "
                 f"find the marked row where SE's global squeeze cannot? Baseline, SE, CBAM (r={MIXED_REDUCTION}), "
                 "CoordAtt (official width)."),
    task="row_marker_digits",
    arms=dict(ROW_ARMS),
    module="09_position_fusion",
))

register_experiment(Experiment(
    name="coordatt_rows_control",
    description=("The control of coordatt_rows: the same images with the bar 1 px left of the marked digit, so a plain "
                 "CNN sees locally which digit is marked. Baseline, SE, CoordAtt."),
    task="row_marker_digits",
    task_kwargs={"marker": "near"},
    arms=dict(ROW_CONTROL_ARMS),
    module="09_position_fusion",
))

register_experiment(Experiment(
    name="sa_cluttered",
    description=("Cluttered digits: SA-Net's shuffle attention (6 parameters per block) against SE and CBAM "
                 f"(r={MIXED_REDUCTION}, mixed_compare's runs) and the baseline — as good at about no extra parameters?"),
    task="cluttered_digits",
    arms=dict(SA_CLUTTERED_ARMS),
    module="09_position_fusion",
))
