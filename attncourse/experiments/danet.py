"""Experiments of module 06 (DANet) on the digit-scenes segmentation task.

``danet_scenes``: 48×48 scenes of one large digit (36–44 px, larger than the FCN's 35-px receptive field)
and 2–3 small ones (9–14 px); every pixel is labelled background, a digit class, or ignored (soft edges,
overlaps). The metric is mIoU (``attncourse.objectives.segmentation``), with mIoU by digit size.

Every arm is :class:`~attncourse.models.segmentation.SegNet`: the same dilated FCN backbone (output stride 4,
widths 16/32/64) and a head at 16 channels that differs only in its attention:

* ``fcn`` — no attention (the baseline);
* ``pam`` — DANet's position attention module in the branch;
* ``cam`` — DANet's channel attention module in the branch;
* ``danet`` — both, in two parallel branches whose outputs are summed (the paper's head);
* ``cbam_series`` — CBAM (channel gate, then spatial gate, in series; r = 4) in the branch;
* ``fcn_two_branch`` — DANet's head without its attention modules: two plain branches in parallel, summed. DANet has
  a second conv branch the FCN baseline lacks (+14 % parameters); this arm has it too, at DANet's parameters
  within 1 %, so PAM, CAM and DANet can be judged against a head of the same size and shape;
* ``cam_paper`` / ``danet_paper`` — ``cam`` / ``danet`` with CAM in the paper's form (Eq. 3, ``softmax(E)``: a channel
  attends most to the channels most similar to it) instead of the authors' code's ``softmax(max(E) − E)``, which the
  other arms use (:class:`~attncourse.blocks.dual.ChannelSelfAttention`).

Record it with ``python -m attncourse run-all --only danet_scenes --profile full`` (resumable).
"""
from __future__ import annotations

from ..data.digit_scenes import digit_scenes  # noqa: F401  (registers the task in attncourse.data.TASKS)
from ..models.segmentation import SegNet
from .core import Experiment, NetArm, register_experiment

#: arm name → SegNet head
ARMS = {"fcn": "fcn", "pam": "pam", "cam": "cam", "danet": "danet", "cbam_series": "cbam_series",
        "fcn_two_branch": "fcn2"}
#: arm name → SegNet head, with CAM in the paper's form (``cam_form="paper"``)
PAPER_FORM_ARMS = {"cam_paper": "cam", "danet_paper": "danet"}

register_experiment(Experiment(
    name="danet_scenes",
    description=("Digit scenes (48×48, one large digit beyond the FCN's 35-px receptive field and 2-3 small digits; "
                 "per-pixel labels, mIoU): a dilated FCN (output stride 4) with a plain head vs + PAM vs + CAM vs "
                 "DANet (PAM ∥ CAM, summed) vs a CBAM-in-series head vs two plain branches summed (DANet's head "
                 "without attention); CAM and DANet also with CAM in the paper's form (softmax(E), Eq. 3) instead of "
                 "the code's softmax(max(E) − E)."),
    task="digit_scenes",
    arms={**{arm: NetArm(SegNet, {"head": head}) for arm, head in ARMS.items()},
          **{arm: NetArm(SegNet, {"head": head, "cam_form": "paper"}) for arm, head in PAPER_FORM_ARMS.items()}},
    module="06_danet",
))


# --------------------------------------------------------------------------- mIoU by digit size
SIZE_METRICS = ("miou", "scene_miou_large", "scene_miou_small", "digit_pixel_miou_large", "digit_pixel_miou_small",
                "pixel_accuracy")
#: metrics recorded under another name before: new name → the old one (the same computation)
LEGACY_NAMES = {"digit_pixel_miou_large": "miou_large", "digit_pixel_miou_small": "miou_small"}


def size_table(results: dict) -> list[dict]:
    """Per arm: mean and seed standard deviation of the final epoch's :data:`SIZE_METRICS` (from each run's recorded
    ``history["test_metrics"]``), and the number of seeds ``n``.

    ``scene_miou_*`` is a real IoU per digit size (false positives on the background count); ``digit_pixel_miou_*``
    counts only that size's digit pixels (blind to false positives), read from the old name ``miou_*`` for runs
    recorded before the rename (:mod:`attncourse.objectives.segmentation`). Keys ``<metric>`` and ``<metric>_std``;
    a metric a run did not record is ``nan`` (``scene_miou_*`` for runs recorded before it existed).
    """
    import math
    import statistics

    def value(metrics: dict, key: str):
        v = metrics.get(key)
        if v is None and key in LEGACY_NAMES:
            v = metrics.get(LEGACY_NAMES[key])
        return math.nan if v is None else v

    rows = []
    for arm, a in results["arms"].items():
        row = {"arm": arm, "n": len(a["runs"])}
        for key in SIZE_METRICS:
            values = [value(r["history"]["test_metrics"][-1], key) for r in a["runs"]
                      if r.get("history", {}).get("test_metrics")]
            values = [v for v in values if not math.isnan(v)]
            row[key] = statistics.fmean(values) if values else math.nan
            row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        rows.append(row)
    return rows
