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
* ``aff_scenes`` — ``digit_scenes`` (module 06's segmentation task) with one skip connection from the stride-2
  features into the dilated FCN's output (:class:`~attncourse.models.SkipFusionNet`), fused by a plain sum, by a
  learned linear mix (concat + 1×1), by AFF or by iAFF. Why this task: the scene holds one large digit that
  outgrows the FCN's receptive field (its pixels need the deep path's context) and small digits a few cells wide at
  stride 4 (their edges need the skip's detail). A sum gives both paths the same weight at every pixel and channel;
  the learned mix one weight per channel for every image; AFF chooses the weight per pixel and channel from the two
  inputs. Every arm has the same backbone, head, skip and classifier. mIoU, with mIoU by digit size.

The classification arms are :class:`~attncourse.models.AttnResNet` (widths 16/32/64, one basic block per stage). SE and CBAM use
``reduction=4`` as in modules 02 and 05 (the papers' r = 16 leaves 1–4 hidden units at these widths). CoordAtt uses
the official width ``mip = max(8, C // 32)`` — 8 at every stage here — and SA the largest ``G ≤ 64`` dividing
``C / 2`` (8, 16, 32 groups: one channel per half, 6 parameters per block).
"""
from __future__ import annotations

from ..data import row_marker_digits as _row_marker_task  # noqa: F401  (registers the task)
from ..data.digit_scenes import digit_scenes  # noqa: F401  (registers the task)
from ..models.skip_fusion import FUSIONS, SkipFusionNet
from .cbam import MIXED_REDUCTION
from .core import BackboneArm, Experiment, NetArm, register_experiment

__all__ = ["ROW_ARMS", "ROW_CONTROL_ARMS", "SA_CLUTTERED_ARMS", "FUSION_ARMS"]

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
#: arm name → the skip-fusion network; the arms differ only in the fusion module
FUSION_ARMS = {fusion: NetArm(SkipFusionNet, {"fusion": fusion}) for fusion in FUSIONS}

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

register_experiment(Experiment(
    name="aff_scenes",
    description=("Digit scenes (module 06's segmentation task, mIoU) with one skip from the stride-2 features into "
                 "the dilated FCN's output: the deep path carries the context a large digit needs, the skip the "
                 "detail of the small ones. Fused by a plain sum (one 1:1 mix everywhere), a learned linear mix "
                 "(concat + 1×1: one mix per channel, the same for every image), AFF or iAFF (a mix chosen per "
                 "pixel and channel from the inputs). Everything else is shared."),
    task="digit_scenes",
    task_kwargs={"question": "skip_fusion"},  # the same scenes as module 06; only info["why"] changes
    arms=dict(FUSION_ARMS),
    module="09_position_fusion",
))
