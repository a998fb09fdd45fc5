"""Experiments of module 08 (STA) on the digit-tracklets task.

``sta_tracklets``: video re-identification of individual handwritten digits (:mod:`attncourse.data.digit_tracklets`:
4-frame tracklets of 32×16 frames, 3 cameras, jitter, clutter, and frames partly or wholly occluded by a grey
obstacle). Every arm is :class:`~attncourse.models.reid.ReIDNet` — the course backbone (AttnResNet widths
16/32/64, no attention inside) on each frame, then a clip head, global pooling and a 128-d embedding — trained
with identity cross-entropy plus a batch-hard triplet loss on P×K batches (:mod:`attncourse.objectives.metric`);
the test metric is mAP (rank-1/5/10 beside it) on queries against a gallery of other cameras. Arms:

* ``tap`` — temporal average pooling (the baseline; first, so effects are measured against it);
* ``temporal_attention`` — one learned weight per frame (softmax over frames);
* ``sta`` — STA, K = 4 horizontal regions, the inter-frame regulariser with weight 0.1.

``sta_tracklets_partial``: the same arms and recipe on a variant of the task where occlusion hides PARTS of frames,
never whole frames (``PARTIAL_OCCLUSION``): every frame of every tracklet has one grey band over a quarter or half of
its height, at a random place, and no frame is left clear. STA's distinctive claim is per-region frame choice; here a
per-frame weight (temporal attention) cannot find a clean frame, while each region of the digit is visible in most
frames.

Record them with ``python -m attncourse run-all --only sta_tracklets sta_tracklets_partial --profile full``.
"""
from __future__ import annotations

from ..data import digit_tracklets as _task_family  # noqa: F401 — registers the task this experiment trains on
from ..models.reid import ReIDNet
from .core import Experiment, NetArm, register_experiment

HEADS = ("tap", "temporal_attention", "sta")
#: the partial-occlusion variant of digit_tracklets: every frame occluded, by a band only, no clear frame kept
PARTIAL_OCCLUSION = {"occlusion": 1.0, "whole": 0.0, "clear_frame": False}

register_experiment(Experiment(
    name="sta_tracklets",
    description=("Digit tracklets (video re-ID of individual handwritten digits: 4 frames of 32×16, 3 cameras, jitter, "
                 "clutter, frames partly or wholly occluded): the course backbone on every frame, then temporal "
                 "average pooling (TAP) vs temporal attention pooling vs STA (K=4 regions, inter-frame regulariser); "
                 "identity cross-entropy + batch-hard triplet loss on P×K batches; test mAP and CMC on queries "
                 "against a gallery of other cameras."),
    task="digit_tracklets",
    arms={head: NetArm(ReIDNet, {"head": head}) for head in HEADS},
    module="08_sta",
))

register_experiment(Experiment(
    name="sta_tracklets_partial",
    description=("Digit tracklets where occlusion hides parts of frames, never whole frames: every frame has one grey "
                 "band over a quarter or half of its height and no frame is clear, so a per-frame weight cannot pick "
                 "a clean frame while per-region frame choice (STA) can. The same arms and recipe as sta_tracklets: "
                 "TAP vs temporal attention pooling vs STA."),
    task="digit_tracklets",
    task_kwargs=dict(PARTIAL_OCCLUSION),
    arms={head: NetArm(ReIDNet, {"head": head}) for head in HEADS},
    module="08_sta",
))
